//! The tag engine loop.

use std::sync::Arc;

use baton_runtime::{Backoff, CancellationToken, Clock, Transient, retry_transient};
use baton_shared_schemas::messages::{ClientMessage, TagEngineMessage, TaggedCommand, WorkflowEngineMessage};
use baton_shared_schemas::{Envelope, Failure, FailureKind, MessageId, Payload, RequestId, TaskId, Topic, WorkflowId};
use baton_storage::KeySetStore;
use baton_transport::{Delivery, Publisher, SubscriptionKind, Transport, decode_delivery};
use tokio::task::JoinSet;

pub use baton_config::TagEngineConfig;

use crate::{TagError, TagIndex};

/// Subscription name the tag engine consumes with.
pub const SUBSCRIPTION: &str = "tag-engine";

struct Engine {
    index: TagIndex,
    store: Arc<dyn KeySetStore>,
    publisher: Publisher,
    clock: Arc<dyn Clock>,
    page_size: usize,
    shutdown: CancellationToken,
}

fn delegation_key(task: TaskId) -> String {
    format!("delegated-task:{task}")
}

fn early_result_key(task: TaskId) -> String {
    format!("delegated-result:{task}")
}

impl Engine {
    async fn handle(&self, delivery: Delivery) {
        let envelope: Envelope<TagEngineMessage> = match decode_delivery(&delivery) {
            Ok(e) => e,
            Err(e) => {
                delivery
                    .dead_letter(&format!("undecodable tag engine message: {e}"))
                    .await;
                return;
            }
        };
        // An unreachable store or broker is waited out in place; every step below is
        // idempotent, so repeating the whole message after a partial failure is safe.
        let (message_id, body) = (envelope.message_id, envelope.body);
        let outcome = retry_transient("tag engine message", Backoff::DEPENDENCY, &self.shutdown, || {
            self.apply(message_id, body.clone())
        })
        .await;
        match outcome {
            Ok(()) => delivery.ack().await,
            Err(TagError::InvalidTag(tag)) => delivery.dead_letter(&format!("invalid tag {tag:?}")).await,
            // Stopping during an outage: left unsettled, redelivered after the restart.
            Err(e) if e.is_transient() => {
                tracing::info!(error = %e, "stopping during an outage; tag message left for redelivery")
            }
            Err(e) => delivery.nack(&e.to_string()).await,
        }
    }

    /// Applies one message. Whatever it publishes is derived from `message_id` (the input's
    /// envelope id), so a redelivery publishes the same requests again and receivers drop them.
    async fn apply(&self, message_id: MessageId, message: TagEngineMessage) -> Result<(), TagError> {
        let now = self.clock.now();
        match message {
            TagEngineMessage::AddTag {
                workflow_name,
                tag,
                workflow_id,
            } => self.index.add(&workflow_name, &tag, workflow_id).await,
            TagEngineMessage::RemoveTag {
                workflow_name,
                tag,
                workflow_id,
            } => self.index.remove(&workflow_name, &tag, workflow_id).await,
            TagEngineMessage::GetIds {
                workflow_name,
                tag,
                cursor,
                limit,
                client,
                request_id,
            } => {
                let limit = usize::try_from(limit).unwrap_or(usize::MAX).clamp(1, 10_000);
                let page = self.index.ids(&workflow_name, &tag, cursor.as_deref(), limit).await?;
                let reply = ClientMessage::WorkflowIds {
                    request_id,
                    ids: page.ids,
                    next_cursor: page.next_cursor,
                };
                Ok(self.publisher.publish(&Topic::client(client), reply, now).await?)
            }
            TagEngineMessage::ByTag {
                workflow_name,
                tag,
                command,
                cursor,
            } => {
                let page = self
                    .index
                    .ids(&workflow_name, &tag, cursor.as_deref(), self.page_size)
                    .await?;
                let target = Topic::workflow_cmd(&workflow_name);
                for id in page.ids {
                    self.publisher
                        .publish(&target, addressed(message_id, id, &command), now)
                        .await?;
                }
                if let Some(next) = page.next_cursor {
                    // Further pages are new messages, so a large tag never holds one consumer.
                    let more = TagEngineMessage::ByTag {
                        workflow_name: workflow_name.clone(),
                        tag,
                        command,
                        cursor: Some(next),
                    };
                    self.publisher
                        .publish_as(
                            &Topic::workflow_tag(&workflow_name),
                            more,
                            now,
                            message_id.continuation(),
                        )
                        .await?;
                }
                Ok(())
            }
            TagEngineMessage::TaskDelegated {
                task_id,
                workflow_name,
                workflow_id,
            } => {
                let early = self.store.page(&early_result_key(task_id), None, 1).await?;
                match early.members.first() {
                    Some(result) => {
                        let result = decode_result(result);
                        self.forward(task_id, &workflow_name, workflow_id, result).await?;
                        self.store.remove(&early_result_key(task_id), &early.members[0]).await?;
                    }
                    None => {
                        let member = format!("{workflow_id}|{workflow_name}");
                        self.store.add(&delegation_key(task_id), &member).await?;
                    }
                }
                Ok(())
            }
            TagEngineMessage::CompleteDelegatedTask { task_id, result } => {
                let registered = self.store.page(&delegation_key(task_id), None, 1).await?;
                match registered.members.first().and_then(|m| m.split_once('|')) {
                    Some((id, workflow_name)) => {
                        let Ok(workflow_id) = id.parse::<WorkflowId>() else {
                            return Err(TagError::CorruptMember {
                                key: delegation_key(task_id),
                                member: id.to_string(),
                            });
                        };
                        self.forward(task_id, workflow_name, workflow_id, result).await?;
                        self.store
                            .remove(&delegation_key(task_id), &registered.members[0])
                            .await?;
                    }
                    // Completed before the worker registered the hand-back: keep the result.
                    None => {
                        self.store
                            .add(&early_result_key(task_id), &encode_result(&result))
                            .await?
                    }
                }
                Ok(())
            }
        }
    }

    async fn forward(
        &self,
        task_id: TaskId,
        workflow_name: &str,
        workflow_id: WorkflowId,
        result: Result<Payload, String>,
    ) -> Result<(), TagError> {
        let message = match result {
            Ok(output) => WorkflowEngineMessage::TaskCompleted {
                workflow_id,
                task_id,
                output,
            },
            Err(message) => WorkflowEngineMessage::TaskFailed {
                workflow_id,
                task_id,
                failure: Failure {
                    error: Payload::json(&message).ok(),
                    ..Failure::new(FailureKind::ServiceError, message)
                },
            },
        };
        Ok(self
            .publisher
            .publish(&Topic::workflow_engine(workflow_name), message, self.clock.now())
            .await?)
    }
}

fn encode_result(result: &Result<Payload, String>) -> String {
    match result {
        Ok(p) => format!("ok:{}", String::from_utf8_lossy(&p.bytes)),
        Err(message) => format!("err:{message}"),
    }
}

fn decode_result(member: &str) -> Result<Payload, String> {
    match member.split_once(':') {
        Some(("ok", json)) => Ok(Payload {
            codec: baton_shared_schemas::PayloadCodec::Json,
            bytes: json.as_bytes().to_vec(),
        }),
        Some((_, message)) => Err(message.to_string()),
        None => Err(member.to_string()),
    }
}

/// The engine message a tagged command, carried by message `message_id`, becomes for one
/// instance.
fn addressed(message_id: MessageId, workflow_id: WorkflowId, command: &TaggedCommand) -> WorkflowEngineMessage {
    match command.clone() {
        TaggedCommand::Signal {
            channel,
            value,
            signal_id,
        } => WorkflowEngineMessage::SendSignal {
            workflow_id,
            signal_id,
            channel,
            value,
        },
        TaggedCommand::Cancel { reason } => WorkflowEngineMessage::Cancel {
            workflow_id,
            reason,
            client: None,
        },
        TaggedCommand::RetryWorkflowTask => WorkflowEngineMessage::RetryWorkflowTask { workflow_id },
        TaggedCommand::RetryTasks { selector } => WorkflowEngineMessage::RetryTasks { workflow_id, selector },
        TaggedCommand::CompleteTimers => WorkflowEngineMessage::CompleteTimers { workflow_id },
        TaggedCommand::RetryTasksMatching { filter } => {
            WorkflowEngineMessage::RetryTasksMatching { workflow_id, filter }
        }
        TaggedCommand::CallMethod { method, args } => WorkflowEngineMessage::CallMethod {
            workflow_id,
            invocation_id: RequestId::for_instance(message_id, workflow_id),
            method,
            args,
            reply_to: None,
        },
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
    let engine = Arc::new(Engine {
        index: TagIndex::new(store.clone()),
        store,
        publisher: Publisher::new(transport.clone()),
        clock,
        page_size: config.page_size.max(1),
        shutdown: shutdown.clone(),
    });
    let topics = config
        .workflows
        .iter()
        .map(|w| Topic::workflow_tag(w))
        .chain(config.services.iter().map(|s| Topic::service_tag(s)));
    let mut readers = JoinSet::new();
    for topic in topics {
        let mut subscription = transport
            .subscribe(topic.name(), SUBSCRIPTION, SubscriptionKind::Keyed)
            .await?;
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        readers.spawn(async move {
            loop {
                let delivery = tokio::select! {
                    _ = shutdown.cancelled() => return Ok::<(), TagError>(()),
                    next = subscription.next() => next?,
                };
                engine.handle(delivery).await;
            }
        });
    }
    let mut result = Ok(());
    while let Some(joined) = readers.join_next().await {
        if let Ok(Err(e)) = joined {
            tracing::error!(error = %e, "tag engine consumer failed");
            shutdown.cancel();
            result = Err(e);
        }
    }
    result
}
