//! The transport contract as executable checks. Each backend instantiates the whole suite with
//! [`transport_conformance_tests!`](crate::transport_conformance_tests), giving a factory for a
//! connected transport whose `max_redeliveries` is 3. Every check uses fresh topic names, so one
//! broker can serve all of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::{Delivery, OutgoingMessage, Subscription, SubscriptionKind, Transport, headers};

/// Redeliveries the factory's transport must be configured with.
pub const MAX_REDELIVERIES: u32 = 3;

const WAIT: Duration = Duration::from_secs(20);

fn unique(name: &str) -> String {
    format!("conformance-{name}-{}", baton_shared_schemas::MessageId::new())
}

async fn next(sub: &mut Box<dyn Subscription>) -> Delivery {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => panic!("subscription failed: {e}"),
        Err(_) => panic!("no message within {WAIT:?}"),
    }
}

async fn nothing_within(sub: &mut Box<dyn Subscription>, wait: Duration) {
    if let Ok(Ok(d)) = tokio::time::timeout(wait, sub.next()).await {
        panic!("unexpected delivery {d:?} ({:?})", String::from_utf8_lossy(&d.payload));
    }
}

async fn publish(t: &dyn Transport, topic: &str, key: &str, body: String) {
    t.publish(topic, OutgoingMessage::new(key, body.into_bytes()))
        .await
        .expect("publish");
}

fn text(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.payload).into_owned()
}

/// Messages of one key reach one consumer in publish order, across several consumers.
pub async fn keyed_preserves_order_per_key(t: Arc<dyn Transport>) {
    let topic = unique("keyed");
    let mut a = t
        .subscribe(&topic, "s", SubscriptionKind::Keyed)
        .await
        .expect("subscribe");
    let mut b = t
        .subscribe(&topic, "s", SubscriptionKind::Keyed)
        .await
        .expect("subscribe");
    let keys = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let per_key = 30;
    for i in 0..per_key {
        for k in keys {
            publish(t.as_ref(), &topic, k, format!("{k}:{i}")).await;
        }
    }
    let total = keys.len() * per_key;
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    let mut consumer_of: HashMap<String, usize> = HashMap::new();
    let mut received = 0;
    let mut turn = 0usize;
    while received < total {
        turn += 1;
        let (which, sub) = if turn % 2 == 0 { (0, &mut a) } else { (1, &mut b) };
        let d = match tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => panic!("subscription failed: {e}"),
            Err(_) => {
                assert!(turn < 10_000, "only {received} of {total} messages arrived");
                continue;
            }
        };
        let body = text(&d);
        let (k, i) = body.split_once(':').expect("body");
        assert_eq!(d.key, k);
        if let Some(prev) = consumer_of.insert(k.to_string(), which) {
            assert_eq!(prev, which, "key {k} moved between consumers without a rebalance");
        }
        seen.entry(k.to_string()).or_default().push(i.parse().expect("index"));
        d.ack().await;
        received += 1;
    }
    for k in keys {
        let got = &seen[k];
        assert_eq!(got, &(0..per_key).collect::<Vec<_>>(), "order of key {k}");
    }
}

/// Two consumers that join a keyed subscription at the same moment share the work: every
/// message arrives, and each consumer sees the messages of a key in publish order.
pub async fn keyed_consumers_joining_together(t: Arc<dyn Transport>) {
    let topic = unique("keyed-together");
    let (a, b) = tokio::join!(
        t.subscribe(&topic, "s", SubscriptionKind::Keyed),
        t.subscribe(&topic, "s", SubscriptionKind::Keyed)
    );
    let mut consumers = [a.expect("subscribe"), b.expect("subscribe")];
    let keys = ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"];
    let per_key = 15;
    for i in 0..per_key {
        for k in keys {
            publish(t.as_ref(), &topic, k, format!("{k}:{i}")).await;
        }
    }
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_consumer: [HashMap<String, Vec<usize>>; 2] = [HashMap::new(), HashMap::new()];
    let mut rounds = 0;
    while seen
        .values()
        .map(|v| v.iter().collect::<std::collections::HashSet<_>>().len())
        .sum::<usize>()
        < keys.len() * per_key
    {
        rounds += 1;
        assert!(rounds < 5_000, "messages missing: {seen:?}");
        let which = rounds % 2;
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(100), consumers[which].next()).await {
            let body = text(&d);
            let (k, i) = body.split_once(':').expect("body");
            let i: usize = i.parse().expect("index");
            seen.entry(k.to_string()).or_default().push(i);
            by_consumer[which].entry(k.to_string()).or_default().push(i);
            d.ack().await;
        }
    }
    for consumer in &by_consumer {
        for (k, got) in consumer {
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "one consumer saw key {k} out of order: {got:?}"
            );
        }
    }
}

/// Shared consumers compete: every message is delivered to exactly one of them.
pub async fn shared_delivers_each_message_once(t: Arc<dyn Transport>) {
    let topic = unique("shared");
    let mut a = t
        .subscribe(&topic, "s", SubscriptionKind::Shared)
        .await
        .expect("subscribe");
    let mut b = t
        .subscribe(&topic, "s", SubscriptionKind::Shared)
        .await
        .expect("subscribe");
    let n = 100;
    for i in 0..n {
        publish(t.as_ref(), &topic, &format!("k{}", i % 7), format!("{i}")).await;
    }
    let mut seen = vec![0u32; n];
    let mut from_a = 0;
    let mut got = 0;
    let mut rounds = 0;
    while got < n {
        rounds += 1;
        assert!(rounds < 10_000, "only {got} of {n} messages arrived");
        let (is_a, sub) = if rounds % 2 == 0 {
            (true, &mut a)
        } else {
            (false, &mut b)
        };
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            seen[text(&d).parse::<usize>().expect("index")] += 1;
            from_a += usize::from(is_a);
            got += 1;
            d.ack().await;
        }
    }
    assert!(seen.iter().all(|&c| c == 1), "each message exactly once: {seen:?}");
    nothing_within(&mut a, Duration::from_millis(200)).await;
    nothing_within(&mut b, Duration::from_millis(200)).await;
    assert!(
        from_a > 0 && from_a < n,
        "both consumers received work ({from_a} of {n} went to one)"
    );
}

/// Two subscriptions of one topic each receive every message.
pub async fn subscriptions_each_receive_every_message(t: Arc<dyn Transport>) {
    let topic = unique("fanout");
    let mut a = t
        .subscribe(&topic, "one", SubscriptionKind::Shared)
        .await
        .expect("subscribe");
    let mut b = t
        .subscribe(&topic, "two", SubscriptionKind::Keyed)
        .await
        .expect("subscribe");
    publish(t.as_ref(), &topic, "k", "hello".into()).await;
    let da = next(&mut a).await;
    let db = next(&mut b).await;
    assert_eq!((text(&da), text(&db)), ("hello".to_string(), "hello".to_string()));
    da.ack().await;
    db.ack().await;
}

/// The first subscription of a topic receives what was published before it existed.
pub async fn first_subscription_receives_earlier_messages(t: Arc<dyn Transport>) {
    let topic = unique("backlog");
    publish(t.as_ref(), &topic, "k", "early".into()).await;
    let mut s = t
        .subscribe(&topic, "s", SubscriptionKind::Keyed)
        .await
        .expect("subscribe");
    let d = next(&mut s).await;
    assert_eq!(text(&d), "early");
    d.ack().await;
}

/// A nacked message comes back with its redelivery count raised.
pub async fn nack_redelivers(t: Arc<dyn Transport>) {
    let topic = unique("nack");
    let mut s = t
        .subscribe(&topic, "s", SubscriptionKind::Shared)
        .await
        .expect("subscribe");
    publish(t.as_ref(), &topic, "k", "again".into()).await;
    let d = next(&mut s).await;
    assert_eq!(d.redeliveries, 0);
    d.nack("try later").await;
    let d = next(&mut s).await;
    assert_eq!((text(&d), d.redeliveries), ("again".to_string(), 1));
    d.ack().await;
    nothing_within(&mut s, Duration::from_millis(300)).await;
}

/// After `MAX_REDELIVERIES` redeliveries a message moves to `dlq:{topic}` with the reason.
pub async fn exhausted_redeliveries_go_to_dead_letter_topic(t: Arc<dyn Transport>) {
    let topic = unique("dlq");
    let dlq_topic = baton_shared_schemas::topics::dead_letter_topic(&topic);
    let mut dlq = t
        .subscribe(&dlq_topic, "ops", SubscriptionKind::Shared)
        .await
        .expect("subscribe dlq");
    let mut s = t
        .subscribe(&topic, "s", SubscriptionKind::Keyed)
        .await
        .expect("subscribe");
    publish(t.as_ref(), &topic, "k", "poison".into()).await;
    for attempt in 0..=MAX_REDELIVERIES {
        let d = next(&mut s).await;
        assert_eq!(d.redeliveries, attempt);
        d.nack("handler failed").await;
    }
    let dead = next(&mut dlq).await;
    assert_eq!(text(&dead), "poison");
    assert_eq!(dead.key, "k");
    let reason = dead.header(headers::DEAD_LETTER_REASON).expect("reason header");
    assert!(reason.contains("handler failed"), "{reason}");
    assert_eq!(dead.header(headers::ORIGINAL_TOPIC), Some(topic.as_str()));
    dead.ack().await;
    nothing_within(&mut s, Duration::from_millis(300)).await;
}

/// A message the consumer knows it can never process goes to the dead-letter topic at once,
/// saying where it was (two with the same bytes are told apart).
pub async fn explicit_dead_letter(t: Arc<dyn Transport>) {
    let topic = unique("poison");
    let dlq_topic = baton_shared_schemas::topics::dead_letter_topic(&topic);
    let mut dlq = t
        .subscribe(&dlq_topic, "ops", SubscriptionKind::Shared)
        .await
        .expect("subscribe dlq");
    let mut s = t
        .subscribe(&topic, "s", SubscriptionKind::Shared)
        .await
        .expect("subscribe");
    publish(t.as_ref(), &topic, "k", "garbage".into()).await;
    publish(t.as_ref(), &topic, "k", "garbage".into()).await;
    publish(t.as_ref(), &topic, "k", "fine".into()).await;
    for _ in 0..2 {
        let d = next(&mut s).await;
        assert_eq!(text(&d), "garbage");
        d.dead_letter("malformed envelope").await;
    }
    let d = next(&mut s).await;
    assert_eq!(text(&d), "fine", "the consumer carries on after a dead letter");
    d.ack().await;
    let mut positions = Vec::new();
    for _ in 0..2 {
        let dead = next(&mut dlq).await;
        assert_eq!(dead.header(headers::DEAD_LETTER_REASON), Some("malformed envelope"));
        positions.push(dead.header(headers::ORIGINAL_POSITION).map(str::to_string));
        dead.ack().await;
    }
    assert!(
        positions.iter().all(Option::is_some) && positions[0] != positions[1],
        "two messages with the same bytes say where each was: {positions:?}"
    );
}

/// Messages a consumer received but did not acknowledge are redelivered to the next consumer
/// after it goes away; acknowledged ones are not.
pub async fn no_loss_across_consumer_restart(t: Arc<dyn Transport>) {
    for kind in [SubscriptionKind::Keyed, SubscriptionKind::Shared] {
        let topic = unique("restart");
        let mut first = t.subscribe(&topic, "s", kind).await.expect("subscribe");
        for i in 0..10 {
            publish(t.as_ref(), &topic, "same-key", format!("{i}")).await;
        }
        for i in 0..4 {
            let d = next(&mut first).await;
            assert_eq!(text(&d), i.to_string());
            if i < 2 {
                d.ack().await;
            }
        }
        drop(first);
        let mut second = t.subscribe(&topic, "s", kind).await.expect("resubscribe");
        let mut rest = Vec::new();
        for _ in 2..10 {
            let d = next(&mut second).await;
            rest.push(text(&d));
            d.ack().await;
        }
        rest.sort_by_key(|s| s.parse::<u32>().unwrap_or(u32::MAX));
        assert_eq!(rest, (2..10).map(|i| i.to_string()).collect::<Vec<_>>(), "{kind:?}");
        nothing_within(&mut second, Duration::from_millis(300)).await;
    }
}

/// Messages published together (which a broker may store as one batched entry) are settled one
/// by one: of those a consumer received, the ones it neither acknowledged nor nacked reach the
/// next consumer, a nacked one is redelivered, and once every message is settled none comes
/// again.
pub async fn messages_published_together_are_settled_one_by_one(t: Arc<dyn Transport>) {
    for kind in [SubscriptionKind::Keyed, SubscriptionKind::Shared] {
        let topic = unique("together");
        let mut first = t.subscribe(&topic, "s", kind).await.expect("subscribe");
        let all: Vec<String> = (0..24).map(|i| format!("k{}:{i}", i % 4)).collect();
        let batch = all
            .iter()
            .map(|body| {
                let key = body.split(':').next().unwrap_or_default().to_string();
                (topic.clone(), OutgoingMessage::new(key, body.clone().into_bytes()))
            })
            .collect();
        t.publish_all(batch).await.expect("publish_all");
        let mut left = std::collections::BTreeSet::new();
        for _ in 0..all.len() {
            let d = next(&mut first).await;
            let body = text(&d);
            let index: usize = body.split(':').nth(1).and_then(|i| i.parse().ok()).expect("index");
            match index % 3 {
                0 => {
                    left.insert(body);
                }
                1 if index == 1 => {
                    left.insert(body);
                    d.nack("conformance").await;
                }
                _ => d.ack().await,
            }
        }
        drop(first);
        let mut second = t.subscribe(&topic, "s", kind).await.expect("resubscribe");
        let mut rounds = 0;
        while !left.is_empty() {
            rounds += 1;
            assert!(rounds < 200, "{kind:?}: never delivered again: {left:?}");
            let d = next(&mut second).await;
            left.remove(&text(&d));
            d.ack().await;
        }
        // Copies of settled messages that shared an entry with unsettled ones may come again.
        while let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(500), second.next()).await {
            d.ack().await;
        }
        drop(second);
        let mut third = t.subscribe(&topic, "s", kind).await.expect("resubscribe");
        nothing_within(&mut third, Duration::from_millis(1000)).await;
    }
}

/// An exclusive subscription refuses a second live consumer and accepts one after the first left.
pub async fn exclusive_has_one_consumer(t: Arc<dyn Transport>) {
    let topic = unique("exclusive");
    let first = t
        .subscribe(&topic, "s", SubscriptionKind::Exclusive)
        .await
        .expect("subscribe");
    assert!(t.subscribe(&topic, "s", SubscriptionKind::Exclusive).await.is_err());
    drop(first);
    let mut again = t
        .subscribe(&topic, "s", SubscriptionKind::Exclusive)
        .await
        .expect("resubscribe");
    publish(t.as_ref(), &topic, "k", "only".into()).await;
    let d = next(&mut again).await;
    assert_eq!(text(&d), "only");
    d.ack().await;
}

/// One consumer leaves while two others join, all at the same moment: every message still
/// arrives, and each consumer sees one key's messages in publish order.
pub async fn consumers_joining_and_leaving_together(t: Arc<dyn Transport>) {
    let topic = unique("join-leave");
    let keys: Vec<String> = (0..8).map(|k| format!("k{k}")).collect();
    let per_round = 10;
    let mut leaving = t
        .subscribe(&topic, "s", SubscriptionKind::Keyed)
        .await
        .expect("subscribe");
    for i in 0..per_round {
        for k in &keys {
            publish(t.as_ref(), &topic, k, format!("{k}:{i}")).await;
        }
    }
    let mut acked = std::collections::HashSet::new();
    for _ in 0..20 {
        let d = next(&mut leaving).await;
        acked.insert(text(&d));
        d.ack().await;
    }
    let (_, b, c) = tokio::join!(
        async move { drop(leaving) },
        t.subscribe(&topic, "s", SubscriptionKind::Keyed),
        t.subscribe(&topic, "s", SubscriptionKind::Keyed)
    );
    let mut consumers = [b.expect("subscribe"), c.expect("subscribe")];
    for i in per_round..2 * per_round {
        for k in &keys {
            publish(t.as_ref(), &topic, k, format!("{k}:{i}")).await;
        }
    }
    let total = keys.len() * 2 * per_round;
    let mut by_consumer: [HashMap<String, Vec<usize>>; 2] = [HashMap::new(), HashMap::new()];
    let mut rounds = 0;
    while acked.len() < total {
        rounds += 1;
        assert!(rounds < 5_000, "only {} of {total} messages arrived", acked.len());
        let which = rounds % 2;
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(100), consumers[which].next()).await {
            let body = text(&d);
            let (k, i) = body.split_once(':').expect("body");
            by_consumer[which]
                .entry(k.to_string())
                .or_default()
                .push(i.parse().expect("index"));
            acked.insert(body);
            d.ack().await;
        }
    }
    for consumer in &by_consumer {
        for (k, got) in consumer {
            // Redeliveries may repeat a message; first arrivals must follow publish order.
            let mut seen = std::collections::HashSet::new();
            let first: Vec<usize> = got.iter().copied().filter(|i| seen.insert(*i)).collect();
            assert!(
                first.windows(2).all(|w| w[0] < w[1]),
                "one consumer saw key {k} out of order: {got:?}"
            );
        }
    }
}

/// What the suites on a real broker can do besides handing out a transport.
pub trait BrokerHarness: Send {
    /// Stops the broker gracefully and starts it again on the same ports and data (blocking).
    fn restart(&mut self);
    /// Kills the broker (SIGKILL) and starts it again on the same ports and data (blocking).
    fn crash_restart(&mut self);
    /// A command that runs one consumer of the keyed `subscription` of `topic` in a process of
    /// its own: the `conformance-member` binary of this crate.
    fn member(&self, topic: &str, subscription: &str) -> std::process::Command;
}

/// The broker is restarted mid-stream: nothing is lost, a message acknowledged before the
/// restart is never delivered again, and deliveries held across the restart can be settled
/// after it.
pub async fn broker_restart_loses_nothing(t: Arc<dyn Transport>, broker: &mut dyn BrokerHarness) {
    let again = across_a_broker_restart(t, broker, false).await;
    assert!(
        again.is_empty(),
        "acknowledged before the restart, delivered again: {again:?}"
    );
}

/// The broker is killed (SIGKILL) and restarted mid-stream: nothing is lost. Acknowledgements
/// the broker had not yet persisted may be delivered again (at-least-once), which idempotent
/// consumers absorb.
pub async fn broker_crash_loses_nothing(t: Arc<dyn Transport>, broker: &mut dyn BrokerHarness) {
    let again = across_a_broker_restart(t, broker, true).await;
    if !again.is_empty() {
        eprintln!(
            "{} acknowledged messages were delivered again after the crash",
            again.len()
        );
    }
}

/// Publishes and consumes across a broker restart; returns the messages acknowledged before it
/// that were delivered again after it. Panics if any message is lost.
async fn across_a_broker_restart(t: Arc<dyn Transport>, broker: &mut dyn BrokerHarness, crash: bool) -> Vec<String> {
    let topic = unique("restart-broker");
    let mut s = t
        .subscribe(&topic, "s", SubscriptionKind::Keyed)
        .await
        .expect("subscribe");
    for i in 0..30 {
        publish(t.as_ref(), &topic, &format!("k{}", i % 3), format!("{i}")).await;
    }
    let mut held = Vec::new();
    let mut acked_before = std::collections::HashSet::new();
    let mut delivered = std::collections::HashSet::new();
    for n in 0..30 {
        let d = next(&mut s).await;
        delivered.insert(text(&d));
        if n < 15 {
            acked_before.insert(text(&d));
            d.ack().await;
        } else {
            held.push(d);
        }
    }
    // Acks are sent asynchronously; give them time to reach the broker before it dies.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| {
        if crash {
            broker.crash_restart()
        } else {
            broker.restart()
        }
    });
    for d in held {
        d.ack().await;
    }
    for i in 30..60 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let message = OutgoingMessage::new(format!("k{}", i % 3), i.to_string().into_bytes());
            match t.publish(&topic, message).await {
                Ok(()) => break,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot publish after the restart: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    let mut again = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let missing = (0..60).filter(|i| !delivered.contains(&i.to_string())).count();
        let wait = if missing == 0 {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(500)
        };
        match tokio::time::timeout(wait, s.next()).await {
            Ok(Ok(d)) => {
                let body = text(&d);
                if acked_before.contains(&body) {
                    again.push(body.clone());
                }
                delivered.insert(body);
                d.ack().await;
            }
            Ok(Err(e)) => panic!("subscription failed after the restart: {e}"),
            Err(_) if missing == 0 => break,
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "{missing} messages never arrived after the broker restart"
            ),
        }
    }
    again
}

/// A consumer in another process is SIGKILLed while a new consumer joins (a rebalance in
/// progress): every message it did not process reaches the new consumer.
pub async fn member_killed_during_rebalance(t: Arc<dyn Transport>, broker: &mut dyn BrokerHarness) {
    use std::io::BufRead;
    let topic = unique("killed-member");
    // The subscription exists before anything is published, so nothing is missed.
    drop(
        t.subscribe(&topic, "s", SubscriptionKind::Keyed)
            .await
            .expect("subscribe"),
    );
    let total = 200;
    for i in 0..total {
        publish(t.as_ref(), &topic, &format!("k{}", i % 20), format!("{i}")).await;
    }
    let mut member = broker
        .member(&topic, "s")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start the member process");
    let stdout = member.stdout.take().expect("member stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut processed = std::collections::HashSet::new();
    let started = std::time::Instant::now();
    let mut ready = false;
    while !(ready && processed.len() >= 10) {
        assert!(started.elapsed() < WAIT * 3, "the member did not start consuming");
        match lines_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line == "ready" => ready = true,
            Ok(line) => {
                if let Some(body) = line.strip_prefix("got ") {
                    processed.insert(body.to_string());
                }
            }
            Err(_) => {}
        }
    }
    let joining = {
        let t = t.clone();
        let topic = topic.clone();
        tokio::spawn(async move { t.subscribe(&topic, "s", SubscriptionKind::Keyed).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = member.kill(); // SIGKILL, during the rebalance the new consumer started
    let _ = member.wait();
    while let Ok(line) = lines_rx.try_recv() {
        if let Some(body) = line.strip_prefix("got ") {
            processed.insert(body.to_string());
        }
    }
    let mut survivor = joining.await.expect("join").expect("subscribe");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while processed.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {total} messages never reached the surviving consumer",
            total - processed.len()
        );
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(500), survivor.next()).await {
            processed.insert(text(&d));
            d.ack().await;
        }
    }
}

/// Instantiates the checks that need a real broker ([`BrokerHarness`]) as `#[tokio::test]`s,
/// given an async factory `|| async { (Arc<dyn Transport>, harness) }`.
#[macro_export]
macro_rules! transport_broker_conformance_tests {
    ($factory:expr) => {
        $crate::transport_broker_conformance_tests!(@cases $factory;
            broker_restart_loses_nothing,
            broker_crash_loses_nothing,
            member_killed_during_rebalance,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let factory = $factory;
                let (transport, mut harness) = factory().await;
                $crate::conformance::$case(transport, &mut harness).await;
            }
        )*
    };
}

/// Instantiates every conformance check as a `#[tokio::test]`, given an expression that
/// evaluates to an async factory `|| async { (Arc<dyn Transport>, guard) }`; the guard (a broker
/// process, or `()`) lives until the check ends.
#[macro_export]
macro_rules! transport_conformance_tests {
    ($factory:expr) => {
        $crate::transport_conformance_tests!(@cases $factory;
            keyed_preserves_order_per_key,
            keyed_consumers_joining_together,
            shared_delivers_each_message_once,
            subscriptions_each_receive_every_message,
            first_subscription_receives_earlier_messages,
            nack_redelivers,
            exhausted_redeliveries_go_to_dead_letter_topic,
            explicit_dead_letter,
            no_loss_across_consumer_restart,
            messages_published_together_are_settled_one_by_one,
            exclusive_has_one_consumer,
            consumers_joining_and_leaving_together,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let factory = $factory;
                let (transport, _guard) = factory().await;
                $crate::conformance::$case(transport).await;
            }
        )*
    };
}
