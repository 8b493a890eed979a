//! Per-caller request rates under `/api/`: each caller may send `api.rate_limit_per_sec`
//! requests a second on average, in bursts of up to `api.rate_limit_burst`; more get 429 with
//! `Retry-After`. A caller is the configured token it presents, or else its address, so
//! unknown tokens cannot be tried faster than the address may send (the limit runs before the
//! token is checked).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use baton_config::ApiToken;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::problem::Problem;

/// Forget callers that are back to a full burst every this many requests, so the table holds
/// only recent callers.
const SWEEP_EVERY: u64 = 4096;

/// Who a request counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Caller {
    /// The configured token at this index in `api.tokens`.
    Token(usize),
    /// A caller without a configured token, by address.
    Address(std::net::IpAddr),
    /// No address is known (a request not from a socket, as in tests).
    Unknown,
}

/// The limiter, shared by every request of one API.
#[derive(Clone)]
pub struct RateLimit {
    inner: Option<Arc<Limiter>>,
}

struct Limiter {
    per_second: u32,
    limiter: DefaultKeyedRateLimiter<Caller>,
    tokens: Vec<ApiToken>,
    requests: AtomicU64,
}

impl RateLimit {
    /// `per_second` requests a second per caller in bursts of `burst`; 0 turns limits off.
    pub fn new(per_second: u32, burst: u32, tokens: Vec<ApiToken>) -> Self {
        let inner = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            Arc::new(Limiter {
                per_second,
                limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
                tokens,
                requests: AtomicU64::new(0),
            })
        });
        Self { inner }
    }

    /// Counts a request of a caller presenting `authorization` from `address`: `Ok`, or the
    /// 429 to answer with.
    fn admit(&self, authorization: Option<&str>, address: Option<SocketAddr>) -> Result<(), Box<Response>> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        if inner.requests.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            inner.limiter.retain_recent();
        }
        let presented = authorization.and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        let caller = presented
            .and_then(|p| {
                inner
                    .tokens
                    .iter()
                    .position(|t| crate::auth::constant_time_eq(t.token.as_bytes(), p.as_bytes()))
            })
            .map(Caller::Token)
            .or_else(|| address.map(|a| Caller::Address(a.ip())))
            .unwrap_or(Caller::Unknown);
        inner.limiter.check_key(&caller).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "more than {} requests a second from this caller (api.rate_limit_per_sec); retry in {seconds} s",
                    inner.per_second
                ),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Box::new(response)
        })
    }
}

/// The middleware applying [`RateLimit`].
pub async fn limit(State(limit): State<RateLimit>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a);
    match limit.admit(authorization, address) {
        Ok(()) => next.run(request).await,
        Err(response) => *response,
    }
}

#[cfg(test)]
mod tests {
    use baton_config::ApiRole;

    use super::*;

    fn token(value: &str) -> ApiToken {
        ApiToken {
            token: value.into(),
            role: ApiRole::Reader,
        }
    }

    fn address(last: u8) -> Option<SocketAddr> {
        Some(SocketAddr::from(([10, 0, 0, last], 40_000)))
    }

    #[test]
    fn a_caller_over_its_burst_gets_429_with_retry_after_and_others_do_not() {
        let limit = RateLimit::new(1, 3, vec![token("token-a-0123456789")]);
        for _ in 0..3 {
            assert!(limit.admit(None, address(1)).is_ok());
        }
        let refused = limit.admit(None, address(1)).expect_err("over the burst");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()),
            Some("1")
        );
        // Another address, and a configured token from the same address, have their own.
        assert!(limit.admit(None, address(2)).is_ok());
        assert!(limit.admit(Some("Bearer token-a-0123456789"), address(1)).is_ok());
        // An unknown token counts against the address.
        assert!(limit.admit(Some("Bearer guess"), address(1)).is_err());
    }

    #[test]
    fn a_rate_of_zero_admits_everything() {
        let limit = RateLimit::new(0, 0, Vec::new());
        assert!((0..10_000).all(|_| limit.admit(None, None).is_ok()));
    }
}
