//! Who consumes what: a membership protocol of Baton's own, on a topic of the broker.
//!
//! Kafka's consumer-group protocol decides partition ownership in the broker's group
//! coordinator, and its failure handling (evicting a member that was killed, possibly in the
//! middle of joining) is only as good as the broker's implementation of it. Baton instead
//! decides ownership the same way in every member, from facts each member sees for itself:
//!
//! - every process publishes a heartbeat to one members topic (`{namespace}_members`) every
//!   `heartbeat`, listing the consumers it runs in each group, and an empty one when it stops;
//! - every process reads that topic, and counts a process live while its last heartbeat is
//!   younger than `session_timeout` (by the time the heartbeat arrived);
//! - the live consumers of a group, sorted, share its partitions round-robin.
//!
//! Offsets still live in the broker, committed under the group's id, so a new owner starts where
//! the last one finished. During a change of owners two members may briefly read the same
//! partition, which at-least-once delivery allows; nothing is ever left without a reader for
//! longer than the session timeout.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, watch};

/// First line of every heartbeat.
const HEARTBEAT_HEADER: &str = "baton-members/1";
/// How many of the newest heartbeats a process reads when it starts.
const LOOKBACK: i64 = 5_000;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Consumers a process runs, by group.
type Groups = HashMap<String, BTreeSet<String>>;

/// A process heard from, and when.
struct Remote {
    seen: Instant,
    groups: Groups,
}

/// This process's view of every group's members.
pub(crate) struct Membership {
    process: String,
    topic: String,
    producer: FutureProducer,
    session_timeout: Duration,
    local: Mutex<Groups>,
    remote: Mutex<HashMap<String, Remote>>,
    /// Bumped whenever the live members of any group may have changed.
    changed: watch::Sender<u64>,
    /// True once the heartbeats published before this process started have been read.
    caught_up: watch::Sender<bool>,
    /// Wakes the heartbeat task early (a local consumer came or went).
    beat_now: Notify,
}

impl Membership {
    /// Starts the heartbeat, reader and expiry tasks; they stop when the returned handles are
    /// aborted.
    pub(crate) fn start(
        process: String,
        topic: String,
        bootstrap_servers: &str,
        fetch_wait: Duration,
        producer: FutureProducer,
        heartbeat: Duration,
        session_timeout: Duration,
    ) -> Result<(Arc<Self>, Vec<tokio::task::JoinHandle<()>>), rdkafka::error::KafkaError> {
        let reader: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap_servers)
            .set("group.id", format!("{topic}.reader.{process}"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", fetch_wait.as_millis().max(1).to_string())
            .create()?;
        let mut start = TopicPartitionList::new();
        start.add_partition_offset(&topic, 0, Offset::OffsetTail(LOOKBACK))?;
        reader.assign(&start)?;
        let membership = Arc::new(Self {
            process,
            topic,
            producer,
            session_timeout,
            local: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            caught_up: watch::channel(false).0,
            beat_now: Notify::new(),
        });
        let tasks = vec![
            tokio::spawn(membership.clone().read(reader)),
            tokio::spawn(membership.clone().beat(heartbeat)),
            tokio::spawn(membership.clone().expire(heartbeat)),
        ];
        Ok((membership, tasks))
    }

    /// Notified when the members of some group may have changed.
    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until the heartbeats published before this process started have been read, so a
    /// new consumer does not take partitions that live members hold.
    pub(crate) async fn wait_caught_up(&self, within: Duration) {
        let mut caught_up = self.caught_up.subscribe();
        let _ = tokio::time::timeout(within, caught_up.wait_for(|c| *c)).await;
    }

    /// Adds a local consumer to a group.
    pub(crate) fn join(&self, group: &str, consumer: &str) {
        locked(&self.local)
            .entry(group.to_string())
            .or_default()
            .insert(consumer.to_string());
        self.changed.send_modify(|n| *n += 1);
        self.beat_now.notify_one();
    }

    /// Removes a local consumer from its group.
    pub(crate) fn leave(&self, group: &str, consumer: &str) {
        {
            let mut local = locked(&self.local);
            if let Some(members) = local.get_mut(group) {
                members.remove(consumer);
                if members.is_empty() {
                    local.remove(group);
                }
            }
        }
        self.changed.send_modify(|n| *n += 1);
        self.beat_now.notify_one();
    }

    /// The live consumers of `group`, sorted: local ones and those of processes heard from
    /// within the session timeout.
    pub(crate) fn members(&self, group: &str) -> Vec<String> {
        let mut all: BTreeSet<String> = locked(&self.local).get(group).cloned().unwrap_or_default();
        let now = Instant::now();
        for remote in locked(&self.remote).values() {
            if now.duration_since(remote.seen) < self.session_timeout {
                if let Some(members) = remote.groups.get(group) {
                    all.extend(members.iter().cloned());
                }
            }
        }
        all.into_iter().collect()
    }

    fn heartbeat_payload(&self) -> String {
        let mut text = format!("{HEARTBEAT_HEADER} {}\n", unix_millis());
        for (group, consumers) in locked(&self.local).iter() {
            for consumer in consumers {
                text.push_str(&format!("{group}\t{consumer}\n"));
            }
        }
        text
    }

    async fn publish_heartbeat(&self) {
        let payload = self.heartbeat_payload();
        let record = FutureRecord::to(&self.topic).key(&self.process).payload(&payload);
        if let Err((e, _)) = self.producer.send(record, Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "cannot publish a membership heartbeat");
        }
    }

    async fn beat(self: Arc<Self>, every: Duration) {
        loop {
            self.publish_heartbeat().await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.beat_now.notified() => {}
            }
        }
    }

    /// Signals a change whenever the set of live processes differs from the last check, so a
    /// process that falls silent loses its partitions even if another joined at the same time.
    async fn expire(self: Arc<Self>, every: Duration) {
        let mut live: BTreeSet<String> = BTreeSet::new();
        loop {
            tokio::time::sleep(every).await;
            let now = Instant::now();
            let current: BTreeSet<String> = locked(&self.remote)
                .iter()
                .filter(|(_, r)| now.duration_since(r.seen) < self.session_timeout)
                .map(|(process, _)| process.clone())
                .collect();
            if current != live {
                live = current;
                self.changed.send_modify(|n| *n += 1);
            }
        }
    }

    async fn read(self: Arc<Self>, reader: StreamConsumer) {
        let end = self.end_offset(&reader);
        if end.is_none_or(|end| end <= 0) {
            self.caught_up.send_replace(true);
        }
        loop {
            let message = match reader.recv().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "membership reader");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Heartbeats published before this process started are dated by their sender's
            // clock, so a process killed a moment ago is not counted alive for a whole session
            // timeout; later ones are dated by their arrival, which no clock skew can distort.
            let catching_up = !*self.caught_up.borrow();
            if end.is_some_and(|end| message.offset() + 1 >= end) {
                self.caught_up.send_replace(true);
            }
            let Some(process) = message.key().map(|k| String::from_utf8_lossy(k).into_owned()) else {
                continue;
            };
            if process == self.process {
                continue;
            }
            let Some((sent, groups)) = message.payload().and_then(parse_heartbeat) else {
                continue;
            };
            let now = Instant::now();
            let seen = if catching_up {
                let age = Duration::from_millis(u64::try_from(unix_millis().saturating_sub(sent)).unwrap_or(u64::MAX));
                now.checked_sub(age)
                    .or_else(|| now.checked_sub(self.session_timeout))
                    .unwrap_or(now)
            } else {
                now
            };
            let groups = if now.duration_since(seen) >= self.session_timeout {
                Groups::new()
            } else {
                groups
            };
            let mut remote = locked(&self.remote);
            let before = remote.get(&process).map(|r| r.groups.clone());
            if groups.is_empty() {
                remote.remove(&process);
            } else {
                remote.insert(
                    process,
                    Remote {
                        seen,
                        groups: groups.clone(),
                    },
                );
            }
            drop(remote);
            if before.as_ref() != Some(&groups) {
                self.changed.send_modify(|n| *n += 1);
            }
        }
    }

    /// The offset after the newest heartbeat when this process started.
    fn end_offset(&self, reader: &StreamConsumer) -> Option<i64> {
        reader
            .fetch_watermarks(&self.topic, 0, Duration::from_secs(10))
            .map(|(_, high)| high)
            .ok()
    }
}

/// A heartbeat's send time (milliseconds since the Unix epoch) and groups, or `None` if it is
/// malformed.
fn parse_heartbeat(payload: &[u8]) -> Option<(u128, Groups)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut lines = text.lines();
    let sent: u128 = lines.next()?.strip_prefix(HEARTBEAT_HEADER)?.trim().parse().ok()?;
    let mut groups = Groups::new();
    for line in lines {
        let (group, consumer) = line.split_once('\t')?;
        groups
            .entry(group.to_string())
            .or_default()
            .insert(consumer.to_string());
    }
    Some((sent, groups))
}

/// The partitions `consumer` owns among `partitions` partitions, given the group's members.
pub(crate) fn owned_partitions(members: &[String], consumer: &str, partitions: i32) -> BTreeSet<i32> {
    let Some(index) = members.iter().position(|m| m == consumer) else {
        return BTreeSet::new();
    };
    (0..partitions)
        .filter(|p| usize::try_from(*p).is_ok_and(|p| p % members.len() == index))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{HEARTBEAT_HEADER, owned_partitions, parse_heartbeat};

    #[test]
    fn heartbeats_parse_and_malformed_ones_are_ignored() {
        let text = format!("{HEARTBEAT_HEADER} 1700000000000\ng1\tp/0\ng1\tp/1\ng2\tp/2\n");
        let (sent, groups) = parse_heartbeat(text.as_bytes()).expect("valid heartbeat");
        assert_eq!(sent, 1_700_000_000_000);
        assert_eq!(groups["g1"].len(), 2);
        assert_eq!(groups["g2"].iter().next().map(String::as_str), Some("p/2"));
        let (_, empty) = parse_heartbeat(format!("{HEARTBEAT_HEADER} 5\n").as_bytes()).expect("a farewell");
        assert!(empty.is_empty());
        assert!(parse_heartbeat(b"hello").is_none());
        assert!(parse_heartbeat(format!("{HEARTBEAT_HEADER} soon\n").as_bytes()).is_none());
        assert!(parse_heartbeat(format!("{HEARTBEAT_HEADER} 5\nno-tab\n").as_bytes()).is_none());
        assert!(parse_heartbeat(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn members_share_partitions_round_robin() {
        let members = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(
            owned_partitions(&members, "a", 4).into_iter().collect::<Vec<_>>(),
            vec![0, 3]
        );
        assert_eq!(
            owned_partitions(&members, "b", 4).into_iter().collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(
            owned_partitions(&members, "c", 4).into_iter().collect::<Vec<_>>(),
            vec![2]
        );
        assert!(owned_partitions(&members, "z", 4).is_empty());
        let mut all: Vec<i32> = members.iter().flat_map(|m| owned_partitions(&members, m, 7)).collect();
        all.sort();
        assert_eq!(all, (0..7).collect::<Vec<_>>());
    }
}
