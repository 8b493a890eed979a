//! Monthly billing: on subscription, loop: wait for next month (a durable timer), read the
//! customer's consumption, request payment, create the invoice and email it. An `unsubscribe`
//! signal ends the loop after the month it names; `continue_as_new` restarts the workflow each
//! month so its history stays bounded however long the subscription lasts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton::{Channel, Either, TaskContext, Workflow, WorkflowContext, race};
use serde::{Deserialize, Serialize};

/// Stop billing after the given month (the subscription ends at that period's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsubscribe {
    /// The last month to bill (1-based).
    pub after_month: u32,
}

/// The channel customers unsubscribe on.
pub const UNSUBSCRIBE: Channel<Unsubscribe> = Channel::new("unsubscribe");

/// Where a subscription is; the input of each monthly run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Who is billed.
    pub customer: String,
    /// Months billed so far.
    pub months_billed: u32,
    /// Stop after this many months even without an unsubscription (the simulation's horizon).
    pub horizon: u32,
    /// The last month to bill, once the customer unsubscribed.
    pub stop_after: Option<u32>,
    /// Simulated length of a month.
    pub month_ms: u64,
}

/// How a subscription ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingSummary {
    /// Invoices issued.
    pub invoices: u32,
    /// Whether it ended by unsubscription (rather than reaching the horizon).
    pub unsubscribed: bool,
}

/// An invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// Invoice number (the creating task's id).
    pub number: String,
    /// Who.
    pub customer: String,
    /// Which month.
    pub month: u32,
    /// How much, in cents.
    pub amount_cents: u64,
}

/// Usage metering.
#[baton::service]
pub trait Usage {
    /// The customer's consumption in a month, in cents.
    async fn consumption(&self, customer: String, month: u32) -> Result<u64, String>;
}

/// Payments.
#[baton::service]
pub trait Billing {
    /// Requests payment of an amount.
    async fn request_payment(&self, customer: String, amount_cents: u64) -> Result<String, String>;
    /// Creates the invoice.
    async fn create_invoice(&self, customer: String, month: u32, amount_cents: u64) -> Result<Invoice, String>;
}

/// Email.
#[baton::service]
pub trait Mailer {
    /// Emails an invoice.
    async fn send_invoice(&self, invoice: Invoice) -> Result<(), String>;
}

/// The monthly billing workflow.
pub struct MonthlyBilling;

impl Workflow for MonthlyBilling {
    const NAME: &'static str = "MonthlyBilling";
    type Input = Subscription;
    type Output = BillingSummary;
    type Error = String;

    async fn run(ctx: WorkflowContext, mut sub: Subscription) -> Result<BillingSummary, String> {
        if let Some(last) = sub.stop_after.filter(|last| sub.months_billed >= *last) {
            return Ok(BillingSummary {
                invoices: last.min(sub.months_billed),
                unsubscribed: true,
            });
        }
        if sub.months_billed >= sub.horizon {
            return Ok(BillingSummary {
                invoices: sub.months_billed,
                unsubscribed: false,
            });
        }
        // Wait for the end of the month; an unsubscription may arrive meanwhile.
        let month_end = ctx.sleep(Duration::from_millis(sub.month_ms));
        if sub.stop_after.is_none() {
            if let Either::Left(signal) = race(ctx.receive(&UNSUBSCRIBE), month_end).await {
                let unsubscribe = signal.map_err(|e| e.to_string())?;
                sub.stop_after = Some(unsubscribe.after_month);
                // The month is not over yet: carry on waiting in the next run.
                return ctx.continue_as_new(&sub).await;
            }
        } else {
            month_end.await;
        }
        let month = sub.months_billed + 1;
        let usage = ctx.service::<UsageStub>();
        let billing = ctx.service::<BillingStub>();
        let mailer = ctx.service::<MailerStub>();
        let amount = usage
            .consumption(sub.customer.clone(), month)
            .await
            .map_err(|e| e.to_string())?;
        billing
            .request_payment(sub.customer.clone(), amount)
            .await
            .map_err(|e| e.to_string())?;
        let invoice = billing
            .create_invoice(sub.customer.clone(), month, amount)
            .await
            .map_err(|e| e.to_string())?;
        mailer.send_invoice(invoice).await.map_err(|e| e.to_string())?;
        sub.months_billed = month;
        ctx.continue_as_new(&sub).await
    }
}

#[derive(Default)]
struct Books {
    /// Invoice number → (customer, month).
    invoices: HashMap<String, (String, u32)>,
    /// Payment requests by task id.
    payments: HashMap<String, u64>,
    emails: HashMap<String, u32>,
}

/// The billing services, recording their effects once per task.
#[derive(Clone, Default)]
pub struct BillingLedger {
    books: Arc<Mutex<Books>>,
}

impl BillingLedger {
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Invoices issued per customer, and the months each covers.
    pub fn invoices_by_customer(&self) -> HashMap<String, Vec<u32>> {
        let mut by_customer: HashMap<String, Vec<u32>> = HashMap::new();
        for (customer, month) in self.books().invoices.values() {
            by_customer.entry(customer.clone()).or_default().push(*month);
        }
        for months in by_customer.values_mut() {
            months.sort_unstable();
        }
        by_customer
    }

    /// Payment requests made.
    pub fn payments(&self) -> usize {
        self.books().payments.len()
    }

    /// Invoices emailed.
    pub fn emails(&self) -> usize {
        self.books().emails.len()
    }
}

impl Usage for BillingLedger {
    async fn consumption(&self, customer: String, month: u32) -> Result<u64, String> {
        Ok(1_000 + (customer.len() as u64 * 37 + u64::from(month) * 11) % 5_000)
    }
}

impl Billing for BillingLedger {
    async fn request_payment(&self, _customer: String, amount_cents: u64) -> Result<String, String> {
        let key = TaskContext::current().idempotency_key();
        self.books().payments.entry(key.clone()).or_insert(amount_cents);
        Ok(key)
    }

    async fn create_invoice(&self, customer: String, month: u32, amount_cents: u64) -> Result<Invoice, String> {
        let number = TaskContext::current().idempotency_key();
        self.books()
            .invoices
            .entry(number.clone())
            .or_insert((customer.clone(), month));
        Ok(Invoice {
            number,
            customer,
            month,
            amount_cents,
        })
    }
}

impl Mailer for BillingLedger {
    async fn send_invoice(&self, invoice: Invoice) -> Result<(), String> {
        *self.books().emails.entry(invoice.number).or_default() += 1;
        Ok(())
    }
}

/// Hosts the billing services and workflow on an embedded builder.
pub fn embedded(ledger: &BillingLedger, builder: baton::EmbeddedBuilder) -> baton::EmbeddedBuilder {
    builder
        .service(UsageService::new(ledger.clone()))
        .service(BillingService::new(ledger.clone()))
        .service(MailerService::new(ledger.clone()))
        .workflow::<MonthlyBilling>()
}

/// The month customer `n` of a run unsubscribes after, if it does: every third customer, after
/// a month between 1 and `months - 1`.
pub fn unsubscribes_after(n: u32, months: u32) -> Option<u32> {
    (n % 3 == 0 && months > 1).then(|| 1 + n % (months - 1))
}
