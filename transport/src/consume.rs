//! The one consume loop every component runs.
//!
//! A [`ConsumeLoop`] takes up to a batch of deliveries that are ready at once from a
//! [`Source`], decodes each (one that does not decode is dead-lettered with the reason; one
//! written by a newer schema version is nacked, so it waits for an upgraded replica), hands
//! the decoded messages to the component's [`Handler`] and settles each by its result:
//! acknowledged when handled; by the error's [`ErrorClass`] otherwise — a transient error
//! (a dependency is unreachable) is waited out and the message handled again in place, a
//! retryable one is nacked (the transport redelivers it after its backoff, and dead-letters it
//! once its redeliveries are spent), a poison one is dead-lettered at once with the reason.
//! On shutdown it stops taking deliveries; one left unsettled mid-outage is redelivered after
//! the restart.
//!
//! [`ConsumeLoop::run`] handles batches in order (state machines: the engine, the tag engine,
//! the timer service); [`ConsumeLoop::run_each`] runs each delivery in its own task with
//! bounded concurrency (workers, whose handlers run user code for a long time).

use std::collections::VecDeque;
use std::fmt::Display;
use std::sync::Arc;

use baton_runtime::{Backoff, CLOCK_LEAD, CancellationToken, Classify, Clock, ErrorClass, Outage};
use baton_shared_schemas::{CodecError, Envelope, TopicMessage};
use futures::FutureExt;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::{Delivery, Result, Subscription, TransportError};
use baton_telemetry::names;

/// A decoded message and where it came from.
#[derive(Clone, Debug)]
pub struct Incoming<M> {
    /// The message.
    pub envelope: Envelope<M>,
    /// The topic it came from.
    pub topic: String,
    /// Its routing key.
    pub key: String,
    /// How often it was delivered before.
    pub redeliveries: u32,
    /// When a timer service fired it, by that service's clock (the
    /// [`headers::TIMER_FIRED_AT`](crate::headers::TIMER_FIRED_AT) header), if a timer held it.
    pub fired_at: Option<baton_shared_schemas::Timestamp>,
}

/// What a component does with its messages.
#[async_trait::async_trait]
pub trait Handler<M: Send + Sync + 'static>: Send {
    /// How handling fails; its [`Classify::class`] decides how the message is settled.
    type Error: Classify + Display + Send + Sync;

    /// Handles one message.
    async fn handle_one(&mut self, message: &Incoming<M>) -> std::result::Result<(), Self::Error>;

    /// Handles `batch` in order and returns one result per message handled. It stops at a
    /// transient error: the messages after it get no result and are handed again, with the
    /// failed one, once the dependency is back. By default one message after another;
    /// a handler overrides it to persist or publish a batch together.
    async fn handle(&mut self, batch: &[Incoming<M>]) -> Vec<std::result::Result<(), Self::Error>> {
        let mut results = Vec::with_capacity(batch.len());
        for message in batch {
            let result = self.handle_one(message).await;
            let transient = matches!(&result, Err(e) if e.class() == ErrorClass::Transient);
            results.push(result);
            if transient {
                break;
            }
        }
        results
    }
}

/// Where deliveries come from: a subscription, or a channel a router feeds.
#[async_trait::async_trait]
pub trait Source: Send {
    /// Waits for the next delivery. Must be cancel-safe: a call dropped before it returns
    /// loses nothing. [`TransportError::Closed`] ends the loop normally.
    async fn next(&mut self) -> Result<Delivery>;

    /// A delivery that is ready now, without waiting.
    fn ready(&mut self) -> Option<Delivery>;
}

#[async_trait::async_trait]
impl Source for Box<dyn Subscription> {
    async fn next(&mut self) -> Result<Delivery> {
        Subscription::next(self.as_mut()).await
    }

    fn ready(&mut self) -> Option<Delivery> {
        // Every backend's `next` is cancel-safe, so polling it once loses nothing.
        Subscription::next(self.as_mut()).now_or_never().and_then(Result::ok)
    }
}

#[async_trait::async_trait]
impl Source for mpsc::Receiver<Delivery> {
    async fn next(&mut self) -> Result<Delivery> {
        self.recv().await.ok_or(TransportError::Closed)
    }

    fn ready(&mut self) -> Option<Delivery> {
        self.try_recv().ok()
    }
}

/// The consume loop of one component's messages of one kind.
#[derive(Clone)]
pub struct ConsumeLoop {
    what: Arc<str>,
    batch: usize,
    shutdown: CancellationToken,
    clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for ConsumeLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeLoop")
            .field("what", &self.what)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl ConsumeLoop {
    /// A loop over messages described by `what` (for logs and dead-letter reasons:
    /// `"workflow engine message"`), one at a time, until `shutdown` is cancelled.
    pub fn new(what: &str, shutdown: CancellationToken) -> Self {
        Self {
            what: what.into(),
            batch: 1,
            shutdown,
            clock: None,
        }
    }

    /// Compares each message's emission time with the component's `clock`, feeding
    /// [`baton_runtime::CLOCK_LEAD`] (readiness warns of skew) and its gauge.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Takes up to `batch` ready deliveries at a time (at least one).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Consumes `source` in batches, in order, until shutdown or the source closes. Returns
    /// the source's error if it fails.
    pub async fn run<M, S, H>(&self, mut source: S, handler: &mut H) -> Result<()>
    where
        M: TopicMessage + Send + Sync + 'static,
        S: Source,
        H: Handler<M>,
    {
        loop {
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                next = source.next() => match next {
                    Ok(d) => d,
                    Err(TransportError::Closed) => return Ok(()),
                    Err(e) => return Err(e),
                },
            };
            let mut deliveries = vec![first];
            while deliveries.len() < self.batch {
                match source.ready() {
                    Some(d) => deliveries.push(d),
                    None => break,
                }
            }
            let mut settled = VecDeque::with_capacity(deliveries.len());
            let mut batch = Vec::with_capacity(deliveries.len());
            let mut spans = Vec::new();
            for delivery in deliveries {
                match self.decode(&delivery) {
                    Ok(mut incoming) => {
                        spans.extend(self.trace(&mut incoming));
                        batch.push(incoming);
                        settled.push_back(delivery);
                    }
                    Err(e) => self.settle_undecodable(delivery, e).await,
                }
            }
            if !batch.is_empty() {
                self.handle(handler, settled, batch).await;
            }
            // The messages' spans end once the batch is settled.
            drop(spans);
        }
    }

    /// Consumes `source`, running each delivery in its own task with a clone of `handler`
    /// while one of `slots` is free. On shutdown it stops taking deliveries and waits for the
    /// tasks still running.
    pub async fn run_each<M, S, H>(&self, mut source: S, slots: Arc<Semaphore>, handler: H) -> Result<()>
    where
        M: TopicMessage + Send + Sync + 'static,
        S: Source,
        H: Handler<M> + Clone + 'static,
    {
        let mut running = JoinSet::new();
        let result = loop {
            let permit = tokio::select! {
                _ = self.shutdown.cancelled() => break Ok(()),
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break Ok(()),
                },
            };
            let delivery = tokio::select! {
                _ = self.shutdown.cancelled() => break Ok(()),
                next = source.next() => match next {
                    Ok(d) => d,
                    Err(TransportError::Closed) => break Ok(()),
                    Err(e) => break Err(e),
                },
            };
            let (this, mut handler) = (self.clone(), handler.clone());
            running.spawn(async move {
                match this.decode(&delivery) {
                    Ok(mut incoming) => {
                        let span = this.trace(&mut incoming);
                        this.handle(&mut handler, VecDeque::from([delivery]), vec![incoming])
                            .await;
                        drop(span);
                    }
                    Err(e) => this.settle_undecodable(delivery, e).await,
                }
                drop(permit);
            });
            while running.try_join_next().is_some() {}
        };
        while running.join_next().await.is_some() {}
        result
    }

    fn decode<M: TopicMessage>(&self, delivery: &Delivery) -> std::result::Result<Incoming<M>, CodecError> {
        let topic = crate::metered::topic_label(&delivery.topic);
        metrics::counter!(names::CONSUMED, "topic" => topic.clone()).increment(1);
        if delivery.redeliveries > 0 {
            metrics::counter!(names::REDELIVERED, "topic" => topic).increment(1);
        }
        let envelope = baton_shared_schemas::decode_envelope::<M>(&delivery.payload)?;
        if let Some(lead) = self
            .clock
            .as_ref()
            .and_then(|clock| CLOCK_LEAD.observe(envelope.emitted_at, clock.now()))
        {
            metrics::gauge!(names::CLOCK_LEAD).set(lead.as_secs_f64());
        }
        Ok(Incoming {
            envelope,
            topic: delivery.topic.clone(),
            key: delivery.key.clone(),
            redeliveries: delivery.redeliveries,
            fired_at: delivery
                .header(crate::headers::TIMER_FIRED_AT)
                .and_then(|at| at.parse().ok())
                .map(baton_shared_schemas::Timestamp),
        })
    }

    /// Starts the span of handling a message, as a child of the span that sent it, and makes
    /// the message carry the new span, so what its handler emits continues the trace from
    /// here. Nothing when tracing is off.
    fn trace<M>(&self, incoming: &mut Incoming<M>) -> Option<baton_telemetry::trace::MessageSpan> {
        let span = baton_telemetry::trace::consumer_span(
            format!("{} {}", self.what, crate::metered::topic_label(&incoming.topic)),
            incoming.envelope.trace.traceparent.as_deref(),
            vec![
                opentelemetry::KeyValue::new("messaging.destination.name", incoming.topic.clone()),
                opentelemetry::KeyValue::new("messaging.message.id", incoming.envelope.message_id.to_string()),
                opentelemetry::KeyValue::new("baton.key", incoming.key.clone()),
            ],
        )?;
        incoming.envelope.trace.traceparent = Some(span.traceparent());
        Some(span)
    }

    /// Settles a delivery that did not decode: dead-lettered with the reason, or, written by a
    /// newer schema version, nacked.
    async fn settle_undecodable(&self, delivery: Delivery, error: CodecError) {
        if let CodecError::NewerSchema { .. } = error {
            // Written by a newer build during a rolling upgrade: left for a replica that reads
            // it (redelivery may reach one), dead-lettered with this reason once redeliveries
            // are spent, to be redriven after the upgrade. Never misread as this version.
            let reason = format!("{} {error}", self.what);
            tracing::warn!(topic = %delivery.topic, key = %delivery.key, %reason, "leaving a message of a newer schema for an upgraded replica");
            metrics::counter!(names::NACKED, "topic" => crate::metered::topic_label(&delivery.topic)).increment(1);
            delivery.nack(&reason).await;
            return;
        }
        let reason = format!("undecodable {}: {error}", self.what);
        tracing::warn!(topic = %delivery.topic, key = %delivery.key, %reason, "dead-lettering");
        metrics::counter!(names::DEAD_LETTERED, "topic" => crate::metered::topic_label(&delivery.topic), "why" => "undecodable")
            .increment(1);
        delivery.dead_letter(&reason).await;
    }

    /// Hands `batch` to the handler and settles each delivery by its result; a transient
    /// failure is waited out and the rest handed again, until shutdown.
    async fn handle<M, H>(&self, handler: &mut H, mut deliveries: VecDeque<Delivery>, batch: Vec<Incoming<M>>)
    where
        M: Send + Sync + 'static,
        H: Handler<M>,
    {
        let mut outage = Outage::new(&self.what, Backoff::DEPENDENCY, &self.shutdown);
        let mut start = 0;
        while start < batch.len() {
            let began = std::time::Instant::now();
            let results = handler.handle(&batch[start..]).await;
            metrics::histogram!(names::HANDLER_SECONDS, "consumer" => self.what.to_string())
                .record(began.elapsed().as_secs_f64());
            metrics::histogram!(names::BATCH_SIZE, "consumer" => self.what.to_string())
                .record((batch.len() - start) as f64);
            let mut transient = None;
            for result in results {
                let Some(delivery) = deliveries.pop_front() else {
                    break;
                };
                match result {
                    Ok(()) => delivery.ack().await,
                    Err(e) => match e.class() {
                        ErrorClass::Transient => {
                            deliveries.push_front(delivery);
                            transient = Some(e);
                            break;
                        }
                        ErrorClass::Retryable => {
                            tracing::warn!(what = %self.what, topic = %delivery.topic, error = %e, "handling failed; redelivering");
                            metrics::counter!(names::NACKED, "topic" => crate::metered::topic_label(&delivery.topic))
                                .increment(1);
                            delivery.nack(&e.to_string()).await;
                        }
                        ErrorClass::Poison => {
                            tracing::warn!(what = %self.what, topic = %delivery.topic, error = %e, "message can never be handled; dead-lettering");
                            metrics::counter!(names::DEAD_LETTERED, "topic" => crate::metered::topic_label(&delivery.topic), "why" => "poison")
                                .increment(1);
                            delivery.dead_letter(&e.to_string()).await;
                        }
                    },
                }
                start += 1;
            }
            if start == batch.len() {
                return;
            }
            match transient {
                Some(e) => {
                    if !outage.wait_after(&e).await {
                        // Stopping mid-outage: left unsettled, redelivered after the restart.
                        tracing::info!(what = %self.what, error = %e, left = deliveries.len(), "stopping during an outage; messages left for redelivery");
                        return;
                    }
                }
                None => {
                    // The handler gave no result for these: a bug, but never a lost message.
                    for delivery in deliveries.drain(..) {
                        delivery.nack("the handler did not handle this message").await;
                    }
                    return;
                }
            }
        }
    }
}
