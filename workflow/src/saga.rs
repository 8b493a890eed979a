//! The saga helper: register a compensation after each step that succeeded; on failure, run
//! them in reverse order.

use std::future::Future;
use std::pin::Pin;

type Compensation = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<(), String>>>>>;

/// Compensations of the steps done so far.
///
/// ```text
/// let mut saga = Saga::new();
/// let receipt = payment.charge(request.clone()).await?;
/// saga.add({ let (payment, receipt) = (payment.clone(), receipt.clone());
///            move || async move { payment.refund(receipt).await.map_err(|e| e.to_string()) } });
/// …
/// if let Err(e) = flights.book(request).await { saga.compensate().await?; }
/// ```
#[derive(Default)]
pub struct Saga {
    compensations: Vec<(String, Compensation)>,
}

impl Saga {
    /// An empty saga.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers how to undo the step that just succeeded.
    pub fn add<F, Fut>(&mut self, compensation: F)
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<(), String>> + 'static,
    {
        self.add_named(format!("step {}", self.compensations.len() + 1), compensation);
    }

    /// Registers a named compensation (the name appears in errors).
    pub fn add_named<F, Fut>(&mut self, name: impl Into<String>, compensation: F)
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<(), String>> + 'static,
    {
        self.compensations
            .push((name.into(), Box::new(move || Box::pin(compensation()))));
    }

    /// How many compensations are registered.
    pub fn len(&self) -> usize {
        self.compensations.len()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.compensations.is_empty()
    }

    /// Runs every compensation, last registered first. All are attempted even if one fails;
    /// the failures are returned together.
    pub async fn compensate(self) -> Result<(), Vec<String>> {
        let mut failures = Vec::new();
        for (name, compensation) in self.compensations.into_iter().rev() {
            if let Err(e) = compensation().await {
                failures.push(format!("{name}: {e}"));
            }
        }
        if failures.is_empty() { Ok(()) } else { Err(failures) }
    }
}
