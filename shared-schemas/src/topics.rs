//! Typed topic descriptors: a topic name bound to the message enum it carries, so publishing
//! the wrong message to a topic does not compile. Names here are logical; a broker backend
//! adds its tenant/namespace prefix.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::messages::{
    ClientMessage, ServiceTaskMessage, TagEngineMessage, TaskControlMessage, TimerMessage, WorkflowEngineMessage,
    WorkflowTaskMessage,
};
use crate::{ClientId, TimerId};

/// Number of shards that timer keys are spread over.
pub const TIMER_SHARDS: u8 = 64;

/// A message enum carried by a topic.
pub trait TopicMessage: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The routing key, derived from the body in exactly one place.
    fn routing_key(&self) -> String;
}

impl TopicMessage for WorkflowEngineMessage {
    fn routing_key(&self) -> String {
        self.workflow_id().to_string()
    }
}

impl TopicMessage for WorkflowTaskMessage {
    fn routing_key(&self) -> String {
        match self {
            WorkflowTaskMessage::Execute(t) => t.workflow_id.to_string(),
        }
    }
}

impl TopicMessage for ServiceTaskMessage {
    fn routing_key(&self) -> String {
        match self {
            ServiceTaskMessage::Execute(t) => t.task_id.to_string(),
        }
    }
}

impl TopicMessage for TimerMessage {
    fn routing_key(&self) -> String {
        timer_shard_key(self.timer_id())
    }
}

impl TopicMessage for ClientMessage {
    fn routing_key(&self) -> String {
        match self {
            ClientMessage::WorkflowResult { workflow_id, .. }
            | ClientMessage::WorkflowUnknown { workflow_id, .. }
            | ClientMessage::Status { workflow_id, .. }
            | ClientMessage::MethodResult { workflow_id, .. } => workflow_id.to_string(),
            ClientMessage::WorkflowIds { request_id, .. } => request_id.to_string(),
        }
    }
}

impl TopicMessage for TaskControlMessage {
    fn routing_key(&self) -> String {
        match self {
            TaskControlMessage::Cancel { task_id } => task_id.to_string(),
        }
    }
}

impl TopicMessage for TagEngineMessage {
    fn routing_key(&self) -> String {
        match self {
            TagEngineMessage::AddTag { tag, .. }
            | TagEngineMessage::RemoveTag { tag, .. }
            | TagEngineMessage::ForgetTag { tag, .. }
            | TagEngineMessage::GetIds { tag, .. } => tag.clone(),
            // Continuation pages are keyed by their cursor so that fanning out over a popular
            // tag spreads across consumers instead of queueing behind one key.
            TagEngineMessage::ByTag { tag, cursor, .. } => match cursor {
                Some(c) => format!("{tag}#{c}"),
                None => tag.clone(),
            },
            TagEngineMessage::TaskDelegated { task_id, .. }
            | TagEngineMessage::CompleteDelegatedTask { task_id, .. } => task_id.to_string(),
        }
    }
}

/// The key of a timer's shard on the `timers` topic.
pub fn timer_shard_key(timer: TimerId) -> String {
    // The last UUID byte is random in v7 and hash-derived in v5 ids.
    let shard = timer.0.as_bytes()[15] % TIMER_SHARDS;
    format!("shard-{shard}")
}

/// A topic carrying messages of type `M`.
pub struct Topic<M> {
    name: String,
    _message: PhantomData<fn() -> M>,
}

impl<M> Clone for Topic<M> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            _message: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for Topic<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Topic({})", self.name)
    }
}

impl<M> Topic<M> {
    fn named(name: String) -> Self {
        Self {
            name,
            _message: PhantomData,
        }
    }

    /// The topic's logical name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of this topic's dead-letter topic.
    pub fn dead_letter_name(&self) -> String {
        dead_letter_topic(&self.name)
    }
}

/// How the name of every dead-letter topic starts.
pub const DEAD_LETTER_PREFIX: &str = "dlq:";

/// The dead-letter topic of a topic.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}{topic}")
}

impl Topic<WorkflowEngineMessage> {
    /// Commands for instances of a workflow (from clients).
    pub fn workflow_cmd(workflow: &str) -> Self {
        Self::named(format!("workflow-cmd:{workflow}"))
    }

    /// Events for instances of a workflow (task results, timers, workflow-task results).
    pub fn workflow_engine(workflow: &str) -> Self {
        Self::named(format!("workflow-engine:{workflow}"))
    }

    /// The workflow whose command or event topic is named `topic`.
    pub fn workflow_of(topic: &str) -> Option<&str> {
        topic
            .strip_prefix("workflow-cmd:")
            .or_else(|| topic.strip_prefix("workflow-engine:"))
            .filter(|workflow| !workflow.is_empty())
    }
}

impl Topic<WorkflowTaskMessage> {
    /// Workflow tasks of a workflow.
    pub fn workflow_task(workflow: &str) -> Self {
        Self::named(format!("workflow-task:{workflow}"))
    }
}

impl Topic<ServiceTaskMessage> {
    /// Tasks of a service.
    pub fn service_task(service: &str) -> Self {
        Self::named(format!("service-task:{service}"))
    }
}

impl Topic<TimerMessage> {
    /// The timer service's topic.
    pub fn timers() -> Self {
        Self::named("timers".to_string())
    }
}

impl Topic<TaskControlMessage> {
    /// Control messages for the workers of a service (each worker on its own subscription).
    pub fn task_control(service: &str) -> Self {
        Self::named(format!("task-control:{service}"))
    }
}

impl Topic<TagEngineMessage> {
    /// Tag commands for instances of a workflow.
    pub fn workflow_tag(workflow: &str) -> Self {
        Self::named(format!("workflow-tag:{workflow}"))
    }

    /// Delegated-task commands for a service.
    pub fn service_tag(service: &str) -> Self {
        Self::named(format!("service-tag:{service}"))
    }
}

impl Topic<ClientMessage> {
    /// A client's reply topic.
    pub fn client(client: ClientId) -> Self {
        Self::named(format!("client:{client}"))
    }
}

#[cfg(test)]
mod tests {
    use super::Topic;
    use crate::messages::WorkflowEngineMessage;

    #[test]
    fn an_engine_topic_names_its_workflow() {
        type Engine = Topic<WorkflowEngineMessage>;
        assert_eq!(
            Engine::workflow_of(Engine::workflow_cmd("Booking").name()),
            Some("Booking")
        );
        assert_eq!(
            Engine::workflow_of(Engine::workflow_engine("Bill:ing").name()),
            Some("Bill:ing")
        );
        assert_eq!(Engine::workflow_of("workflow-task:Booking"), None);
        assert_eq!(Engine::workflow_of("workflow-cmd:"), None);
    }
}
