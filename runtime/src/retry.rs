//! Riding out a dependency outage: an operation that failed because Redis or the broker is
//! unreachable is tried again in place, with a short capped backoff, until it succeeds or the
//! process stops. Such a failure says nothing about the message being handled, so it must not
//! spend the message's redeliveries (which would dead-letter healthy work during an outage).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// An error that may go away by itself: a dependency is unreachable or timed out, as opposed
/// to input that fails the same way every time.
pub trait Transient {
    /// Whether trying the same operation again later may succeed.
    fn is_transient(&self) -> bool;
}

/// What an error says about the message whose handling met it; decides how the message is
/// settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A dependency is unreachable: the same message is tried again in place once it is back
    /// (left unsettled, for redelivery, if the process stops first).
    Transient,
    /// This attempt failed but a later one may not (another writer kept winning): the message
    /// is redelivered after the transport's backoff, and dead-lettered once its redeliveries
    /// are spent.
    Retryable,
    /// The message can never be handled (it contradicts what is stored, or cannot be
    /// encoded): it is dead-lettered at once with the reason.
    Poison,
}

/// Errors that say how their message is settled.
pub trait Classify: Transient {
    /// The class of this error. By default transient errors are [`ErrorClass::Transient`] and
    /// the others [`ErrorClass::Retryable`].
    fn class(&self) -> ErrorClass {
        if self.is_transient() {
            ErrorClass::Transient
        } else {
            ErrorClass::Retryable
        }
    }
}

impl Transient for std::convert::Infallible {
    fn is_transient(&self) -> bool {
        match *self {}
    }
}

/// For handlers that cannot fail.
impl Classify for std::convert::Infallible {}

/// Delays between attempts: `initial`, doubling, never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// What components use while a dependency is down: 50 ms doubling to 1 s, so work resumes
    /// within about a second of the dependency's return.
    pub const DEPENDENCY: Backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_secs(1),
    };

    /// The delay after `failures` consecutive failures (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// The retries of one operation through an outage. For operations that borrow their caller
/// mutably, where a closure would not do:
///
/// ```text
/// let mut outage = Outage::new("engine message", Backoff::DEPENDENCY, &shutdown);
/// let result = loop {
///     match self.process(&message).await {
///         Err(e) if outage.wait_after(&e).await => continue,
///         other => break other,
///     }
/// };
/// ```
pub struct Outage<'a> {
    what: &'a str,
    backoff: Backoff,
    shutdown: &'a CancellationToken,
    failures: u32,
}

impl<'a> Outage<'a> {
    /// No failure yet.
    pub fn new(what: &'a str, backoff: Backoff, shutdown: &'a CancellationToken) -> Self {
        Self {
            what,
            backoff,
            shutdown,
            failures: 0,
        }
    }

    /// After `error`: waits out the backoff and returns `true` when the operation should be
    /// tried again; returns `false` at once for an error that is not [`Transient`], and when
    /// `shutdown` is (or becomes) cancelled. The first failure of an outage is logged at warn,
    /// the others at debug.
    pub async fn wait_after<E: Transient + std::fmt::Display>(&mut self, error: &E) -> bool {
        if !error.is_transient() || self.shutdown.is_cancelled() {
            return false;
        }
        self.failures += 1;
        if self.failures == 1 {
            tracing::warn!(what = self.what, error = %error, "dependency unavailable; retrying until it is back");
        } else {
            tracing::debug!(what = self.what, error = %error, failures = self.failures, "still unavailable");
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(self.backoff.delay(self.failures)) => true,
        }
    }

    /// How many transient failures it has waited out.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                what = self.what,
                failures = self.failures,
                "dependency outage over for this operation"
            );
        }
    }
}

/// Runs `operation` until it succeeds, fails with an error that is not [`Transient`], or
/// `shutdown` is cancelled (then the last transient error is returned; callers leave their
/// message unsettled so it is redelivered later).
pub async fn retry_transient<T, E, F, Fut>(
    what: &str,
    backoff: Backoff,
    shutdown: &CancellationToken,
    mut operation: F,
) -> Result<T, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut outage = Outage::new(what, backoff, shutdown);
    loop {
        match operation().await {
            Err(e) if outage.wait_after(&e).await => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Failure {
        transient: bool,
    }

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transient={}", self.transient)
        }
    }

    impl Transient for Failure {
        fn is_transient(&self) -> bool {
            self.transient
        }
    }

    const FAST: Backoff = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(4),
    };

    #[test]
    fn delays_double_up_to_the_cap() {
        let delays: Vec<_> = (1..=6).map(|n| Backoff::DEPENDENCY.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![50, 100, 200, 400, 800, 1000]);
        assert_eq!(Backoff::DEPENDENCY.delay(u32::MAX), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result: Result<u32, Failure> = retry_transient("test", FAST, &CancellationToken::new(), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 3 { Err(Failure { transient: true }) } else { Ok(n) }
        })
        .await;
        assert_eq!(result.ok(), Some(3));
    }

    #[tokio::test]
    async fn a_permanent_failure_is_returned_at_once() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Failure> = retry_transient("test", FAST, &CancellationToken::new(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure { transient: false })
        })
        .await;
        assert!(matches!(result, Err(Failure { transient: false })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn shutdown_ends_the_retries_with_the_last_error() {
        let shutdown = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let result: Result<(), Failure> = retry_transient("test", FAST, &shutdown, || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 2 {
                shutdown.cancel();
            }
            Err(Failure { transient: true })
        })
        .await;
        assert!(matches!(result, Err(Failure { transient: true })));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
