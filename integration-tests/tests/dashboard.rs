//! The dashboard in a real headless browser (Debian Chromium driven by Playwright): an operator
//! finds a failed booking, the fix is deployed, the operator clicks "Retry failed tasks" and
//! watches the booking complete. The browser script (`integration-tests/browser/dashboard.mjs`)
//! saves screenshots, which `docs/operations.md` shows.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use baton::components::transport::OutgoingMessage;
use baton::{ApiConfig, Embedded, Workflow, WorkflowContext, WorkflowStatus};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{0}")]
pub struct TravelError(String);

impl baton::ServiceError for TravelError {
    fn is_retryable(&self) -> bool {
        false
    }
}

#[baton::service]
pub trait Travel {
    async fn charge(&self, customer: String) -> Result<String, TravelError>;
    async fn book_flight(&self, flight: String) -> Result<String, TravelError>;
    async fn book_hotel(&self, hotel: String) -> Result<String, TravelError>;
}

#[derive(Default)]
struct TravelImpl {
    hotel_broken: AtomicBool,
}

impl Travel for Arc<TravelImpl> {
    async fn charge(&self, customer: String) -> Result<String, TravelError> {
        Ok(format!("charged {customer}"))
    }

    async fn book_flight(&self, flight: String) -> Result<String, TravelError> {
        Ok(format!("seat on {flight}"))
    }

    async fn book_hotel(&self, hotel: String) -> Result<String, TravelError> {
        if self.hotel_broken.load(Ordering::SeqCst) {
            return Err(TravelError(format!(
                "hotel system rejected the request for {hotel}: unknown API version"
            )));
        }
        Ok(format!("room at {hotel}"))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trip {
    customer: String,
    flight: String,
    hotel: String,
}

pub struct Booking;

impl Workflow for Booking {
    const NAME: &'static str = "Booking";
    type Input = Trip;
    type Output = Vec<String>;
    type Error = String;

    async fn run(ctx: WorkflowContext, trip: Trip) -> Result<Vec<String>, String> {
        let travel = ctx.service::<TravelStub>();
        let paid = travel.charge(trip.customer).await.map_err(|e| e.to_string())?;
        let seat = travel.book_flight(trip.flight).await.map_err(|e| e.to_string())?;
        let room = travel.book_hotel(trip.hotel).await.map_err(|e| e.to_string())?;
        Ok(vec![paid, seat, room])
    }
}

fn trip(n: u32) -> Trip {
    Trip {
        customer: format!("customer-{n}"),
        flight: format!("LH{}", 100 + n),
        hotel: "Hotel Adlon".into(),
    }
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(90), lines.next_line())
        .await
        .expect("the browser answers within 90 s")
        .expect("read the browser's output")
        .expect("the browser script ended early (its error is above)")
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retries_a_failed_booking_from_the_dashboard() {
    let browser_dir = workspace().join("integration-tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "Playwright is not installed in {}: ./scripts/test.sh installs it (npm ci)",
        browser_dir.display()
    );
    let travel = Arc::new(TravelImpl::default());
    let mut baton = Embedded::builder()
        .service(TravelService::new(travel.clone()))
        .workflow::<Booking>()
        .start()
        .await
        .expect("start");
    let address = baton
        .serve("127.0.0.1:0".parse().expect("address"), ApiConfig::default())
        .await
        .expect("serve");
    let client = baton.client().clone();

    // Some bookings that complete, one that fails for good at the hotel, and a message no
    // engine can read (a dead letter).
    for n in 0..3 {
        let handle = client.start::<Booking>(&trip(n)).await.expect("start");
        handle.result().await.expect("a booking completes");
    }
    travel.hotel_broken.store(true, Ordering::SeqCst);
    let failed = client.start::<Booking>(&trip(7)).await.expect("start");
    assert!(failed.result().await.is_err(), "the broken hotel fails the booking");
    baton
        .transport()
        .publish(
            "workflow-cmd:Booking",
            OutgoingMessage::new("k", b"not an envelope".to_vec()),
        )
        .await
        .expect("publish");

    let shots = std::env::var_os("BATON_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/screenshots"));
    let mut browser = tokio::process::Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .arg(format!("http://{address}"))
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (./scripts/test.sh installs Node.js)");
    let mut stdin = browser.stdin.take().expect("stdin");
    let mut lines = BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let found = next_line(&mut lines).await;
    assert_eq!(
        found,
        format!("FOUND {}", failed.id()),
        "the page found the failed booking"
    );
    travel.hotel_broken.store(false, Ordering::SeqCst); // the fix is deployed
    stdin.write_all(b"FIXED\n").await.expect("tell the browser");
    stdin.flush().await.expect("flush");
    drop(stdin);
    assert_eq!(next_line(&mut lines).await, "DONE");
    let status = tokio::time::timeout(Duration::from_secs(30), browser.wait())
        .await
        .expect("the browser exits")
        .expect("wait");
    assert!(status.success(), "the browser script failed: {status}");

    // What the page showed is what happened.
    let view = failed.status().await.expect("status");
    assert_eq!(view.status, WorkflowStatus::Completed);
    assert_eq!(
        failed.result().await.expect("result after the retry"),
        vec!["charged customer-7", "seat on LH107", "room at Hotel Adlon"]
    );
    for shot in [
        "dashboard-instances.png",
        "dashboard-failed-instance.png",
        "dashboard-completed-instance.png",
        "dashboard-dead-letters.png",
    ] {
        let size = std::fs::metadata(shots.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{shot} was not saved ({size} bytes)");
    }
    baton.shutdown().await;
}
