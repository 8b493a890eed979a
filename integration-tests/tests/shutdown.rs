//! Graceful shutdown of embedded Baton: in-flight attempts drain; past the drain deadline they
//! are cancelled (and left for redelivery) instead of holding shutdown forever.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use baton::{Embedded, WorkerConfig, Workflow, WorkflowContext};
use tokio::sync::Notify;

#[baton::service]
pub trait Slow {
    async fn work(&self, millis: u64) -> Result<(), String>;
}

#[derive(Default)]
struct SlowImpl {
    started: Notify,
    finished: AtomicU32,
}

impl Slow for Arc<SlowImpl> {
    async fn work(&self, millis: u64) -> Result<(), String> {
        self.started.notify_one();
        tokio::time::sleep(Duration::from_millis(millis)).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct OneCall;
impl Workflow for OneCall {
    const NAME: &'static str = "OneCall";
    type Input = u64;
    type Output = ();
    type Error = String;

    async fn run(ctx: WorkflowContext, millis: u64) -> Result<(), String> {
        ctx.service::<SlowStub>().work(millis).await.map_err(|e| e.to_string())
    }
}

async fn start(slow: Arc<SlowImpl>, drain: Duration) -> Embedded {
    Embedded::builder()
        .service(SlowService::new(slow))
        .workflow::<OneCall>()
        .worker_config(WorkerConfig {
            drain_timeout: drain,
            ..WorkerConfig::default()
        })
        .start()
        .await
        .expect("start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_running_attempts() {
    let slow = Arc::new(SlowImpl::default());
    let baton = start(slow.clone(), Duration::from_secs(10)).await;
    let started = slow.started.notified();
    baton.client().start::<OneCall>(&400).await.expect("start");
    started.await;
    let t0 = Instant::now();
    baton.shutdown().await;
    assert_eq!(
        slow.finished.load(Ordering::SeqCst),
        1,
        "the running attempt finished before shutdown returned"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "shutdown returned after {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_attempts_past_the_drain_deadline() {
    let slow = Arc::new(SlowImpl::default());
    let baton = start(slow.clone(), Duration::from_millis(100)).await;
    let started = slow.started.notified();
    baton.client().start::<OneCall>(&60_000).await.expect("start");
    started.await;
    let t0 = Instant::now();
    baton.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        slow.finished.load(Ordering::SeqCst),
        0,
        "the attempt was cancelled, not completed"
    );
}
