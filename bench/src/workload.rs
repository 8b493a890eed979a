//! The booking-4step workload, exactly as the benchmark spec gives it: one workflow type
//! `booking` whose four strictly sequential steps (`payment.process`, `flight.book`,
//! `hotel.book`, `notify.send`) run in a service worker and return fixed small payloads; and
//! the sweep's workflow of K trivial sequential steps.

use baton::{Workflow, WorkflowContext};
use serde::{Deserialize, Serialize};

/// The metadata entry carrying a run's key (`<runTag>-run-<i>`), which is also its custom id.
pub const KEY: &str = "booking-key";

/// The workflow's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingInput {
    /// `customer-<i>`.
    pub customer: String,
    /// Always `LH123`.
    pub flight: String,
    /// Always `Hotel Adlon`.
    pub hotel: String,
    /// Always 12345.
    pub amount_cents: u64,
}

impl BookingInput {
    /// The input of run `i`.
    pub fn for_run(i: u64) -> Self {
        Self {
            customer: format!("customer-{i}"),
            flight: "LH123".into(),
            hotel: "Hotel Adlon".into(),
            amount_cents: 12_345,
        }
    }
}

/// The workflow's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingResult {
    /// The run's key.
    pub booking_id: String,
    /// Always true when it completed.
    pub ok: bool,
    /// `payment`, `flight`, `hotel`, `notify`.
    pub steps: Vec<String>,
}

impl BookingResult {
    /// Whether this is the result the spec expects for `key`: the driver checks all three
    /// fields and counts anything else as an error.
    pub fn is_expected_for(&self, key: &str) -> bool {
        self.booking_id == key && self.ok && self.steps == STEPS
    }
}

/// The steps, in order.
pub const STEPS: [&str; 4] = ["payment", "flight", "hotel", "notify"];

/// A step never fails in this workload; the type exists because a service returns a `Result`.
#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
#[error("step failed: {0}")]
pub struct StepError(pub String);

impl baton::ServiceError for StepError {
    fn is_retryable(&self) -> bool {
        true
    }
}

/// `payment.process` input.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequest {
    /// The run's key.
    pub booking_id: String,
    /// The amount.
    pub amount_cents: u64,
}

/// `payment.process` output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDone {
    /// `payment`.
    pub step: String,
    /// The run's key.
    pub booking_id: String,
    /// The amount.
    pub amount_cents: u64,
    /// `charged`.
    pub status: String,
}

/// `flight.book` input.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlightRequest {
    /// The run's key.
    pub booking_id: String,
    /// The flight.
    pub flight: String,
}

/// `flight.book` output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlightDone {
    /// `flight`.
    pub step: String,
    /// The run's key.
    pub booking_id: String,
    /// The flight.
    pub flight: String,
    /// `12A`.
    pub seat: String,
    /// `booked`.
    pub status: String,
}

/// `hotel.book` input.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HotelRequest {
    /// The run's key.
    pub booking_id: String,
    /// The hotel.
    pub hotel: String,
}

/// `hotel.book` output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HotelDone {
    /// `hotel`.
    pub step: String,
    /// The run's key.
    pub booking_id: String,
    /// The hotel.
    pub hotel: String,
    /// 101.
    pub room: u32,
    /// `booked`.
    pub status: String,
}

/// `notify.send` input.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyRequest {
    /// The run's key.
    pub booking_id: String,
    /// Who to tell.
    pub customer: String,
}

/// `notify.send` output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyDone {
    /// `notify`.
    pub step: String,
    /// The run's key.
    pub booking_id: String,
    /// `email`.
    pub channel: String,
    /// `sent`.
    pub status: String,
}

/// Step 1.
#[baton::service(name = "payment")]
pub trait Payment {
    /// Charges.
    async fn process(&self, request: PaymentRequest) -> Result<PaymentDone, StepError>;
}

/// Step 2.
#[baton::service(name = "flight")]
pub trait Flight {
    /// Books a seat.
    async fn book(&self, request: FlightRequest) -> Result<FlightDone, StepError>;
}

/// Step 3.
#[baton::service(name = "hotel")]
pub trait Hotel {
    /// Books a room.
    async fn book(&self, request: HotelRequest) -> Result<HotelDone, StepError>;
}

/// Step 4.
#[baton::service(name = "notify")]
pub trait Notify {
    /// Tells the customer.
    async fn send(&self, request: NotifyRequest) -> Result<NotifyDone, StepError>;
}

/// The four steps: no sleep and no I/O, fixed answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Steps;

impl Payment for Steps {
    async fn process(&self, request: PaymentRequest) -> Result<PaymentDone, StepError> {
        Ok(PaymentDone {
            step: "payment".into(),
            booking_id: request.booking_id,
            amount_cents: request.amount_cents,
            status: "charged".into(),
        })
    }
}

impl Flight for Steps {
    async fn book(&self, request: FlightRequest) -> Result<FlightDone, StepError> {
        Ok(FlightDone {
            step: "flight".into(),
            booking_id: request.booking_id,
            flight: request.flight,
            seat: "12A".into(),
            status: "booked".into(),
        })
    }
}

impl Hotel for Steps {
    async fn book(&self, request: HotelRequest) -> Result<HotelDone, StepError> {
        Ok(HotelDone {
            step: "hotel".into(),
            booking_id: request.booking_id,
            hotel: request.hotel,
            room: 101,
            status: "booked".into(),
        })
    }
}

impl Notify for Steps {
    async fn send(&self, request: NotifyRequest) -> Result<NotifyDone, StepError> {
        Ok(NotifyDone {
            step: "notify".into(),
            booking_id: request.booking_id,
            channel: "email".into(),
            status: "sent".into(),
        })
    }
}

/// The `booking` workflow: the four steps, strictly one after another.
pub struct BookingWorkflow;

impl Workflow for BookingWorkflow {
    const NAME: &'static str = "booking";
    type Input = BookingInput;
    type Output = BookingResult;
    type Error = String;

    async fn run(ctx: WorkflowContext, input: BookingInput) -> Result<BookingResult, String> {
        let booking_id = ctx
            .meta()
            .get(KEY)
            .cloned()
            .ok_or_else(|| format!("started without the {KEY} metadata"))?;
        let failed = |e: baton::CallError<StepError>| e.to_string();
        ctx.service::<PaymentStub>()
            .process(PaymentRequest {
                booking_id: booking_id.clone(),
                amount_cents: input.amount_cents,
            })
            .await
            .map_err(failed)?;
        ctx.service::<FlightStub>()
            .book(FlightRequest {
                booking_id: booking_id.clone(),
                flight: input.flight,
            })
            .await
            .map_err(failed)?;
        ctx.service::<HotelStub>()
            .book(HotelRequest {
                booking_id: booking_id.clone(),
                hotel: input.hotel,
            })
            .await
            .map_err(failed)?;
        ctx.service::<NotifyStub>()
            .send(NotifyRequest {
                booking_id: booking_id.clone(),
                customer: input.customer,
            })
            .await
            .map_err(failed)?;
        Ok(BookingResult {
            booking_id,
            ok: true,
            steps: STEPS.iter().map(|s| s.to_string()).collect(),
        })
    }
}

/// The sweep's trivial step.
#[baton::service(name = "step")]
pub trait Step {
    /// Returns its input plus one.
    async fn run(&self, n: u64) -> Result<u64, StepError>;
}

impl Step for Steps {
    async fn run(&self, n: u64) -> Result<u64, StepError> {
        Ok(n + 1)
    }
}

/// The sweep's workflow: `input` trivial steps, strictly one after another.
pub struct SequentialSteps;

impl Workflow for SequentialSteps {
    const NAME: &'static str = "sequential-steps";
    type Input = u64;
    type Output = u64;
    type Error = String;

    async fn run(ctx: WorkflowContext, steps: u64) -> Result<u64, String> {
        let step = ctx.service::<StepStub>();
        let mut n = 0;
        for _ in 0..steps {
            n = step.run(n).await.map_err(|e| e.to_string())?;
        }
        Ok(n)
    }
}
