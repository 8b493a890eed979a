//! The broker's own floor: how long one message takes from publish to a consumer, through
//! Baton's transport and nothing else. An echo task consumes `hop-out` and republishes each
//! message to `hop-back`; the driver publishes one message at a time and waits for its echo,
//! so a round trip is two hops, each a publish (confirmed by the broker) and a delivery, as
//! every hop of a workflow is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::components::transport::{OutgoingMessage, SubscriptionKind, Transport, TransportError};

use crate::driver::percentile;

/// Per-hop latencies of one run.
#[derive(Clone, Debug)]
pub struct HopFigures {
    /// Messages sent round trip.
    pub n: usize,
    /// Publish until the broker confirmed it, median, in milliseconds.
    pub publish_p50_ms: f64,
    /// One hop (half a round trip), median, in milliseconds.
    pub hop_p50_ms: f64,
    /// One hop, 99th percentile, in milliseconds.
    pub hop_p99_ms: f64,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum HopError {
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// A message did not come back.
    #[error("no echo within {0:?}")]
    Timeout(Duration),
}

const WAIT: Duration = Duration::from_secs(30);

/// Sends `warmup` then `n` messages round trip, one at a time.
pub async fn measure(transport: Arc<dyn Transport>, n: usize, warmup: usize) -> Result<HopFigures, HopError> {
    let run = baton::WorkflowId::new().to_string();
    let (out_topic, back_topic) = (format!("hop-out-{run}"), format!("hop-back-{run}"));
    // Keyed, as the engine and the workers consume their topics.
    let mut echo_in = transport.subscribe(&out_topic, "echo", SubscriptionKind::Keyed).await?;
    let mut back = transport
        .subscribe(&back_topic, "driver", SubscriptionKind::Keyed)
        .await?;
    let echo_transport = transport.clone();
    let echo_topic = back_topic.clone();
    let echo = tokio::spawn(async move {
        while let Ok(d) = echo_in.next().await {
            let message = OutgoingMessage::new(d.key.clone(), d.payload.to_vec());
            if echo_transport.publish(&echo_topic, message).await.is_err() {
                break;
            }
            d.ack().await;
        }
    });
    let mut publishes = Vec::with_capacity(n);
    let mut hops = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let started = Instant::now();
        transport
            .publish(
                &out_topic,
                OutgoingMessage::new(format!("k{i}"), i.to_le_bytes().to_vec()),
            )
            .await?;
        let published = started.elapsed();
        let d = tokio::time::timeout(WAIT, back.next())
            .await
            .map_err(|_| HopError::Timeout(WAIT))??;
        let round_trip = started.elapsed();
        d.ack().await;
        if i >= warmup {
            publishes.push(published);
            hops.push(round_trip / 2);
        }
    }
    echo.abort();
    publishes.sort();
    hops.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(HopFigures {
        n,
        publish_p50_ms: ms(percentile(&publishes, 50.0)),
        hop_p50_ms: ms(percentile(&hops, 50.0)),
        hop_p99_ms: ms(percentile(&hops, 99.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_round_trip_on_the_memory_transport_is_measured() {
        let transport: Arc<dyn Transport> = Arc::new(baton::components::transport::InMemoryTransport::default());
        let figures = measure(transport, 20, 2).await.expect("measure");
        assert_eq!(figures.n, 20);
        assert!(figures.hop_p50_ms > 0.0 && figures.hop_p99_ms >= figures.hop_p50_ms);
    }
}
