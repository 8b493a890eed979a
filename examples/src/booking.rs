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
    /// How long the fare is held between the charge and the flight booking, in milliseconds:
    /// a durable timer, so a booking waits it out across crashes (0: no hold, no timer).
    #[serde(default)]
    pub hold_ms: u64,
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

        if request.hold_ms > 0 {
            ctx.sleep(std::time::Duration::from_millis(request.hold_ms)).await;
        }

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

/// A snapshot of the books: every effect the services made, keyed by the task that made it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Books {
    /// charge id → (booking, amount); one entry per effective charge.
    pub charges: HashMap<String, (u64, u64)>,
    /// Refunded charge ids → amount.
    pub refunds: HashMap<String, u64>,
    /// ticket id → (booking, cancelled).
    pub tickets: HashMap<String, (u64, bool)>,
    /// reservation id → booking.
    pub reservations: HashMap<String, u64>,
    /// Notifications sent, by task.
    pub notifications: HashMap<String, u64>,
    /// Executions of each method, attempts and redeliveries included.
    pub executions: HashMap<String, u64>,
    /// Attempts that failed transiently.
    pub transient_failures: u64,
}

/// Where the services record their effects. Every record is idempotent by its key (the task
/// id), as a bank or an inventory keyed by request id would be.
#[async_trait::async_trait]
pub trait Bookkeeper: Clone + Send + Sync + 'static {
    /// Counts one execution of a method, and whether it failed transiently.
    async fn count(&self, method: &'static str, transient: bool) -> Result<(), String>;
    /// Records a charge (once per key).
    async fn charge(&self, key: &str, booking: u64, amount: u64) -> Result<(), String>;
    /// Records a refund of a charge (once per charge).
    async fn refund(&self, charge_id: &str, amount: u64) -> Result<(), String>;
    /// Records a ticket (once per key).
    async fn ticket(&self, key: &str, booking: u64) -> Result<(), String>;
    /// Marks a ticket cancelled.
    async fn cancel_ticket(&self, ticket_id: &str) -> Result<(), String>;
    /// Records a reservation (once per key).
    async fn reserve(&self, key: &str, booking: u64) -> Result<(), String>;
    /// Records a notification (once per key).
    async fn notify(&self, key: &str) -> Result<(), String>;
    /// Everything recorded so far.
    async fn snapshot(&self) -> Result<Books, String>;
}

/// Books kept in this process's memory (the embedded demo and tests).
#[derive(Clone, Default)]
pub struct MemoryBooks {
    books: Arc<Mutex<Books>>,
}

impl MemoryBooks {
    fn lock(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl Bookkeeper for MemoryBooks {
    async fn count(&self, method: &'static str, transient: bool) -> Result<(), String> {
        let mut books = self.lock();
        *books.executions.entry(method.to_string()).or_default() += 1;
        books.transient_failures += u64::from(transient);
        Ok(())
    }
    async fn charge(&self, key: &str, booking: u64, amount: u64) -> Result<(), String> {
        self.lock().charges.entry(key.to_string()).or_insert((booking, amount));
        Ok(())
    }
    async fn refund(&self, charge_id: &str, amount: u64) -> Result<(), String> {
        self.lock().refunds.entry(charge_id.to_string()).or_insert(amount);
        Ok(())
    }
    async fn ticket(&self, key: &str, booking: u64) -> Result<(), String> {
        self.lock().tickets.entry(key.to_string()).or_insert((booking, false));
        Ok(())
    }
    async fn cancel_ticket(&self, ticket_id: &str) -> Result<(), String> {
        if let Some(entry) = self.lock().tickets.get_mut(ticket_id) {
            entry.1 = true;
        }
        Ok(())
    }
    async fn reserve(&self, key: &str, booking: u64) -> Result<(), String> {
        self.lock().reservations.entry(key.to_string()).or_insert(booking);
        Ok(())
    }
    async fn notify(&self, key: &str) -> Result<(), String> {
        *self.lock().notifications.entry(key.to_string()).or_default() += 1;
        Ok(())
    }
    async fn snapshot(&self) -> Result<Books, String> {
        Ok(self.lock().clone())
    }
}

#[cfg(feature = "cluster")]
mod redis_books;
#[cfg(feature = "cluster")]
pub use redis_books::RedisBooks;

/// The booking services: a bank and two inventories recording their effects in `K`, with
/// injected failures.
#[derive(Clone)]
pub struct Ledger<K = MemoryBooks> {
    books: K,
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
    /// Effects made more than once for one booking (extra charges, tickets, rooms).
    pub duplicated_effects: u64,
    /// Service method executions (attempts and redeliveries included).
    pub executions: u64,
    /// Attempts that failed transiently and were retried.
    pub transient_failures: u64,
}

impl Ledger<MemoryBooks> {
    /// A ledger in memory with the given failure rates; `seed` varies which bookings fail.
    pub fn new(rates: FailureRates, seed: u64) -> Self {
        Self::with_books(MemoryBooks::default(), rates, seed)
    }
}

impl<K: Bookkeeper> Ledger<K> {
    /// A ledger recording into `books`.
    pub fn with_books(books: K, rates: FailureRates, seed: u64) -> Self {
        Self { books, rates, seed }
    }

    /// Counts an execution and decides whether this attempt fails transiently.
    async fn attempt(&self, method: &'static str) -> Result<(String, bool), String> {
        let ctx = TaskContext::current();
        let key = ctx.idempotency_key();
        let roll = chance(self.seed, &[text_hash(&key), u64::from(ctx.attempt)]);
        let transient = roll < self.rates.transient;
        self.books.count(method, transient).await?;
        Ok((key, transient))
    }

    fn business(&self, booking: u64, step: u64, rate: f64) -> bool {
        chance(self.seed, &[booking, step]) < rate
    }

    /// Checks the books: `outcomes` maps each booking to how its workflow ended (`None` if it
    /// failed or was lost).
    pub async fn audit(&self, outcomes: &HashMap<u64, Option<BookingOutcome>>) -> Result<Audit, String> {
        Ok(audit_books(&self.books.snapshot().await?, outcomes))
    }
}

/// Checks a snapshot of the books against the workflows' outcomes.
pub fn audit_books(books: &Books, outcomes: &HashMap<u64, Option<BookingOutcome>>) -> Audit {
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
    let mut all_tickets: HashMap<u64, u32> = HashMap::new();
    for (booking, cancelled) in books.tickets.values() {
        *all_tickets.entry(*booking).or_default() += 1;
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
        audit.duplicated_effects += (charged.len() as u64).saturating_sub(1)
            + u64::from(all_tickets.get(booking).copied().unwrap_or(0).saturating_sub(1))
            + u64::from(rooms.saturating_sub(1));
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

impl<K: Bookkeeper> Payment for Ledger<K> {
    async fn charge(&self, request: BookingRequest) -> Result<Receipt, PaymentError> {
        let (key, transient) = self
            .attempt("Payment.charge")
            .await
            .map_err(|_| PaymentError::Unavailable)?;
        if transient {
            return Err(PaymentError::Unavailable);
        }
        if self.business(request.booking, 1, self.rates.declined) {
            return Err(PaymentError::Declined("insufficient funds".into()));
        }
        // The task id is the idempotency key: a repeated attempt finds the charge it made.
        self.books
            .charge(&key, request.booking, request.amount_cents)
            .await
            .map_err(|_| PaymentError::Unavailable)?;
        Ok(Receipt {
            booking: request.booking,
            charge_id: key,
            amount_cents: request.amount_cents,
        })
    }

    async fn refund(&self, receipt: Receipt) -> Result<(), PaymentError> {
        let (_, transient) = self
            .attempt("Payment.refund")
            .await
            .map_err(|_| PaymentError::Unavailable)?;
        if transient {
            return Err(PaymentError::Unavailable);
        }
        self.books
            .refund(&receipt.charge_id, receipt.amount_cents)
            .await
            .map_err(|_| PaymentError::Unavailable)
    }
}

impl<K: Bookkeeper> Flights for Ledger<K> {
    async fn book(&self, request: BookingRequest) -> Result<Ticket, InventoryError> {
        let (key, transient) = self
            .attempt("Flights.book")
            .await
            .map_err(|_| InventoryError::Unavailable)?;
        if transient {
            return Err(InventoryError::Unavailable);
        }
        if self.business(request.booking, 2, self.rates.flight_sold_out) {
            return Err(InventoryError::SoldOut);
        }
        self.books
            .ticket(&key, request.booking)
            .await
            .map_err(|_| InventoryError::Unavailable)?;
        Ok(Ticket {
            booking: request.booking,
            ticket_id: key,
        })
    }

    async fn cancel(&self, ticket: Ticket) -> Result<(), InventoryError> {
        let (_, transient) = self
            .attempt("Flights.cancel")
            .await
            .map_err(|_| InventoryError::Unavailable)?;
        if transient {
            return Err(InventoryError::Unavailable);
        }
        self.books
            .cancel_ticket(&ticket.ticket_id)
            .await
            .map_err(|_| InventoryError::Unavailable)
    }
}

impl<K: Bookkeeper> Hotels for Ledger<K> {
    async fn book(&self, request: BookingRequest) -> Result<Reservation, InventoryError> {
        let (key, transient) = self
            .attempt("Hotels.book")
            .await
            .map_err(|_| InventoryError::Unavailable)?;
        if transient {
            return Err(InventoryError::Unavailable);
        }
        if self.business(request.booking, 3, self.rates.hotel_sold_out) {
            return Err(InventoryError::SoldOut);
        }
        self.books
            .reserve(&key, request.booking)
            .await
            .map_err(|_| InventoryError::Unavailable)?;
        Ok(Reservation {
            booking: request.booking,
            reservation_id: key,
        })
    }
}

impl<K: Bookkeeper> Notifications for Ledger<K> {
    async fn notify(&self, _customer: String, _message: String) -> Result<(), String> {
        let (key, transient) = self.attempt("Notifications.notify").await?;
        if transient {
            return Err("mail server unavailable".into());
        }
        self.books.notify(&key).await
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
        hold_ms: 0,
    }
}

/// The retry policy of the booking services: absorbs transient failures quickly.
pub fn service_options() -> baton::ServiceOptions {
    baton::ServiceOptions::with_retry(baton::RetryPolicy {
        max_attempts: 12,
        initial_delay: std::time::Duration::from_millis(5),
        max_delay: std::time::Duration::from_millis(200),
        multiplier: 2.0,
        jitter: 0.3,
        ..baton::RetryPolicy::default()
    })
}

/// Hosts the booking services and workflow on an embedded builder.
pub fn embedded<K: Bookkeeper>(ledger: &Ledger<K>, builder: baton::EmbeddedBuilder) -> baton::EmbeddedBuilder {
    let options = service_options();
    builder
        .service_with(PaymentService::new(ledger.clone()), options.clone())
        .service_with(FlightsService::new(ledger.clone()), options.clone())
        .service_with(HotelsService::new(ledger.clone()), options.clone())
        .service_with(NotificationsService::new(ledger.clone()), options)
        .workflow::<Booking>()
}

/// A worker hosting the booking services and workflow (for a worker process).
pub fn worker<K: Bookkeeper>(
    ledger: &Ledger<K>,
    config: baton::WorkerConfig,
) -> Result<baton::Worker, baton::WorkerError> {
    let options = service_options();
    baton::Worker::new(config)
        .service_with(PaymentService::new(ledger.clone()), options.clone())?
        .service_with(FlightsService::new(ledger.clone()), options.clone())?
        .service_with(HotelsService::new(ledger.clone()), options.clone())?
        .service_with(NotificationsService::new(ledger.clone()), options)?
        .with_workflow::<Booking>()
}

/// The services a booking worker hosts.
pub const SERVICES: [&str; 4] = ["Payment", "Flights", "Hotels", "Notifications"];
