//! Dead letters: the collector that moves them from the broker's `dlq:{topic}` topics into the
//! store, and the routes that list, show, redrive and discard them.
//!
//! The collector consumes with one shared subscription (`baton-dead-letters`, which the Pulsar
//! transport already creates with each dead-letter topic, so nothing is lost before an API
//! runs). It acknowledges a letter only once the store holds it, so a crash in between
//! collects it again, and the store keeps it once by id.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use baton_runtime::{CancellationToken, Clock};
use baton_shared_schemas::Topic;
use baton_shared_schemas::messages::{
    ServiceTaskMessage, TagEngineMessage, TaskControlMessage, TimerMessage, WorkflowEngineMessage, WorkflowTaskMessage,
};
use baton_storage::{DeadLetter, DeadLetterStore, InstanceIndex};
use baton_transport::{Delivery, OutgoingMessage, SubscriptionKind, Transport, headers};
use serde::Serialize;
use serde_json::Value;

use crate::extract::{Path, Query};
use crate::problem::Problem;
use crate::views::{DeadLetterPage, DeadLetterTopic, DeadLetterView, PageParams, Redriven, readable};
use crate::{Api, ApiResult};

/// The subscription the collector consumes dead-letter topics with.
pub const COLLECTOR_SUBSCRIPTION: &str = "baton-dead-letters";

/// The topics whose dead letters are collected, for these workflows and services.
pub fn dead_letter_sources(workflows: &BTreeSet<String>, services: &BTreeSet<String>) -> BTreeSet<String> {
    let mut topics = BTreeSet::from([Topic::timers().name().to_string()]);
    for w in workflows {
        topics.insert(Topic::workflow_cmd(w).name().to_string());
        topics.insert(Topic::workflow_engine(w).name().to_string());
        topics.insert(Topic::workflow_task(w).name().to_string());
        topics.insert(Topic::workflow_tag(w).name().to_string());
    }
    for s in services {
        topics.insert(Topic::service_task(s).name().to_string());
        topics.insert(Topic::service_tag(s).name().to_string());
        topics.insert(Topic::task_control(s).name().to_string());
    }
    topics
}

fn view_of<M: serde::de::DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<(String, Value), String> {
    baton_shared_schemas::decode_envelope::<M>(bytes)
        .map(|e| (e.message_id.to_string(), readable(&e)))
        .map_err(|e| e.to_string())
}

/// The message a letter holds, decoded by the type its topic carries: its id and its JSON.
pub fn decode_body(topic: &str, bytes: &[u8]) -> Result<(String, Value), String> {
    let kind = topic.split_once(':').map_or(topic, |(kind, _)| kind);
    match kind {
        "workflow-cmd" | "workflow-engine" => view_of::<WorkflowEngineMessage>(bytes),
        "workflow-task" => view_of::<WorkflowTaskMessage>(bytes),
        "service-task" => view_of::<ServiceTaskMessage>(bytes),
        "task-control" => view_of::<TaskControlMessage>(bytes),
        "workflow-tag" | "service-tag" => view_of::<TagEngineMessage>(bytes),
        "timers" => view_of::<TimerMessage>(bytes),
        other => Err(format!("topics of kind `{other}` carry no known message type")),
    }
}

/// The letter a delivery of `dlq:{topic}` is.
pub fn letter_of(dead_letter_topic: &str, delivery: &Delivery, now: baton_shared_schemas::Timestamp) -> DeadLetter {
    let topic = delivery
        .header(headers::ORIGINAL_TOPIC)
        .map(str::to_string)
        .or_else(|| dead_letter_topic.strip_prefix("dlq:").map(str::to_string))
        .unwrap_or_else(|| dead_letter_topic.to_string());
    let id = match decode_body(&topic, &delivery.payload) {
        // Copies of one message (a duplicate publish) are one letter.
        Ok((id, _)) => id,
        // Undecodable: an id from where it was and what it is, so the same letter delivered
        // again is held once, while letters with the same bytes from different messages (or
        // a redriven letter that failed again) are held apart.
        Err(_) => {
            let position = delivery.header(headers::ORIGINAL_POSITION).unwrap_or_default();
            let name = [
                topic.as_bytes(),
                b"\0",
                delivery.key.as_bytes(),
                b"\0",
                position.as_bytes(),
                b"\0",
                &delivery.payload,
            ]
            .concat();
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &name).to_string()
        }
    };
    DeadLetter {
        id,
        topic,
        key: delivery.key.clone(),
        payload: delivery.payload.to_vec(),
        headers: delivery.headers.iter().cloned().collect(),
        reason: delivery
            .header(headers::DEAD_LETTER_REASON)
            .unwrap_or("no reason given")
            .to_string(),
        redeliveries: delivery.header(headers::REDELIVERIES).and_then(|r| r.parse().ok()),
        dead_at: now,
    }
}

/// What the collector consumes, and where it keeps what it collects.
pub struct Collector {
    /// The broker.
    pub transport: Arc<dyn Transport>,
    /// Where letters are kept.
    pub store: Arc<dyn DeadLetterStore>,
    /// Where more workflow names are found.
    pub index: Arc<dyn InstanceIndex>,
    /// Stamps collection times.
    pub clock: Arc<dyn Clock>,
    /// Workflows whose topics to watch from the start.
    pub workflows: BTreeSet<String>,
    /// Services whose topics to watch.
    pub services: BTreeSet<String>,
    /// How often to look for workflows the index has seen since.
    pub refresh: Duration,
}

/// Consumes the dead-letter topics of the collector's workflows and services (and, every
/// `refresh`, of every workflow the instance index has seen) into the store until `shutdown`.
pub async fn collect(collector: Collector, shutdown: CancellationToken) {
    let Collector {
        transport,
        store,
        index,
        clock,
        workflows,
        services,
        refresh,
    } = collector;
    let mut watched: BTreeSet<String> = BTreeSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let mut all_workflows = workflows.clone();
        if let Ok(counts) = index.counts().await {
            all_workflows.extend(counts.into_iter().map(|c| c.workflow));
        }
        for topic in dead_letter_sources(&all_workflows, &services) {
            if watched.contains(&topic) {
                continue;
            }
            let dlq = baton_shared_schemas::topics::dead_letter_topic(&topic);
            match transport
                .subscribe(&dlq, COLLECTOR_SUBSCRIPTION, SubscriptionKind::Shared)
                .await
            {
                Ok(mut subscription) => {
                    watched.insert(topic);
                    let (store, clock, shutdown) = (store.clone(), clock.clone(), shutdown.clone());
                    tasks.spawn(async move {
                        loop {
                            let delivery = tokio::select! {
                                _ = shutdown.cancelled() => return,
                                next = subscription.next() => next,
                            };
                            let Ok(delivery) = delivery else {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                continue;
                            };
                            let letter = letter_of(&dlq, &delivery, clock.now());
                            match store.add(letter).await {
                                Ok(_) => delivery.ack().await,
                                Err(e) => {
                                    tracing::warn!(topic = %dlq, error = %e, "dead letter not stored; it is delivered again");
                                    delivery.nack(&format!("dead letter not stored: {e}")).await;
                                }
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!(topic = %dlq, error = %e, "cannot collect dead letters yet; retrying"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(refresh) => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

fn view(letter: &DeadLetter) -> DeadLetterView {
    let (body, body_error) = match decode_body(&letter.topic, &letter.payload) {
        Ok((_, body)) => (Some(body), None),
        Err(e) => (None, Some(e)),
    };
    DeadLetterView {
        id: letter.id.clone(),
        topic: letter.topic.clone(),
        key: letter.key.clone(),
        reason: letter.reason.clone(),
        dead_at: letter.dead_at.0,
        redeliveries: letter.redeliveries,
        body,
        body_error,
        payload_base64: base64::engine::general_purpose::STANDARD.encode(&letter.payload),
    }
}

fn page_limit(limit: Option<u32>) -> Result<usize, Problem> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Problem::bad_request(format!("limit {limit} must be between 1 and 500")));
    }
    Ok(limit as usize)
}

/// The topics holding dead letters, with counts.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "dead letters",
    responses((status = 200, body = Vec<DeadLetterTopic>), (status = 401, body = Problem)))]
pub async fn topics(State(api): State<Api>) -> ApiResult<axum::Json<Vec<DeadLetterTopic>>> {
    let topics = api.inner.stores.dead_letters.topics().await?;
    Ok(axum::Json(
        topics
            .into_iter()
            .map(|(topic, count)| DeadLetterTopic { topic, count })
            .collect(),
    ))
}

/// The letters of a topic, oldest first, with reason and decoded body.
#[utoipa::path(get, path = "/api/v1/dead-letters/{topic}", tag = "dead letters",
    params(("topic" = String, Path, description = "The topic the letters came from"), PageParams),
    responses((status = 200, body = DeadLetterPage), (status = 400, body = Problem)))]
pub async fn letters(
    State(api): State<Api>,
    Path(topic): Path<String>,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<DeadLetterPage>> {
    let limit = page_limit(params.limit)?;
    if let Some(cursor) = &params.cursor {
        baton_storage::dead_letters::check_cursor(cursor).map_err(Problem::bad_request)?;
    }
    let page = api
        .inner
        .stores
        .dead_letters
        .page(&topic, params.cursor.as_deref(), limit)
        .await?;
    Ok(axum::Json(DeadLetterPage {
        letters: page.letters.iter().map(view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One letter.
#[utoipa::path(get, path = "/api/v1/dead-letters/{topic}/{id}", tag = "dead letters",
    params(("topic" = String, Path, description = "The topic it came from"), ("id" = String, Path, description = "Letter id")),
    responses((status = 200, body = DeadLetterView), (status = 404, body = Problem)))]
pub async fn letter(
    State(api): State<Api>,
    Path((topic, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<DeadLetterView>> {
    let letter = api.held_letter(&topic, &id).await?;
    Ok(axum::Json(view(&letter)))
}

impl Api {
    /// A letter the store holds, or 404.
    async fn held_letter(&self, topic: &str, id: &str) -> Result<DeadLetter, Problem> {
        self.inner
            .stores
            .dead_letters
            .get(topic, id)
            .await?
            .ok_or_else(|| Problem::not_found(format!("no dead letter {id} of topic {topic}")))
    }

    /// Publishes a letter to its topic again, then forgets it (a crash in between publishes it
    /// twice, and receivers drop the duplicate by its message id).
    async fn redrive_letter(&self, letter: &DeadLetter) -> Result<(), Problem> {
        self.inner
            .transport
            .publish(
                &letter.topic,
                OutgoingMessage::new(letter.key.clone(), letter.payload.clone()),
            )
            .await
            .map_err(|e| Problem::unavailable(format!("cannot publish to {}: {e}", letter.topic)))?;
        self.inner.stores.dead_letters.remove(&letter.topic, &letter.id).await?;
        Ok(())
    }
}

/// Sends one letter back to its topic.
#[utoipa::path(post, path = "/api/v1/dead-letters/{topic}/{id}/redrive", tag = "dead letters",
    params(("topic" = String, Path, description = "The topic it came from"), ("id" = String, Path, description = "Letter id")),
    responses((status = 200, body = Redriven), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn redrive_one(
    State(api): State<Api>,
    Path((topic, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<Redriven>> {
    let letter = api.held_letter(&topic, &id).await?;
    api.redrive_letter(&letter).await?;
    Ok(axum::Json(Redriven { redriven: 1 }))
}

/// Sends every letter of a topic back to it.
#[utoipa::path(post, path = "/api/v1/dead-letters/{topic}/redrive", tag = "dead letters",
    params(("topic" = String, Path, description = "The topic the letters came from")),
    responses((status = 200, body = Redriven), (status = 403, body = Problem)))]
pub async fn redrive_all(State(api): State<Api>, Path(topic): Path<String>) -> ApiResult<axum::Json<Redriven>> {
    let mut redriven = 0;
    loop {
        // Each redriven letter leaves the store, so the first page is always the next one.
        let page = api.inner.stores.dead_letters.page(&topic, None, 100).await?;
        if page.letters.is_empty() {
            break;
        }
        for letter in &page.letters {
            api.redrive_letter(letter).await?;
            redriven += 1;
        }
    }
    Ok(axum::Json(Redriven { redriven }))
}

/// Discards a letter.
#[utoipa::path(delete, path = "/api/v1/dead-letters/{topic}/{id}", tag = "dead letters",
    params(("topic" = String, Path, description = "The topic it came from"), ("id" = String, Path, description = "Letter id")),
    responses((status = 204, description = "Discarded"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn discard(State(api): State<Api>, Path((topic, id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    if api.inner.stores.dead_letters.remove(&topic, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("no dead letter {id} of topic {topic}")))
    }
}
