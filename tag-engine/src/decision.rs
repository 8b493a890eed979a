//! The tag engine's decision, without I/O: [`read_for`] says what a message needs read from
//! storage, and [`decide`] turns the message and what was read into the storage writes and
//! typed [`Effect`]s to carry out, which the runner encodes with
//! [`Cause::encode_all`]. Ids of what it emits are derived
//! from the message that caused them, so a redelivered message emits the same messages and
//! receivers drop repeats.

use baton_shared_schemas::messages::{ClientMessage, TagEngineMessage, TaggedCommand, WorkflowEngineMessage};
use baton_shared_schemas::{
    Cause, CodecError, Emitted, EncodedMessage, Failure, FailureKind, MessageId, Payload, RequestId, TaskId, Topic,
    WorkflowId, validate_tag,
};
use serde::{Deserialize, Serialize};

use crate::{IdPage, TagError};

/// A delegated task's registration: where its result goes once it comes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The task's workflow.
    pub workflow_id: WorkflowId,
    /// Its workflow's name.
    pub workflow_name: String,
}

/// A delegated task's result: `Ok(value)` completes it, `Err(message)` fails it.
pub type TaskResult = Result<Payload, String>;

/// What a message needs read before it can be decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// Nothing.
    Nothing,
    /// Whether an instance's final removal from a tag is remembered.
    Removed {
        /// The workflow name.
        workflow: String,
        /// The tag.
        tag: String,
        /// The instance.
        workflow_id: WorkflowId,
    },
    /// A page of the ids carrying a tag.
    Ids {
        /// The workflow name.
        workflow: String,
        /// The tag.
        tag: String,
        /// Where the page starts.
        cursor: Option<String>,
        /// At most this many.
        limit: usize,
    },
    /// A delegated task's registration.
    Delegation(TaskId),
    /// A delegated task's result that came before its registration.
    EarlyResult(TaskId),
}

/// What was read, answering a [`Read`].
#[derive(Clone, Debug, PartialEq)]
pub enum Loaded {
    /// Nothing was needed.
    Nothing,
    /// Whether the instance's final removal from the tag is remembered.
    Removed(bool),
    /// The page of ids.
    Ids(IdPage),
    /// The registration, if any.
    Delegation(Option<Delegation>),
    /// The early result, if any.
    EarlyResult(Option<TaskResult>),
}

/// A storage write.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// `workflow_id` carries `tag`.
    AddId {
        /// The workflow name.
        workflow: String,
        /// The tag.
        tag: String,
        /// The instance.
        workflow_id: WorkflowId,
    },
    /// `workflow_id` no longer carries `tag`.
    RemoveId {
        /// The workflow name.
        workflow: String,
        /// The tag.
        tag: String,
        /// The instance.
        workflow_id: WorkflowId,
    },
    /// Remembers that `workflow_id` was removed from `tag` for good, so a stale `AddTag`
    /// cannot bring it back.
    RememberRemoval {
        /// The workflow name.
        workflow: String,
        /// The tag.
        tag: String,
        /// The instance.
        workflow_id: WorkflowId,
    },
    /// Forgets a remembered removal (the instance's record expired).
    ForgetRemoval {
        /// The workflow name.
        workflow: String,
        /// The tag.
        tag: String,
        /// The instance.
        workflow_id: WorkflowId,
    },
    /// Registers a delegated task.
    Register(TaskId, Delegation),
    /// Drops a delegated task's registration (its result was forwarded).
    Unregister(TaskId, Delegation),
    /// Keeps a result that came before its task's registration.
    KeepEarlyResult(TaskId, TaskResult),
    /// Drops a kept result (it was forwarded).
    DropEarlyResult(TaskId, TaskResult),
}

/// A message to emit.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// A reply to a client.
    Client {
        /// The client.
        client: baton_shared_schemas::ClientId,
        /// The reply.
        message: ClientMessage,
    },
    /// A command to one instance, on its workflow's command topic.
    Command {
        /// The workflow name.
        workflow: String,
        /// The command.
        message: WorkflowEngineMessage,
    },
    /// A delegated task's result, on its workflow's engine topic.
    Engine {
        /// The workflow name.
        workflow: String,
        /// The result.
        message: WorkflowEngineMessage,
    },
    /// The next page of a command by tag, to this engine again.
    NextPage {
        /// The workflow name.
        workflow: String,
        /// The command, with the next page's cursor.
        message: TagEngineMessage,
    },
}

/// What to carry out for one message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Messages to publish, first.
    pub effects: Vec<Effect>,
    /// Storage writes, once the effects are published: a crash between the two repeats the
    /// effects on redelivery rather than losing them.
    pub writes: Vec<Write>,
}

fn check(tag: &str) -> Result<(), TagError> {
    validate_tag(tag).map_err(|e| TagError::InvalidTag(e.tag))
}

/// What `message` needs read; fails for a tag that can never be valid.
pub fn read_for(message: &TagEngineMessage, page_size: usize) -> Result<Read, TagError> {
    let ids = |workflow: &str, tag: &str, cursor: &Option<String>, limit: usize| {
        check(tag)?;
        Ok(Read::Ids {
            workflow: workflow.to_string(),
            tag: tag.to_string(),
            cursor: cursor.clone(),
            limit,
        })
    };
    match message {
        TagEngineMessage::AddTag {
            workflow_name,
            tag,
            workflow_id,
        } => {
            check(tag)?;
            Ok(Read::Removed {
                workflow: workflow_name.clone(),
                tag: tag.clone(),
                workflow_id: *workflow_id,
            })
        }
        TagEngineMessage::RemoveTag { tag, .. } | TagEngineMessage::ForgetTag { tag, .. } => {
            check(tag)?;
            Ok(Read::Nothing)
        }
        TagEngineMessage::GetIds {
            workflow_name,
            tag,
            cursor,
            limit,
            ..
        } => ids(
            workflow_name,
            tag,
            cursor,
            usize::try_from(*limit).unwrap_or(usize::MAX).clamp(1, 10_000),
        ),
        TagEngineMessage::ByTag {
            workflow_name,
            tag,
            cursor,
            ..
        } => ids(workflow_name, tag, cursor, page_size.max(1)),
        TagEngineMessage::TaskDelegated { task_id, .. } => Ok(Read::EarlyResult(*task_id)),
        TagEngineMessage::CompleteDelegatedTask { task_id, .. } => Ok(Read::Delegation(*task_id)),
    }
}

/// Decides one message (carried by message `cause`) given what [`read_for`] asked to read.
pub fn decide(cause: MessageId, message: &TagEngineMessage, loaded: Loaded) -> Decision {
    let mut decision = Decision::default();
    match (message, loaded) {
        // An instance removed from the tag for good is not added again: this add is a stale
        // copy (an engine frozen between saving and publishing sends its outbox late).
        (TagEngineMessage::AddTag { .. }, Loaded::Removed(true)) => {}
        (
            TagEngineMessage::AddTag {
                workflow_name,
                tag,
                workflow_id,
            },
            Loaded::Removed(false),
        ) => decision.writes.push(Write::AddId {
            workflow: workflow_name.clone(),
            tag: tag.clone(),
            workflow_id: *workflow_id,
        }),
        (
            TagEngineMessage::RemoveTag {
                workflow_name,
                tag,
                workflow_id,
            },
            _,
        ) => {
            let (workflow, tag, workflow_id) = (workflow_name.clone(), tag.clone(), *workflow_id);
            // Remembered first: an add handled between the two writes then finds it.
            decision.writes.push(Write::RememberRemoval {
                workflow: workflow.clone(),
                tag: tag.clone(),
                workflow_id,
            });
            decision.writes.push(Write::RemoveId {
                workflow,
                tag,
                workflow_id,
            });
        }
        (
            TagEngineMessage::ForgetTag {
                workflow_name,
                tag,
                workflow_id,
            },
            _,
        ) => {
            let (workflow, tag, workflow_id) = (workflow_name.clone(), tag.clone(), *workflow_id);
            decision.writes.push(Write::RemoveId {
                workflow: workflow.clone(),
                tag: tag.clone(),
                workflow_id,
            });
            decision.writes.push(Write::ForgetRemoval {
                workflow,
                tag,
                workflow_id,
            });
        }
        (TagEngineMessage::GetIds { client, request_id, .. }, Loaded::Ids(page)) => {
            decision.effects.push(Effect::Client {
                client: *client,
                message: ClientMessage::WorkflowIds {
                    request_id: *request_id,
                    ids: page.ids,
                    next_cursor: page.next_cursor,
                },
            })
        }
        (
            TagEngineMessage::ByTag {
                workflow_name,
                tag,
                command,
                ..
            },
            Loaded::Ids(page),
        ) => {
            for id in page.ids {
                decision.effects.push(Effect::Command {
                    workflow: workflow_name.clone(),
                    message: addressed(cause, id, command),
                });
            }
            if let Some(next) = page.next_cursor {
                // Further pages are new messages, so a large tag never holds one consumer.
                decision.effects.push(Effect::NextPage {
                    workflow: workflow_name.clone(),
                    message: TagEngineMessage::ByTag {
                        workflow_name: workflow_name.clone(),
                        tag: tag.clone(),
                        command: command.clone(),
                        cursor: Some(next),
                    },
                });
            }
        }
        (
            TagEngineMessage::TaskDelegated {
                task_id,
                workflow_name,
                workflow_id,
            },
            Loaded::EarlyResult(early),
        ) => {
            let delegation = Delegation {
                workflow_id: *workflow_id,
                workflow_name: workflow_name.clone(),
            };
            match early {
                Some(result) => {
                    decision.effects.push(forward(*task_id, &delegation, result.clone()));
                    decision.writes.push(Write::DropEarlyResult(*task_id, result));
                }
                None => decision.writes.push(Write::Register(*task_id, delegation)),
            }
        }
        (TagEngineMessage::CompleteDelegatedTask { task_id, result }, Loaded::Delegation(registered)) => {
            match registered {
                Some(delegation) => {
                    decision.effects.push(forward(*task_id, &delegation, result.clone()));
                    decision.writes.push(Write::Unregister(*task_id, delegation));
                }
                // Completed before the worker registered the hand-back: keep the result.
                None => decision.writes.push(Write::KeepEarlyResult(*task_id, result.clone())),
            }
        }
        // What was read does not answer this message: `read_for` was not followed. Nothing
        // is done rather than something wrong.
        _ => {}
    }
    decision
}

/// A delegated task's result as its workflow's engine receives it.
fn forward(task_id: TaskId, to: &Delegation, result: TaskResult) -> Effect {
    let message = match result {
        Ok(output) => WorkflowEngineMessage::TaskCompleted {
            workflow_id: to.workflow_id,
            task_id,
            output,
        },
        Err(message) => WorkflowEngineMessage::TaskFailed {
            workflow_id: to.workflow_id,
            task_id,
            failure: Failure {
                error: Payload::json(&message).ok(),
                ..Failure::new(FailureKind::ServiceError, message)
            },
        },
    };
    Effect::Engine {
        workflow: to.workflow_name.clone(),
        message,
    }
}

/// The engine message a tagged command, carried by message `cause`, becomes for one instance.
fn addressed(cause: MessageId, workflow_id: WorkflowId, command: &TaggedCommand) -> WorkflowEngineMessage {
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
            invocation_id: RequestId::for_instance(cause, workflow_id),
            method,
            args,
            reply_to: None,
        },
    }
}

impl Emitted for Effect {
    /// The `i`-th effect gets id `cause.nth(i)`, and the next page `cause.continuation()`: the
    /// ids of what that page fans out derive from it, so they are the same however often the
    /// first page is handled.
    fn encode(&self, cause: &Cause<'_>, index: u32) -> Result<EncodedMessage, CodecError> {
        let id = cause.message_id.nth(index);
        match self {
            Self::Client { client, message } => cause.emit(&Topic::client(*client), message.clone(), id),
            Self::Command { workflow, message } => cause.emit(&Topic::workflow_cmd(workflow), message.clone(), id),
            Self::Engine { workflow, message } => cause.emit(&Topic::workflow_engine(workflow), message.clone(), id),
            Self::NextPage { workflow, message } => cause.emit(
                &Topic::workflow_tag(workflow),
                message.clone(),
                cause.message_id.continuation(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use baton_shared_schemas::{Envelope, SignalId, Timestamp, TraceContext};

    use super::*;

    fn by_tag(cursor: Option<&str>) -> TagEngineMessage {
        TagEngineMessage::ByTag {
            workflow_name: "Booking".into(),
            tag: "customer:7".into(),
            command: TaggedCommand::CallMethod {
                method: "add".into(),
                args: Payload::null(),
            },
            cursor: cursor.map(str::to_string),
        }
    }

    #[test]
    fn a_command_by_tag_fans_out_a_page_and_continues_with_the_next() {
        let ids = vec![WorkflowId::new(), WorkflowId::new()];
        let message = by_tag(None);
        assert_eq!(
            read_for(&message, 2).expect("valid"),
            Read::Ids {
                workflow: "Booking".into(),
                tag: "customer:7".into(),
                cursor: None,
                limit: 2
            }
        );
        let cause = MessageId::new();
        let page = IdPage {
            ids: ids.clone(),
            next_cursor: Some("c1".into()),
        };
        let decision = decide(cause, &message, Loaded::Ids(page));
        assert!(decision.writes.is_empty());
        let addressed: Vec<_> = decision
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::Command {
                    message:
                        WorkflowEngineMessage::CallMethod {
                            workflow_id,
                            invocation_id,
                            ..
                        },
                    ..
                } => Some((*workflow_id, *invocation_id)),
                _ => None,
            })
            .collect();
        assert_eq!(
            addressed,
            ids.iter()
                .map(|id| (*id, RequestId::for_instance(cause, *id)))
                .collect::<Vec<_>>(),
            "one call per instance, with an id derived from the message and the instance"
        );
        assert_eq!(
            decision.effects.last(),
            Some(&Effect::NextPage {
                workflow: "Booking".into(),
                message: by_tag(Some("c1"))
            })
        );
    }

    #[test]
    fn the_same_message_twice_gives_identical_effects_and_bytes() {
        let message = by_tag(None);
        let cause = MessageId::new();
        let page = IdPage {
            ids: vec![WorkflowId::new()],
            next_cursor: Some("c".into()),
        };
        let once = decide(cause, &message, Loaded::Ids(page.clone()));
        let twice = decide(cause, &message, Loaded::Ids(page));
        assert_eq!(once, twice);
        let trace = TraceContext::default();
        let at = Cause {
            message_id: cause,
            trace: &trace,
            now: Timestamp(5),
        };
        let encode = |d: &Decision| at.encode_all(&d.effects).expect("encode");
        let bytes = encode(&once);
        assert_eq!(bytes, encode(&twice));
        let next: Envelope<TagEngineMessage> = baton_shared_schemas::decode(&bytes[1].bytes).expect("decode");
        assert_eq!(next.message_id, cause.continuation());
    }

    #[test]
    fn a_delegated_result_is_forwarded_whichever_of_registration_and_result_comes_first() {
        let (task, workflow_id) = (TaskId::new(), WorkflowId::new());
        let delegation = Delegation {
            workflow_id,
            workflow_name: "Booking".into(),
        };
        let registered = TagEngineMessage::TaskDelegated {
            task_id: task,
            workflow_name: "Booking".into(),
            workflow_id,
        };
        let result: TaskResult = Ok(Payload::json(&1).expect("payload"));
        let completed = TagEngineMessage::CompleteDelegatedTask {
            task_id: task,
            result: result.clone(),
        };
        let cause = MessageId::new();
        // Registration first, then the result.
        assert_eq!(read_for(&registered, 10).expect("valid"), Read::EarlyResult(task));
        let first = decide(cause, &registered, Loaded::EarlyResult(None));
        assert_eq!(first.writes, vec![Write::Register(task, delegation.clone())]);
        assert_eq!(read_for(&completed, 10).expect("valid"), Read::Delegation(task));
        let then = decide(cause, &completed, Loaded::Delegation(Some(delegation.clone())));
        assert!(matches!(
            then.effects.as_slice(),
            [Effect::Engine { workflow, message: WorkflowEngineMessage::TaskCompleted { task_id, .. } }]
                if workflow == "Booking" && *task_id == task
        ));
        assert_eq!(then.writes, vec![Write::Unregister(task, delegation.clone())]);
        // The result first: kept, then forwarded on registration.
        let early = decide(cause, &completed, Loaded::Delegation(None));
        assert_eq!(early.writes, vec![Write::KeepEarlyResult(task, result.clone())]);
        let late = decide(cause, &registered, Loaded::EarlyResult(Some(result.clone())));
        assert_eq!(late.effects, then.effects);
        assert_eq!(late.writes, vec![Write::DropEarlyResult(task, result)]);
    }

    fn tag_message(kind: fn(String, String, WorkflowId) -> TagEngineMessage, id: WorkflowId) -> TagEngineMessage {
        kind("Booking".into(), "customer:7".into(), id)
    }

    fn add(workflow_name: String, tag: String, workflow_id: WorkflowId) -> TagEngineMessage {
        TagEngineMessage::AddTag {
            workflow_name,
            tag,
            workflow_id,
        }
    }

    fn remove(workflow_name: String, tag: String, workflow_id: WorkflowId) -> TagEngineMessage {
        TagEngineMessage::RemoveTag {
            workflow_name,
            tag,
            workflow_id,
        }
    }

    fn forget(workflow_name: String, tag: String, workflow_id: WorkflowId) -> TagEngineMessage {
        TagEngineMessage::ForgetTag {
            workflow_name,
            tag,
            workflow_id,
        }
    }

    #[test]
    fn a_removal_is_final_until_the_record_expires() {
        let id = WorkflowId::new();
        let cause = MessageId::new();
        let (workflow, tag) = ("Booking".to_string(), "customer:7".to_string());
        let added = tag_message(add, id);
        assert_eq!(
            read_for(&added, 10).expect("valid"),
            Read::Removed {
                workflow: workflow.clone(),
                tag: tag.clone(),
                workflow_id: id
            }
        );
        let add_id = Write::AddId {
            workflow: workflow.clone(),
            tag: tag.clone(),
            workflow_id: id,
        };
        let remove_id = Write::RemoveId {
            workflow: workflow.clone(),
            tag: tag.clone(),
            workflow_id: id,
        };
        assert_eq!(decide(cause, &added, Loaded::Removed(false)).writes, vec![add_id]);
        let removed = tag_message(remove, id);
        assert_eq!(read_for(&removed, 10).expect("valid"), Read::Nothing);
        assert_eq!(
            decide(cause, &removed, Loaded::Nothing).writes,
            vec![
                Write::RememberRemoval {
                    workflow: workflow.clone(),
                    tag: tag.clone(),
                    workflow_id: id
                },
                remove_id.clone()
            ]
        );
        assert_eq!(
            decide(cause, &added, Loaded::Removed(true)),
            Decision::default(),
            "a stale add after the final removal changes nothing"
        );
        let forgotten = tag_message(forget, id);
        assert_eq!(read_for(&forgotten, 10).expect("valid"), Read::Nothing);
        assert_eq!(
            decide(cause, &forgotten, Loaded::Nothing).writes,
            vec![
                remove_id,
                Write::ForgetRemoval {
                    workflow,
                    tag,
                    workflow_id: id
                }
            ]
        );
    }

    #[test]
    fn invalid_tags_are_refused_before_anything_is_read() {
        let bad = TagEngineMessage::AddTag {
            workflow_name: "Booking".into(),
            tag: "line\nbreak".into(),
            workflow_id: WorkflowId::new(),
        };
        assert!(matches!(read_for(&bad, 10), Err(TagError::InvalidTag(_))));
        let bad_forget = TagEngineMessage::ForgetTag {
            workflow_name: "Booking".into(),
            tag: String::new(),
            workflow_id: WorkflowId::new(),
        };
        assert!(matches!(read_for(&bad_forget, 10), Err(TagError::InvalidTag(_))));
        let signal = TagEngineMessage::ByTag {
            workflow_name: "Booking".into(),
            tag: String::new(),
            command: TaggedCommand::Signal {
                channel: "c".into(),
                value: Payload::null(),
                signal_id: SignalId::new(),
            },
            cursor: None,
        };
        assert!(matches!(read_for(&signal, 10), Err(TagError::InvalidTag(_))));
    }
}
