//! Fault injection over any transport, for fault tests and soak runs: it publishes some
//! messages twice (as a producer retry after a lost broker reply does), delivers some messages
//! twice (as a redelivery after a lost acknowledgement does) and swaps the order of some
//! deliveries (as a redelivery after a nack does). Reordering stays within what the
//! subscription kind promises: on a shared subscription any two deliveries may swap, on keyed
//! and exclusive ones only deliveries of different keys (a broker keeps one key's messages in
//! publish order). Baton must come out the same: every consumer drops duplicates by message id
//! and no decision depends on the order of two messages the broker may swap.
//!
//! Nothing is lost by this layer: a published message is in the broker before `publish`
//! returns, a held-back delivery is still unacknowledged (a crash redelivers it) and is handed
//! out at the latest [`ChaosConfig::max_hold`] later. A duplicated delivery settles nothing: its
//! acknowledgement is dropped, so the broker's view follows the original alone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use baton_telemetry::names;

use crate::{
    Acknowledger, Delivery, OutgoingMessage, Result, Subscription, SubscriptionKind, SubscriptionStatus, Transport,
};

/// How often each fault is injected: each rate is a probability in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChaosConfig {
    /// A published message is published a second time.
    pub duplicate_publish: f64,
    /// A delivery is handed to the component a second time, right after the original.
    pub duplicate_delivery: f64,
    /// A delivery is held back and handed out after the next one.
    pub reorder: f64,
    /// Longest time a held-back delivery waits for a next one to overtake it.
    pub max_hold: Duration,
    /// Seeds the faults' dice (the same seed gives the same sequence of rolls).
    pub seed: u64,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            duplicate_publish: 0.0,
            duplicate_delivery: 0.0,
            reorder: 0.0,
            max_hold: Duration::from_millis(20),
            seed: 1,
        }
    }
}

impl ChaosConfig {
    /// Whether any fault is injected at all.
    pub fn is_active(&self) -> bool {
        self.duplicate_publish > 0.0 || self.duplicate_delivery > 0.0 || self.reorder > 0.0
    }

    /// Checks that every rate is a probability.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, rate) in [
            ("duplicate_publish", self.duplicate_publish),
            ("duplicate_delivery", self.duplicate_delivery),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("transport.chaos.{name} must be between 0 and 1, not {rate}"));
            }
        }
        Ok(())
    }
}

/// What the layer injected so far.
#[derive(Debug, Default)]
pub struct ChaosCounts {
    /// Messages published twice.
    pub duplicated_publishes: AtomicU64,
    /// Deliveries handed out twice.
    pub duplicated_deliveries: AtomicU64,
    /// Deliveries handed out after a later one.
    pub reordered: AtomicU64,
}

/// Rolls the dice: a counter through a SplitMix64 finaliser, so rolls are cheap, shared by
/// every task and repeatable for a seed.
struct Dice {
    seed: u64,
    rolls: AtomicU64,
}

impl Dice {
    /// A number in `[0, 1)`.
    fn roll(&self) -> f64 {
        let n = self.rolls.fetch_add(1, Ordering::Relaxed);
        let mut x = self.seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn hits(&self, rate: f64) -> bool {
        rate > 0.0 && self.roll() < rate
    }
}

struct Shared {
    config: ChaosConfig,
    dice: Dice,
    counts: Arc<ChaosCounts>,
}

impl Shared {
    fn count(&self, counter: &AtomicU64, kind: &'static str) {
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::CHAOS_INJECTED, "kind" => kind).increment(1);
    }
}

/// A transport that injects duplicates and reorderings into another.
pub struct Chaos {
    inner: Arc<dyn Transport>,
    shared: Arc<Shared>,
}

impl Chaos {
    /// Wraps `inner`, returning the layer and its counts.
    pub fn wrap(inner: Arc<dyn Transport>, config: ChaosConfig) -> (Arc<dyn Transport>, Arc<ChaosCounts>) {
        let counts = Arc::new(ChaosCounts::default());
        let shared = Arc::new(Shared {
            config,
            dice: Dice {
                seed: config.seed,
                rolls: AtomicU64::new(0),
            },
            counts: counts.clone(),
        });
        (Arc::new(Self { inner, shared }), counts)
    }
}

#[async_trait::async_trait]
impl Transport for Chaos {
    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<()> {
        if self.shared.dice.hits(self.shared.config.duplicate_publish) {
            self.inner.publish(topic, message.clone()).await?;
            self.shared
                .count(&self.shared.counts.duplicated_publishes, "duplicate_publish");
        }
        self.inner.publish(topic, message).await
    }

    async fn publish_all(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<()> {
        let mut out = Vec::with_capacity(messages.len());
        for (topic, message) in messages {
            if self.shared.dice.hits(self.shared.config.duplicate_publish) {
                out.push((topic.clone(), message.clone()));
                self.shared
                    .count(&self.shared.counts.duplicated_publishes, "duplicate_publish");
            }
            out.push((topic, message));
        }
        self.inner.publish_all(out).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        kind: SubscriptionKind,
    ) -> Result<Box<dyn Subscription>> {
        let inner = self.inner.subscribe(topic, subscription, kind).await?;
        Ok(Box::new(ChaoticSubscription {
            inner,
            shared: self.shared.clone(),
            keeps_key_order: kind != SubscriptionKind::Shared,
            ready: VecDeque::new(),
            held: None,
        }))
    }

    fn subscription_status(&self) -> SubscriptionStatus {
        self.inner.subscription_status()
    }

    async fn check(&self, timeout: Duration) -> Result<()> {
        self.inner.check(timeout).await
    }
}

/// Settles nothing: the acknowledgement of a duplicated delivery, whose original settles the
/// message with the broker.
struct Unsettled;

#[async_trait::async_trait]
impl Acknowledger for Unsettled {
    async fn ack(&self, _tag: u64) {}
    async fn nack(&self, _tag: u64, _reason: &str) {}
    async fn dead_letter(&self, _tag: u64, _reason: &str) {}
}

struct ChaoticSubscription {
    inner: Box<dyn Subscription>,
    shared: Arc<Shared>,
    /// Whether two deliveries of one key must keep their order (keyed and exclusive).
    keeps_key_order: bool,
    /// Deliveries to hand out before taking more from the broker.
    ready: VecDeque<Delivery>,
    /// A delivery held back for the next one to overtake, and until when.
    held: Option<(Delivery, tokio::time::Instant)>,
}

impl ChaoticSubscription {
    /// Queues `delivery`, and a copy of it when the dice say so.
    fn queue(&mut self, delivery: Delivery) {
        let copy = self.shared.dice.hits(self.shared.config.duplicate_delivery).then(|| {
            Delivery::new(
                delivery.topic.clone(),
                delivery.key.clone(),
                delivery.payload.clone(),
                delivery.headers.clone(),
                delivery.redeliveries + 1,
                0,
                Arc::new(Unsettled),
            )
        });
        self.ready.push_back(delivery);
        if let Some(copy) = copy {
            self.shared
                .count(&self.shared.counts.duplicated_deliveries, "duplicate_delivery");
            self.ready.push_back(copy);
        }
    }
}

#[async_trait::async_trait]
impl Subscription for ChaoticSubscription {
    async fn next(&mut self) -> Result<Delivery> {
        // Cancel-safe: every delivery taken from the broker is in `ready` or `held` before the
        // next await point.
        loop {
            if let Some(delivery) = self.ready.pop_front() {
                return Ok(delivery);
            }
            let incoming = match &self.held {
                Some((_, until)) => {
                    let until = *until;
                    tokio::select! {
                        next = self.inner.next() => Some(next?),
                        () = tokio::time::sleep_until(until) => None,
                    }
                }
                None => Some(self.inner.next().await?),
            };
            match (incoming, self.held.take()) {
                // Nothing overtook the held delivery in time: it goes out now.
                (None, Some((held, _))) => self.queue(held),
                (None, None) => {}
                // The broker keeps one key's messages in order; so does the layer.
                (Some(next), Some((held, _))) if self.keeps_key_order && next.key == held.key => {
                    self.queue(held);
                    self.queue(next);
                }
                (Some(next), Some((held, _))) => {
                    self.shared.count(&self.shared.counts.reordered, "reorder");
                    self.queue(next);
                    self.queue(held);
                }
                (Some(next), None) => {
                    if self.shared.dice.hits(self.shared.config.reorder) {
                        let until = tokio::time::Instant::now() + self.shared.config.max_hold;
                        self.held = Some((next, until));
                    } else {
                        self.queue(next);
                    }
                }
            }
        }
    }
}

#[cfg(all(test, feature = "in-memory"))]
mod tests {
    use super::*;
    use crate::{InMemoryTransport, MemoryConfig};

    /// A chaotic in-memory transport, subscribed to topic `t` as `kind`, with `count`
    /// numbered messages published to it under `keys` keys.
    async fn chaotic(
        config: ChaosConfig,
        kind: SubscriptionKind,
        count: u32,
        keys: u32,
    ) -> (Arc<ChaosCounts>, Box<dyn Subscription>) {
        let (chaos, counts) = Chaos::wrap(Arc::new(InMemoryTransport::new(MemoryConfig::default())), config);
        let subscription = chaos.subscribe("t", "s", kind).await.expect("subscribe");
        publish_numbers(chaos.as_ref(), "t", count, keys).await;
        (counts, subscription)
    }

    async fn publish_numbers(transport: &dyn Transport, topic: &str, count: u32, keys: u32) {
        for n in 0..count {
            let key = format!("k{}", n % keys);
            transport
                .publish(topic, OutgoingMessage::new(key, n.to_be_bytes().to_vec()))
                .await
                .expect("publish");
        }
    }

    /// The first arrival of each message, in arrival order (copies dropped).
    fn first_arrivals(order: &[u32]) -> Vec<u32> {
        let mut seen = std::collections::HashSet::new();
        order.iter().copied().filter(|&n| seen.insert(n)).collect()
    }

    fn number(delivery: &Delivery) -> u32 {
        u32::from_be_bytes(delivery.payload[..4].try_into().expect("four bytes"))
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused_by_name() {
        let config = ChaosConfig {
            reorder: 1.5,
            ..ChaosConfig::default()
        };
        let error = config.validate().expect_err("1.5 is not a probability");
        assert!(error.contains("transport.chaos.reorder"), "{error}");
        assert!(!ChaosConfig::default().is_active());
    }

    #[test]
    fn the_dice_follow_their_rate() {
        let dice = Dice {
            seed: 7,
            rolls: AtomicU64::new(0),
        };
        let hits = (0..100_000).filter(|_| dice.hits(0.1)).count();
        assert!((9_000..11_000).contains(&hits), "{hits} hits in 100,000 at 10 %");
        assert!(!(0..1_000).any(|_| dice.hits(0.0)));
    }

    #[tokio::test]
    async fn every_message_published_is_delivered_at_least_once_and_some_twice_or_out_of_order() {
        let (counts, mut subscription) = chaotic(
            ChaosConfig {
                duplicate_publish: 0.1,
                duplicate_delivery: 0.1,
                reorder: 0.2,
                ..ChaosConfig::default()
            },
            SubscriptionKind::Keyed,
            500,
            8,
        )
        .await;
        let (mut seen, mut order) = (std::collections::BTreeMap::<u32, u32>::new(), Vec::new());
        // Until every message has arrived, then whatever copies are still queued.
        loop {
            let wait = if seen.len() < 500 { 5_000 } else { 200 };
            let Ok(delivery) = tokio::time::timeout(Duration::from_millis(wait), subscription.next()).await else {
                break;
            };
            let delivery = delivery.expect("delivery");
            *seen.entry(number(&delivery)).or_default() += 1;
            order.push(number(&delivery));
            delivery.ack().await;
        }
        let copies =
            counts.duplicated_publishes.load(Ordering::Relaxed) + counts.duplicated_deliveries.load(Ordering::Relaxed);
        assert_eq!(
            order.len() as u64,
            500 + copies,
            "each original and each copy arrives once"
        );
        let duplicated_deliveries = counts.duplicated_deliveries.load(Ordering::Relaxed);
        assert_eq!(seen.len(), 500, "every message arrives");
        assert!(seen.values().any(|&n| n > 1), "some arrive twice");
        assert!(duplicated_deliveries > 0);
        assert!(counts.reordered.load(Ordering::Relaxed) > 0);
        assert!(order.windows(2).any(|w| w[0] > w[1]), "some arrive out of order");
    }

    /// Drains `count` messages (and the copies queued right behind them) in arrival order.
    async fn arrivals(subscription: &mut dyn Subscription, count: usize) -> Vec<u32> {
        let mut order = Vec::new();
        while first_arrivals(&order).len() < count {
            let delivery = subscription.next().await.expect("delivery");
            order.push(number(&delivery));
            delivery.ack().await;
        }
        order
    }

    #[tokio::test]
    async fn on_a_keyed_subscription_messages_of_one_key_keep_their_order() {
        let config = ChaosConfig {
            duplicate_delivery: 0.2,
            reorder: 0.5,
            ..ChaosConfig::default()
        };
        let (counts, mut subscription) = chaotic(config, SubscriptionKind::Keyed, 200, 1).await;
        let order = arrivals(subscription.as_mut(), 200).await;
        assert!(counts.duplicated_deliveries.load(Ordering::Relaxed) > 0);
        assert_eq!(first_arrivals(&order), (0..200).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn on_a_shared_subscription_messages_of_one_key_may_swap() {
        let (counts, mut subscription) = chaotic(
            ChaosConfig {
                reorder: 0.5,
                ..ChaosConfig::default()
            },
            SubscriptionKind::Shared,
            200,
            1,
        )
        .await;
        let order = arrivals(subscription.as_mut(), 200).await;
        assert!(counts.reordered.load(Ordering::Relaxed) > 0);
        assert_ne!(first_arrivals(&order), (0..200).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_held_back_delivery_goes_out_when_nothing_overtakes_it() {
        let (_, mut subscription) = chaotic(
            ChaosConfig {
                reorder: 1.0,
                ..ChaosConfig::default()
            },
            SubscriptionKind::Shared,
            1,
            1,
        )
        .await;
        let delivery = tokio::time::timeout(Duration::from_secs(2), subscription.next())
            .await
            .expect("the held delivery is handed out after max_hold")
            .expect("delivery");
        assert_eq!(number(&delivery), 0);
    }

    #[tokio::test]
    async fn a_duplicated_delivery_settles_nothing_so_the_original_still_decides() {
        let (counts, mut subscription) = chaotic(
            ChaosConfig {
                duplicate_delivery: 1.0,
                ..ChaosConfig::default()
            },
            SubscriptionKind::Shared,
            1,
            1,
        )
        .await;
        let original = subscription.next().await.expect("original");
        let copy = subscription.next().await.expect("copy");
        assert_eq!(copy.redeliveries, original.redeliveries + 1);
        assert_eq!(counts.duplicated_deliveries.load(Ordering::Relaxed), 1);
        // The copy's ack is dropped; the original's nack redelivers the message.
        copy.ack().await;
        original.nack("try again").await;
        let again = tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("redelivered after the nack")
            .expect("delivery");
        assert_eq!(number(&again), 0);
        assert!(again.redeliveries >= 1);
    }
}
