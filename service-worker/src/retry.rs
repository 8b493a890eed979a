//! Retry policy for service tasks: exponential backoff with jitter, a maximum number of
//! attempts, and failure kinds that are never retried.

use std::time::Duration;

use baton_shared_schemas::{Failure, FailureKind};

/// When and how often a failed attempt is retried.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_delay: Duration,
    /// Upper bound of a delay.
    pub max_delay: Duration,
    /// Growth of the delay per attempt.
    pub multiplier: f64,
    /// Relative randomisation of each delay, from 0 (none) to 1 (±100 %).
    pub jitter: f64,
    /// Failure kinds that are never retried (in addition to errors the service marks as not
    /// retryable).
    pub non_retryable: Vec<FailureKind>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.25,
            non_retryable: vec![
                FailureKind::InvalidArguments,
                FailureKind::UnknownMethod,
                FailureKind::Serialization,
            ],
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RetryDecision {
    /// Run the next attempt after this delay.
    RetryAfter(Duration),
    /// Report the task as failed.
    GiveUp,
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Decides what follows failed attempt `attempt` (1-based). `unit_random` in `[0, 1)`
    /// drives the jitter, so the decision is a pure function.
    pub fn decide(&self, attempt: u32, failure: &Failure, unit_random: f64) -> RetryDecision {
        let retryable = failure.retryable && !self.non_retryable.contains(&failure.kind);
        if !retryable || attempt >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial_delay.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * (2.0 * unit_random.clamp(0.0, 1.0) - 1.0);
        let delay = (capped * (1.0 + jitter)).clamp(0.0, self.max_delay.as_secs_f64());
        RetryDecision::RetryAfter(Duration::from_secs_f64(delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> Failure {
        Failure {
            retryable: true,
            ..Failure::new(FailureKind::ServiceError, "unavailable")
        }
    }

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
            multiplier: 2.0,
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let delays: Vec<_> = (1..=5)
            .map(|a| match p.decide(a, &transient(), 0.5) {
                RetryDecision::RetryAfter(d) => d.as_millis(),
                RetryDecision::GiveUp => 0,
            })
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 700, 700]);
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let p = RetryPolicy {
            jitter: 0.5,
            initial_delay: Duration::from_millis(1_000),
            ..RetryPolicy::default()
        };
        for r in [0.0, 0.25, 0.5, 0.99] {
            let RetryDecision::RetryAfter(d) = p.decide(1, &transient(), r) else {
                panic!("retry")
            };
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_millis(1_500),
                "{d:?}"
            );
        }
    }

    #[test]
    fn retry_then_give_up_after_max_attempts() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(matches!(p.decide(1, &transient(), 0.1), RetryDecision::RetryAfter(_)));
        assert!(matches!(p.decide(2, &transient(), 0.1), RetryDecision::RetryAfter(_)));
        assert_eq!(p.decide(3, &transient(), 0.1), RetryDecision::GiveUp);
    }

    #[test]
    fn non_retryable_errors_and_kinds_are_not_retried() {
        let p = RetryPolicy::default();
        let business = Failure::new(FailureKind::ServiceError, "card declined");
        assert_eq!(p.decide(1, &business, 0.1), RetryDecision::GiveUp);
        let bad_args = Failure {
            retryable: true,
            ..Failure::new(FailureKind::InvalidArguments, "bad")
        };
        assert_eq!(p.decide(1, &bad_args, 0.1), RetryDecision::GiveUp);
        assert_eq!(RetryPolicy::never().decide(1, &transient(), 0.1), RetryDecision::GiveUp);
    }
}
