//! Identifier newtypes. Random ids are UUIDv7 (time-ordered); command ids are derived
//! deterministically (UUIDv5) so a replayed workflow task produces the same ids again.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// One workflow instance.
    WorkflowId
);
uuid_id!(
    /// One execution of a service method (all its attempts share it; it is the idempotency key).
    TaskId
);
uuid_id!(
    /// One durable timer held by the timer service.
    TimerId
);
uuid_id!(
    /// One run of a workflow method on an instance (the main run, or a method invoked on it).
    MethodRunId
);
uuid_id!(
    /// One workflow task (one replay of workflow code).
    WorkflowTaskId
);
uuid_id!(
    /// One client; its replies arrive on `client:{id}`.
    ClientId
);
uuid_id!(
    /// One published message (unique per publish, used for tracing and dead-letter reports).
    MessageId
);
uuid_id!(
    /// One request from a client that expects a reply (status queries).
    RequestId
);
uuid_id!(
    /// One command issued by workflow code (a task call, a timer, an inline result).
    CommandId
);
uuid_id!(
    /// One signal sent to a workflow (duplicates of it are dropped).
    SignalId
);

impl CommandId {
    /// The deterministic id of the command at `position` of a method run, created by the
    /// workflow task with index `task_index`. Executing the same workflow task twice yields the
    /// same ids, so receivers drop duplicates and services get a stable idempotency key.
    pub fn derive(workflow: WorkflowId, run: MethodRunId, task_index: u32, position: u32) -> Self {
        let mut name = [0u8; 24];
        name[..16].copy_from_slice(run.0.as_bytes());
        name[16..20].copy_from_slice(&task_index.to_be_bytes());
        name[20..24].copy_from_slice(&position.to_be_bytes());
        Self(Uuid::new_v5(&workflow.0, &name))
    }
}

impl CommandId {
    /// The id of the `index`-th value received by a multi-value command (a channel receive
    /// with a limit above one). Index 0 is the first value.
    pub fn nth(self, index: u32) -> CommandId {
        CommandId(Uuid::new_v5(&self.0, &index.to_be_bytes()))
    }

    /// The id of the child workflow a command starts.
    pub fn child_workflow(self) -> WorkflowId {
        WorkflowId(self.0)
    }
}

impl WorkflowId {
    /// The id of the instance of `workflow` named by a custom id: starting twice with one
    /// custom id addresses one instance.
    pub fn from_custom_id(workflow: &str, custom_id: &str) -> Self {
        let namespace = Uuid::new_v5(&Uuid::NAMESPACE_OID, workflow.as_bytes());
        Self(Uuid::new_v5(&namespace, custom_id.as_bytes()))
    }
}

impl From<CommandId> for TaskId {
    fn from(id: CommandId) -> Self {
        TaskId(id.0)
    }
}

impl From<TaskId> for CommandId {
    fn from(id: TaskId) -> Self {
        CommandId(id.0)
    }
}

impl From<CommandId> for TimerId {
    fn from(id: CommandId) -> Self {
        TimerId(id.0)
    }
}

impl From<TimerId> for CommandId {
    fn from(id: TimerId) -> Self {
        CommandId(id.0)
    }
}

impl TimerId {
    /// The deterministic id of the timer that delays attempt `attempt` of a task, so a
    /// re-executed attempt schedules the same timer and the timer store keeps one.
    pub fn for_retry(task: TaskId, attempt: u32) -> Self {
        Self(Uuid::new_v5(&task.0, &attempt.to_be_bytes()))
    }

    /// The timer that brings back a command deferred because its instance was not known yet:
    /// derived from the message deferred, so handling it again schedules the same timer.
    pub fn for_deferral(message: MessageId) -> Self {
        Self(Uuid::new_v5(&message.0, b"deferral"))
    }

    /// The timer that removes a completed workflow's record when its retention ends, scheduled
    /// by handling message `ended_by`. Each end of an instance (a failed one retried ends
    /// again) gets a timer of its own: one id for all would make the timer store keep the
    /// first and drop the later ones.
    pub fn for_retention(workflow: WorkflowId, ended_by: MessageId) -> Self {
        let name = [b"retention".as_slice(), ended_by.0.as_bytes()].concat();
        Self(Uuid::new_v5(&workflow.0, &name))
    }

    /// The timer that holds message `message` again: it arrived before the time it takes
    /// effect (a timer service whose clock runs ahead), or what it does is not due yet (a
    /// retention extended since). Derived from the message, so handling it again schedules
    /// the same timer.
    pub fn for_rescheduling(message: MessageId) -> Self {
        Self(Uuid::new_v5(&message.0, b"rescheduled"))
    }
}

impl MethodRunId {
    /// The id of a workflow's main run: derived from the workflow id, so it never has to be
    /// carried separately.
    pub fn main(workflow: WorkflowId) -> Self {
        Self(Uuid::new_v5(&workflow.0, b"main"))
    }

    /// The main run after `generation` restarts by continue-as-new (0 is [`main`](Self::main)).
    pub fn main_of_generation(workflow: WorkflowId, generation: u32) -> Self {
        if generation == 0 {
            return Self::main(workflow);
        }
        let name = [b"main".as_slice(), &generation.to_be_bytes()].concat();
        Self(Uuid::new_v5(&workflow.0, &name))
    }
}

impl WorkflowTaskId {
    /// The deterministic id of workflow task `index` of a workflow.
    pub fn derive(workflow: WorkflowId, index: u32) -> Self {
        Self(Uuid::new_v5(&workflow.0, &index.to_be_bytes()))
    }

    /// The id of the `retry`-th operator retry of workflow task `index` (retry 0 is the
    /// original, equal to [`derive`](Self::derive)).
    pub fn derive_retry(workflow: WorkflowId, index: u32, retry: u32) -> Self {
        if retry == 0 {
            return Self::derive(workflow, index);
        }
        let mut name = [0u8; 8];
        name[..4].copy_from_slice(&index.to_be_bytes());
        name[4..].copy_from_slice(&retry.to_be_bytes());
        Self(Uuid::new_v5(&workflow.0, &name))
    }
}

impl MessageId {
    /// The id of the message that continues this one (the next page of a command by tag):
    /// derived, so a redelivered message republishes its continuation under the same id and
    /// everything derived from that id stays the same.
    pub fn continuation(self) -> Self {
        Self(Uuid::new_v5(&self.0, b"continuation"))
    }

    /// The id of the `index`-th message a component emits in answer to this one: derived, so
    /// handling a redelivery emits the same ids and receivers can drop the repeats.
    pub fn nth(self, index: u32) -> Self {
        let name = [b"effect".as_slice(), &index.to_be_bytes()].concat();
        Self(Uuid::new_v5(&self.0, &name))
    }
}

impl RequestId {
    /// The id of the request a message fans out to one instance (a method called by tag):
    /// derived from the message and the instance, so a redelivery sends the same request
    /// and the instance drops it as a duplicate.
    pub fn for_instance(message: MessageId, workflow: WorkflowId) -> Self {
        Self(Uuid::new_v5(&message.0, workflow.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_command_ids_are_stable_and_distinct() {
        let wf = WorkflowId::new();
        let run = MethodRunId::main(wf);
        let a = CommandId::derive(wf, run, 1, 0);
        assert_eq!(a, CommandId::derive(wf, run, 1, 0));
        assert_ne!(a, CommandId::derive(wf, run, 1, 1));
        assert_ne!(a, CommandId::derive(wf, run, 2, 0));
        assert_ne!(a, CommandId::derive(WorkflowId::new(), run, 1, 0));
    }

    #[test]
    fn ids_parse_from_their_display_form() {
        let id = WorkflowId::new();
        assert_eq!(id.to_string().parse::<WorkflowId>().ok(), Some(id));
        assert!("not-a-uuid".parse::<WorkflowId>().is_err());
    }

    #[test]
    fn derived_request_and_continuation_ids_are_stable_and_distinct() {
        let (message, a, b) = (MessageId::new(), WorkflowId::new(), WorkflowId::new());
        assert_eq!(RequestId::for_instance(message, a), RequestId::for_instance(message, a));
        assert_ne!(RequestId::for_instance(message, a), RequestId::for_instance(message, b));
        assert_ne!(
            RequestId::for_instance(message, a),
            RequestId::for_instance(MessageId::new(), a)
        );
        assert_eq!(message.continuation(), message.continuation());
        assert_ne!(message.continuation(), message);
        assert_ne!(message.continuation().continuation(), message.continuation());
    }
}
