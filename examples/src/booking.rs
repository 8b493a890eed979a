//! The booking saga: charge the customer, book a flight, book a hotel, notify the customer.
//! Transient errors are retried; business failures (card declined, flight or hotel sold out)
//! are compensated: a booked flight is cancelled and the payment refunded.
//!
//! The services write every effect to a shared [`Ledger`], keyed by task id so a redelivered
//! attempt never charges or books twice; [`Ledger::audit`] then checks the books.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use baton::{CallError, Saga, TaskContext, Workflow, WorkflowContext};
use serde::{Deserialize, Serialize};

/// What the customer asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingRequest {
    /// The booking's number (used to decide injected business failures).
    pub booking: u64,
    /// Who pays.
    pub customer: String,
    /// Price in cents.
    pub amount_cents: u64,
    /// Flight wanted.
    pub flight: String,
    /// Hotel wanted.
    pub hotel: String,
}

/// Proof of a charge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The booking charged.
    pub booking: u64,
    /// Charge id (the charging task's id).
    pub charge_id: String,
    /// Amount charged.
    pub amount_cents: u64,
}

/// A booked seat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The booking.
    pub booking: u64,
    /// Ticket id.
    pub ticket_id: String,
}

/// A hotel reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The booking.
    pub booking: u64,
    /// Reservation id.
    pub reservation_id: String,
}

/// Payment failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PaymentError {
    /// The card was declined (business failure, not retried).
    #[error("card declined: {0}")]
    Declined(String),
    /// The payment provider is unavailable (retried).
    #[error("payment provider unavailable")]
    Unavailable,
}

/// Failures of the flight and hotel services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InventoryError {
    /// Nothing left to book (business failure, not retried).
    #[error("sold out")]
    SoldOut,
    /// The system is unavailable (retried).
    #[error("inventory system unavailable")]
    Unavailable,
}

impl baton::ServiceError for PaymentError {
    fn is_retryable(&self) -> bool {
        matches!(self, PaymentError::Unavailable)
    }
}

impl baton::ServiceError for InventoryError {
    fn is_retryable(&self) -> bool {
        matches!(self, InventoryError::Unavailable)
    }
}

/// Charges and refunds customers.
#[baton::service]
pub trait Payment {
    /// Charges the booking's amount.
    async fn charge(&self, request: BookingRequest) -> Result<Receipt, PaymentError>;
    /// Refunds a charge.
    async fn refund(&self, receipt: Receipt) -> Result<(), PaymentError>;
}

/// Books and cancels flights.
#[baton::service]
pub trait Flights {
    /// Books a seat.
    async fn book(&self, request: BookingRequest) -> Result<Ticket, InventoryError>;
    /// Cancels a ticket.
    async fn cancel(&self, ticket: Ticket) -> Result<(), InventoryError>;
}

/// Books hotels.
#[baton::service]
pub trait Hotels {
    /// Books a room.
    async fn book(&self, request: BookingRequest) -> Result<Reservation, InventoryError>;
}

/// Tells customers.
#[baton::service]
pub trait Notifications {
    /// Sends a message to the customer.
    async fn notify(&self, customer: String, message: String) -> Result<(), String>;
}

/// How a booking ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BookingOutcome {
    /// Everything was booked and paid.
    Booked {
        /// The charge.
        receipt: Receipt,
        /// The flight.
        ticket: Ticket,
        /// The hotel.
        reservation: Reservation,
    },
    /// A step failed for good; what was done before it was undone.
    Compensated {
        /// Which step failed and why.
        reason: String,
    },
}

/// The reason a failed step gives: the service's own error when it has one.
fn reason<E: std::fmt::Display>(error: &CallError<E>) -> String {
    match error {
        CallError::Service(e) => e.to_string(),
        CallError::Failed(failure) => failure.to_string(),
    }
}

/// The booking saga.
pub struct Booking;

impl Workflow for Booking {
    const NAME: &'static str = "Booking";
    type Input = BookingRequest;
    type Output = BookingOutcome;
    type Error = String;

    async fn run(ctx: WorkflowContext, request: BookingRequest) -> Result<BookingOutcome, String> {
        let payment = ctx.service::<PaymentStub>();
        let flights = ctx.service::<FlightsStub>();
        let hotels = ctx.service::<HotelsStub>();
        let notifications = ctx.service::<NotificationsStub>();
        let mut saga = Saga::new();

        let receipt = match payment.charge(request.clone()).await {
            Ok(receipt) => receipt,
            Err(CallError::Service(PaymentError::Declined(why))) => {
                return Ok(BookingOutcome::Compensated {
                    reason: format!("payment declined: {why}"),
                });
            }
            Err(e) => return Err(format!("payment failed: {e}")),
        };
        saga.add_named("refund", {
            let (payment, receipt) = (payment.clone(), receipt.clone());
            move || async move { payment.refund(receipt).await.map_err(|e| e.to_string()) }
        });

        let ticket = match flights.book(request.clone()).await {
            Ok(ticket) => ticket,
            Err(e) => return compensate(saga, format!("flight: {}", reason(&e))).await,
        };
        saga.add_named("flight cancellation", {
            let (flights, ticket) = (flights.clone(), ticket.clone());
            move || async move { flights.cancel(ticket).await.map_err(|e| e.to_string()) }
        });

        let reservation = match hotels.book(request.clone()).await {
            Ok(reservation) => reservation,
            Err(e) => return compensate(saga, format!("hotel: {}", reason(&e))).await,
        };

        // A failed notification does not undo a trip.
        let message = format!("booked {} and {}", request.flight, request.hotel);
        let _ = notifications.notify(request.customer.clone(), message).await;
        Ok(BookingOutcome::Booked {
            receipt,
            ticket,
            reservation,
        })
    }
}

/// Undoes what was done, last step first, and reports the booking as compensated.
async fn compensate(saga: Saga, reason: String) -> Result<BookingOutcome, String> {
    saga.compensate()
        .await
        .map_err(|failures| format!("compensation failed: {}", failures.join("; ")))?;
    Ok(BookingOutcome::Compensated { reason })
}

/// Rates of injected failures, each in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FailureRates {
    /// Chance that any single attempt fails transiently (retried).
    pub transient: f64,
    /// Chance that a booking's card is declined.
    pub declined: f64,
    /// Chance that a booking's flight is sold out.
    pub flight_sold_out: f64,
    /// Chance that a booking's hotel is sold out.
    pub hotel_sold_out: f64,
}

impl Default for FailureRates {
    fn default() -> Self {
        Self {
            transient: 0.05,
            declined: 0.03,
            flight_sold_out: 0.03,
            hotel_sold_out: 0.03,
        }
    }
}

/// A deterministic number in `[0, 1)` from a seed and parts.
fn chance(seed: u64, parts: &[u64]) -> f64 {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    for p in parts {
        x ^= p.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = x.rotate_left(31).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 29;
    }
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn text_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Default)]
struct Books {
    /// charge id → (booking, amount); one entry per effective charge.
    charges: HashMap<String, (u64, u64)>,
    /// Refunded charge ids.
    refunds: HashMap<String, u64>,
    /// ticket id → (booking, cancelled).
    tickets: HashMap<String, (u64, bool)>,
    /// reservation id → booking.
    reservations: HashMap<String, u64>,
    notifications: HashMap<String, u64>,
    /// Executions of each method, attempts and redeliveries included.
    executions: HashMap<&'static str, u64>,
    transient_failures: u64,
}

/// The side effects of the booking services, as a bank and two inventories would record them.
#[derive(Clone)]
pub struct Ledger {
    books: Arc<Mutex<Books>>,
    rates: FailureRates,
    seed: u64,
}

/// The result of checking the books against the workflows' outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Bookings that completed and were charged exactly once with flight and hotel held.
    pub booked_ok: u64,
    /// Compensated bookings with nothing left booked and the payment (if any) refunded.
    pub compensated_ok: u64,
    /// Every discrepancy found.
    pub problems: Vec<String>,
    /// Service method executions (attempts and redeliveries included).
    pub executions: u64,
    /// Attempts that failed transiently and were retried.
    pub transient_failures: u64,
}

impl Ledger {
    /// An empty ledger with the given failure rates; `seed` varies which bookings fail.
    pub fn new(rates: FailureRates, seed: u64) -> Self {
        Self {
            books: Arc::default(),
            rates,
            seed,
        }
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an execution and decides whether this attempt fails transiently.
    fn attempt(&self, method: &'static str) -> (String, bool) {
        let ctx = TaskContext::current();
        let key = ctx.idempotency_key();
        let roll = chance(self.seed, &[text_hash(&key), u64::from(ctx.attempt)]);
        let mut books = self.books();
        *books.executions.entry(method).or_default() += 1;
        let transient = roll < self.rates.transient;
        if transient {
            books.transient_failures += 1;
        }
        (key, transient)
    }

    fn business(&self, booking: u64, step: u64, rate: f64) -> bool {
        chance(self.seed, &[booking, step]) < rate
    }

    /// Checks the books: `outcomes` maps each booking to how its workflow ended (`None` if it
    /// failed or was lost).
    pub fn audit(&self, outcomes: &HashMap<u64, Option<BookingOutcome>>) -> Audit {
        let books = self.books();
        let mut audit = Audit {
            executions: books.executions.values().sum(),
            transient_failures: books.transient_failures,
            ..Audit::default()
        };
        let mut charges: HashMap<u64, Vec<&String>> = HashMap::new();
        for (id, (booking, _)) in &books.charges {
            charges.entry(*booking).or_default().push(id);
        }
        let mut live_tickets: HashMap<u64, u32> = HashMap::new();
        for (booking, cancelled) in books.tickets.values() {
            if !cancelled {
                *live_tickets.entry(*booking).or_default() += 1;
            }
        }
        let mut reservations: HashMap<u64, u32> = HashMap::new();
        for booking in books.reservations.values() {
            *reservations.entry(*booking).or_default() += 1;
        }
        for (booking, outcome) in outcomes {
            let charged = charges.get(booking).map(Vec::as_slice).unwrap_or_default();
            let refunded = charged.iter().filter(|c| books.refunds.contains_key(**c)).count();
            let tickets = live_tickets.get(booking).copied().unwrap_or(0);
            let rooms = reservations.get(booking).copied().unwrap_or(0);
            match outcome {
                Some(BookingOutcome::Booked { .. }) => {
                    if charged.len() == 1 && refunded == 0 && tickets == 1 && rooms == 1 {
                        audit.booked_ok += 1;
                    } else {
                        audit.problems.push(format!(
                            "booking {booking} completed but has {} charges, {refunded} refunds, {tickets} tickets, {rooms} rooms",
                            charged.len()
                        ));
                    }
                }
                Some(BookingOutcome::Compensated { reason }) => {
                    if charged.len() == refunded && charged.len() <= 1 && tickets == 0 && rooms == 0 {
                        audit.compensated_ok += 1;
                    } else {
                        audit.problems.push(format!(
                            "booking {booking} compensated ({reason}) but has {} charges, {refunded} refunds, {tickets} tickets, {rooms} rooms",
                            charged.len()
                        ));
                    }
                }
                None => audit.problems.push(format!("booking {booking} did not finish")),
            }
        }
        audit
    }
}

impl Payment for Ledger {
    async fn charge(&self, request: BookingRequest) -> Result<Receipt, PaymentError> {
        let (key, transient) = self.attempt("Payment.charge");
        if transient {
            return Err(PaymentError::Unavailable);
        }
        if self.business(request.booking, 1, self.rates.declined) {
            return Err(PaymentError::Declined("insufficient funds".into()));
        }
        // The task id is the idempotency key: a repeated attempt finds the charge it made.
        self.books()
            .charges
            .entry(key.clone())
            .or_insert((request.booking, request.amount_cents));
        Ok(Receipt {
            booking: request.booking,
            charge_id: key,
            amount_cents: request.amount_cents,
        })
    }

    async fn refund(&self, receipt: Receipt) -> Result<(), PaymentError> {
        let (_, transient) = self.attempt("Payment.refund");
        if transient {
            return Err(PaymentError::Unavailable);
        }
        self.books()
            .refunds
            .entry(receipt.charge_id)
            .or_insert(receipt.amount_cents);
        Ok(())
    }
}

impl Flights for Ledger {
    async fn book(&self, request: BookingRequest) -> Result<Ticket, InventoryError> {
        let (key, transient) = self.attempt("Flights.book");
        if transient {
            return Err(InventoryError::Unavailable);
        }
        if self.business(request.booking, 2, self.rates.flight_sold_out) {
            return Err(InventoryError::SoldOut);
        }
        self.books()
            .tickets
            .entry(key.clone())
            .or_insert((request.booking, false));
        Ok(Ticket {
            booking: request.booking,
            ticket_id: key,
        })
    }

    async fn cancel(&self, ticket: Ticket) -> Result<(), InventoryError> {
        let (_, transient) = self.attempt("Flights.cancel");
        if transient {
            return Err(InventoryError::Unavailable);
        }
        if let Some(entry) = self.books().tickets.get_mut(&ticket.ticket_id) {
            entry.1 = true;
        }
        Ok(())
    }
}

impl Hotels for Ledger {
    async fn book(&self, request: BookingRequest) -> Result<Reservation, InventoryError> {
        let (key, transient) = self.attempt("Hotels.book");
        if transient {
            return Err(InventoryError::Unavailable);
        }
        if self.business(request.booking, 3, self.rates.hotel_sold_out) {
            return Err(InventoryError::SoldOut);
        }
        self.books().reservations.entry(key.clone()).or_insert(request.booking);
        Ok(Reservation {
            booking: request.booking,
            reservation_id: key,
        })
    }
}

impl Notifications for Ledger {
    async fn notify(&self, _customer: String, _message: String) -> Result<(), String> {
        let (key, transient) = self.attempt("Notifications.notify");
        if transient {
            return Err("mail server unavailable".into());
        }
        *self.books().notifications.entry(key).or_default() += 1;
        Ok(())
    }
}

/// The request of booking number `n`.
pub fn request(n: u64) -> BookingRequest {
    BookingRequest {
        booking: n,
        customer: format!("customer-{}", n % 97),
        amount_cents: 10_000 + (n % 50) * 1_000,
        flight: format!("BT{}", 100 + n % 400),
        hotel: format!("Hotel {}", n % 30),
    }
}

/// Hosts the booking services and workflow on an embedded builder, with a retry policy that
/// absorbs transient failures quickly.
pub fn embedded(ledger: &Ledger, builder: baton::EmbeddedBuilder) -> baton::EmbeddedBuilder {
    let options = baton::ServiceOptions::with_retry(baton::RetryPolicy {
        max_attempts: 12,
        initial_delay: std::time::Duration::from_millis(5),
        max_delay: std::time::Duration::from_millis(200),
        multiplier: 2.0,
        jitter: 0.3,
        ..baton::RetryPolicy::default()
    });
    builder
        .service_with(PaymentService::new(ledger.clone()), options.clone())
        .service_with(FlightsService::new(ledger.clone()), options.clone())
        .service_with(HotelsService::new(ledger.clone()), options.clone())
        .service_with(NotificationsService::new(ledger.clone()), options)
        .workflow::<Booking>()
}
