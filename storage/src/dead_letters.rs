//! Dead letters collected from the broker's `dlq:{topic}` topics, so operators can list them,
//! read why they failed, and send them back.
//!
//! A broker can only hand a topic's messages out in order, so the API's collector consumes the
//! dead-letter topics and keeps each letter here until an operator redrives or discards it.
//! Letters are keyed by id, so a letter collected twice (a redelivery) is held once.

use baton_shared_schemas::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Result, StorageError};

/// A message that could not be processed, as collected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its id: the envelope's message id when it decodes, else derived from its bytes.
    pub id: String,
    /// The topic it came from, where a redrive publishes it again.
    pub topic: String,
    /// Its routing key.
    pub key: String,
    /// The message's bytes, as published.
    pub payload: Vec<u8>,
    /// Its transport headers, including the reason.
    pub headers: Vec<(String, String)>,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Deliveries before it was given up, when the transport said.
    pub redeliveries: Option<u32>,
    /// When it was collected.
    pub dead_at: Timestamp,
}

impl DeadLetter {
    /// Encoded form, as backends store it.
    pub fn encode(&self) -> Result<Vec<u8>> {
        baton_shared_schemas::codec::encode(self).map_err(|e| StorageError::Backend(format!("dead letter: {e}")))
    }

    /// Decodes a stored letter.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        baton_shared_schemas::codec::decode(bytes)
            .map_err(|e| StorageError::Backend(format!("corrupt dead letter: {e}")))
    }

    /// The member ordering it in its topic: collection time, then id.
    pub fn member(&self) -> String {
        format!("{:020}|{}", self.dead_at.0, self.id)
    }
}

/// One page of a topic's letters, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterPage {
    /// The letters.
    pub letters: Vec<DeadLetter>,
    /// Pass to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Checks a cursor given by a caller.
pub fn check_cursor(cursor: &str) -> std::result::Result<(), String> {
    let valid = cursor
        .split_once('|')
        .is_some_and(|(time, id)| time.len() == 20 && time.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid cursor `{cursor}`: pass the nextCursor of a previous page"
        ))
    }
}

/// Holds dead letters per original topic.
#[async_trait::async_trait]
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Keeps a letter; returns false when one with its id is already held.
    async fn add(&self, letter: DeadLetter) -> Result<bool>;

    /// The topics holding letters, with how many each.
    async fn topics(&self) -> Result<Vec<(String, u64)>>;

    /// Letters of a topic after `cursor`, oldest first.
    async fn page(&self, topic: &str, cursor: Option<&str>, limit: usize) -> Result<DeadLetterPage>;

    /// One letter.
    async fn get(&self, topic: &str, id: &str) -> Result<Option<DeadLetter>>;

    /// Removes a letter (redriven or discarded); returns whether it was held.
    async fn remove(&self, topic: &str, id: &str) -> Result<bool>;
}
