//! The tag engine's runner: carries out [`decision`](crate::decision)'s decisions. Per message
//! it reads what the decision needs, decides, publishes the effects and then writes; the
//! shared [`ConsumeLoop`] acknowledges. Every step is idempotent, so handling a message again
//! after a partial failure is safe.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use baton_runtime::{CancellationToken, Clock, Supervisor};
use baton_shared_schemas::messages::TagEngineMessage;
use baton_shared_schemas::{Cause, TaskId, Topic, codec};
use baton_storage::KeySetStore;
use baton_transport::{ConsumeLoop, Handler, Incoming, Publisher, SubscriptionKind, Transport, subscribe_all};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use baton_config::TagEngineConfig;

use crate::decision::{self, Loaded, Read, Write};
use crate::{TagError, TagIndex};

/// Subscription name the tag engine consumes with.
pub const SUBSCRIPTION: &str = "tag-engine";

#[derive(Clone)]
struct Engine {
    index: TagIndex,
    store: Arc<dyn KeySetStore>,
    publisher: Publisher,
    clock: Arc<dyn Clock>,
    page_size: usize,
}

fn delegation_key(task: TaskId) -> String {
    format!("delegated-task:{task}")
}

fn early_result_key(task: TaskId) -> String {
    format!("delegated-result:{task}")
}

/// A record as a set member: its encoding in the wire codec, as text.
fn member<T: Serialize>(record: &T) -> Result<String, TagError> {
    Ok(STANDARD_NO_PAD.encode(codec::encode(record).map_err(TagError::Encode)?))
}

/// The record a set member holds.
fn record<T: DeserializeOwned>(key: &str, member: &str) -> Result<T, TagError> {
    let corrupt = || TagError::CorruptMember {
        key: key.to_string(),
        member: member.to_string(),
    };
    let bytes = STANDARD_NO_PAD.decode(member).map_err(|_| corrupt())?;
    codec::decode(&bytes).map_err(|_| corrupt())
}

/// The one record of a set that holds at most one.
async fn only<T: DeserializeOwned>(store: &dyn KeySetStore, key: &str) -> Result<Option<T>, TagError> {
    let page = store.page(key, None, 1).await?;
    page.members.first().map(|m| record(key, m)).transpose()
}

#[async_trait::async_trait]
impl Handler<TagEngineMessage> for Engine {
    type Error = TagError;

    async fn handle_one(&mut self, message: &Incoming<TagEngineMessage>) -> Result<(), TagError> {
        self.apply(message).await
    }
}

impl Engine {
    async fn apply(&self, incoming: &Incoming<TagEngineMessage>) -> Result<(), TagError> {
        let envelope = &incoming.envelope;
        let loaded = match decision::read_for(&envelope.body, self.page_size)? {
            Read::Nothing => Loaded::Nothing,
            Read::Removed {
                workflow,
                tag,
                workflow_id,
            } => Loaded::Removed(self.index.was_removed(&workflow, &tag, workflow_id).await?),
            Read::Ids {
                workflow,
                tag,
                cursor,
                limit,
            } => Loaded::Ids(self.index.ids(&workflow, &tag, cursor.as_deref(), limit).await?),
            Read::Delegation(task) => Loaded::Delegation(only(self.store.as_ref(), &delegation_key(task)).await?),
            Read::EarlyResult(task) => Loaded::EarlyResult(only(self.store.as_ref(), &early_result_key(task)).await?),
        };
        let decided = decision::decide(envelope.message_id, &envelope.body, loaded);
        let messages = Cause::of(envelope, self.clock.now())
            .encode_all(&decided.effects)
            .map_err(TagError::Encode)?;
        self.publisher.publish_encoded(messages).await?;
        for write in decided.writes {
            self.write(write).await?;
        }
        Ok(())
    }

    async fn write(&self, write: Write) -> Result<(), TagError> {
        match write {
            Write::AddId {
                workflow,
                tag,
                workflow_id,
            } => self.index.add(&workflow, &tag, workflow_id).await,
            Write::RemoveId {
                workflow,
                tag,
                workflow_id,
            } => self.index.remove(&workflow, &tag, workflow_id).await,
            Write::RememberRemoval {
                workflow,
                tag,
                workflow_id,
            } => self.index.remember_removal(&workflow, &tag, workflow_id).await,
            Write::ForgetRemoval {
                workflow,
                tag,
                workflow_id,
            } => self.index.forget_removal(&workflow, &tag, workflow_id).await,
            Write::Register(task, delegation) => {
                Ok(self.store.add(&delegation_key(task), &member(&delegation)?).await?)
            }
            Write::Unregister(task, delegation) => {
                Ok(self.store.remove(&delegation_key(task), &member(&delegation)?).await?)
            }
            Write::KeepEarlyResult(task, result) => {
                Ok(self.store.add(&early_result_key(task), &member(&result)?).await?)
            }
            Write::DropEarlyResult(task, result) => {
                Ok(self.store.remove(&early_result_key(task), &member(&result)?).await?)
            }
        }
    }
}

/// Runs the tag engine until `shutdown` is cancelled.
pub async fn run(
    config: TagEngineConfig,
    transport: Arc<dyn Transport>,
    store: Arc<dyn KeySetStore>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<(), TagError> {
    let engine = Engine {
        index: TagIndex::new(store.clone()),
        store,
        publisher: Publisher::new(transport.clone()),
        clock,
        page_size: config.page_size.max(1),
    };
    let topics: Vec<_> = config
        .workflows
        .iter()
        .map(|w| Topic::workflow_tag(w))
        .chain(config.services.iter().map(|s| Topic::service_tag(s)))
        .collect();
    let subscriptions = subscribe_all(transport.as_ref(), &topics, SUBSCRIPTION, SubscriptionKind::Keyed).await?;
    let consume = ConsumeLoop::new("tag engine message", shutdown.clone())
        .batch(config.batch)
        .clock(engine.clock.clone());
    let mut supervisor = Supervisor::new(shutdown);
    for (topic, subscription) in topics.iter().zip(subscriptions) {
        let (consume, mut engine) = (consume.clone(), engine.clone());
        supervisor.spawn(format!("tag engine consumer of {}", topic.name()), async move {
            consume.run(subscription, &mut engine).await
        });
    }
    Ok(supervisor.join().await?)
}
