//! The shared consume loop over the in-memory transport: decoding, batching, and settling by
//! error class.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_runtime::{CancellationToken, Classify, ErrorClass, Transient};
use baton_shared_schemas::messages::TimerMessage;
use baton_shared_schemas::{EncodedMessage, Envelope, TimerId, Timestamp, Topic};
use baton_transport::{
    ConsumeLoop, Handler, InMemoryTransport, Incoming, MemoryConfig, OutgoingMessage, SubscriptionKind, Transport,
    headers, outgoing,
};

/// How the test handler fails a message, by its timer id's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    /// A dependency is down for the first `n` tries.
    Outage(u32),
    Poison,
    /// Fails the first try only.
    RetryOnce,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?}")]
struct TestError(ErrorClass);

impl Transient for TestError {
    fn is_transient(&self) -> bool {
        self.0 == ErrorClass::Transient
    }
}

impl Classify for TestError {
    fn class(&self) -> ErrorClass {
        self.0
    }
}

#[derive(Clone, Default)]
struct Recorder {
    /// Sizes of the batches handed over.
    batches: Arc<Mutex<Vec<usize>>>,
    /// (timer, redeliveries) of every try.
    tries: Arc<Mutex<Vec<(TimerId, u32)>>>,
    /// Timers handled successfully.
    handled: Arc<Mutex<Vec<TimerId>>>,
    plan: Arc<Mutex<Vec<(TimerId, Fail)>>>,
}

impl Recorder {
    fn plan(&self, timer: TimerId, fail: Fail) {
        self.plan.lock().expect("plan").push((timer, fail));
    }

    fn tries_of(&self, timer: TimerId) -> Vec<u32> {
        let tries = self.tries.lock().expect("tries");
        tries.iter().filter(|(t, _)| *t == timer).map(|(_, r)| *r).collect()
    }

    fn handled(&self) -> Vec<TimerId> {
        self.handled.lock().expect("handled").clone()
    }
}

#[async_trait::async_trait]
impl Handler<TimerMessage> for Recorder {
    type Error = TestError;

    async fn handle_one(&mut self, message: &Incoming<TimerMessage>) -> Result<(), TestError> {
        let timer = message.envelope.body.timer_id();
        let tries = {
            let mut all = self.tries.lock().expect("tries");
            all.push((timer, message.redeliveries));
            all.iter().filter(|(t, _)| *t == timer).count() as u32
        };
        let fail = self
            .plan
            .lock()
            .expect("plan")
            .iter()
            .find(|(t, _)| *t == timer)
            .map(|(_, f)| *f);
        match fail {
            Some(Fail::Outage(n)) if tries <= n => return Err(TestError(ErrorClass::Transient)),
            Some(Fail::Poison) => return Err(TestError(ErrorClass::Poison)),
            Some(Fail::RetryOnce) if tries == 1 => return Err(TestError(ErrorClass::Retryable)),
            _ => {}
        }
        self.handled.lock().expect("handled").push(timer);
        Ok(())
    }

    async fn handle(&mut self, batch: &[Incoming<TimerMessage>]) -> Vec<Result<(), TestError>> {
        self.batches.lock().expect("batches").push(batch.len());
        let mut results = Vec::new();
        for message in batch {
            let result = self.handle_one(message).await;
            let stop = matches!(&result, Err(e) if e.is_transient());
            results.push(result);
            if stop {
                break;
            }
        }
        results
    }
}

const TOPIC: &str = "timers";

async fn publish_cancel(transport: &InMemoryTransport, timer: TimerId) {
    let envelope = Envelope::new(TimerMessage::Cancel { timer_id: timer }, Timestamp(1));
    let message = EncodedMessage::encode(&Topic::timers(), &envelope).expect("encode");
    let (topic, message) = outgoing(message);
    transport.publish(&topic, message).await.expect("publish");
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

struct Running {
    transport: Arc<InMemoryTransport>,
    recorder: Recorder,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<baton_transport::Result<()>>,
}

/// Subscribes, publishes `before` messages, then starts the loop, so they are ready at once.
async fn start(batch: usize, before: &[TimerId], recorder: Recorder) -> Running {
    let transport = Arc::new(InMemoryTransport::new(MemoryConfig::default()));
    let subscription = transport
        .subscribe(TOPIC, "test", SubscriptionKind::Keyed)
        .await
        .expect("subscribe");
    for timer in before {
        publish_cancel(&transport, *timer).await;
    }
    let shutdown = CancellationToken::new();
    let consume = ConsumeLoop::new("timer message", shutdown.clone()).batch(batch);
    let mut handler = recorder.clone();
    let task = tokio::spawn(async move { consume.run(subscription, &mut handler).await });
    Running {
        transport,
        recorder,
        shutdown,
        task,
    }
}

#[tokio::test]
async fn ready_deliveries_are_handled_as_one_batch_in_order() {
    let timers: Vec<TimerId> = (0..5).map(|_| TimerId::new()).collect();
    let running = start(10, &timers, Recorder::default()).await;
    eventually("all are handled", || running.recorder.handled().len() == 5).await;
    assert_eq!(*running.recorder.batches.lock().expect("batches"), vec![5]);
    running.shutdown.cancel();
    running.task.await.expect("join").expect("loop");
}

#[tokio::test]
async fn undecodable_and_poison_messages_are_dead_lettered_at_once_with_the_reason() {
    let recorder = Recorder::default();
    let (poison, fine) = (TimerId::new(), TimerId::new());
    recorder.plan(poison, Fail::Poison);
    let running = start(4, &[], recorder).await;
    let mut dead = running
        .transport
        .subscribe(&Topic::timers().dead_letter_name(), "test", SubscriptionKind::Shared)
        .await
        .expect("subscribe to the dead-letter topic");
    running
        .transport
        .publish(TOPIC, OutgoingMessage::new("k", vec![1, 2, 3]))
        .await
        .expect("publish garbage");
    publish_cancel(&running.transport, poison).await;
    publish_cancel(&running.transport, fine).await;
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(5), dead.next())
            .await
            .expect("dead-lettered in time")
            .expect("delivery");
        reasons.push(d.header(headers::DEAD_LETTER_REASON).unwrap_or_default().to_string());
        d.ack().await;
    }
    assert!(reasons[0].starts_with("undecodable timer message"), "{reasons:?}");
    assert_eq!(reasons[1], "Poison");
    eventually("the good message is handled", || {
        running.recorder.handled() == vec![fine]
    })
    .await;
    assert_eq!(
        running.recorder.tries_of(poison),
        vec![0],
        "poison is tried once, never redelivered"
    );
    running.shutdown.cancel();
    running.task.await.expect("join").expect("loop");
}

#[tokio::test]
async fn a_retryable_failure_is_redelivered_and_a_transient_one_retried_in_place() {
    let recorder = Recorder::default();
    // One routing key (a timer's key is its shard, from its id's last byte), so one order.
    let on_one_key = |n: u8| {
        let mut bytes = *TimerId::new().0.as_bytes();
        bytes[0] = n;
        bytes[15] = 7;
        TimerId(uuid::Uuid::from_bytes(bytes))
    };
    let (retried, waited, after) = (on_one_key(1), on_one_key(2), on_one_key(3));
    recorder.plan(retried, Fail::RetryOnce);
    recorder.plan(waited, Fail::Outage(3));
    let running = start(8, &[waited, after, retried], recorder).await;
    eventually("all are handled", || running.recorder.handled().len() == 3).await;
    assert_eq!(
        running.recorder.tries_of(retried),
        vec![0, 1],
        "nacked, then redelivered"
    );
    assert_eq!(
        running.recorder.tries_of(waited),
        vec![0, 0, 0, 0],
        "the outage is waited out without spending a redelivery"
    );
    let handled = running.recorder.handled();
    let position = |t: TimerId| handled.iter().position(|h| *h == t);
    assert!(
        position(waited) < position(after),
        "order kept through the outage: {handled:?}"
    );
    running.shutdown.cancel();
    running.task.await.expect("join").expect("loop");
}

#[tokio::test]
async fn stopping_during_an_outage_leaves_the_message_for_redelivery() {
    let recorder = Recorder::default();
    let stuck = TimerId::new();
    recorder.plan(stuck, Fail::Outage(u32::MAX));
    let running = start(1, &[stuck], recorder).await;
    eventually("it is tried", || !running.recorder.tries_of(stuck).is_empty()).await;
    running.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("the loop stops despite the outage")
        .expect("join")
        .expect("loop");
    assert!(running.recorder.handled().is_empty());
    // A new consumer of the subscription gets it again.
    let mut again = running
        .transport
        .subscribe(TOPIC, "test", SubscriptionKind::Keyed)
        .await
        .expect("subscribe again");
    let d = tokio::time::timeout(Duration::from_secs(5), again.next())
        .await
        .expect("redelivered")
        .expect("delivery");
    let envelope: Envelope<TimerMessage> = baton_shared_schemas::decode(&d.payload).expect("decode");
    assert_eq!(envelope.body.timer_id(), stuck);
}
