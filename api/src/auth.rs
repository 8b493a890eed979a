//! Bearer tokens with two roles: readers may read, operators may also change things. Every
//! request under `/api/` is checked; a `GET` needs a reader's or an operator's token, anything
//! else an operator's.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use baton_config::{ApiRole, ApiToken};

use crate::problem::Problem;

/// The tokens accepted.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    tokens: Vec<ApiToken>,
}

impl Auth {
    /// Accepts these tokens; none means no credentials are asked for.
    pub fn new(tokens: Vec<ApiToken>) -> Self {
        Self { tokens }
    }

    /// Whether credentials are asked for.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The role of a presented token, compared in constant time per token.
    fn role_of(&self, presented: &str) -> Option<ApiRole> {
        self.tokens
            .iter()
            .find(|t| constant_time_eq(t.token.as_bytes(), presented.as_bytes()))
            .map(|t| t.role)
    }

    /// Decides a request: `Ok` to go on, or the problem to answer with.
    pub fn check(&self, method: &Method, authorization: Option<&str>) -> Result<(), Problem> {
        if !self.enabled() {
            return Ok(());
        }
        let Some(value) = authorization else {
            return Err(Problem::unauthorized(
                "this API needs a token: send `Authorization: Bearer <token>`",
            ));
        };
        let Some(token) = value.strip_prefix("Bearer ").map(str::trim) else {
            return Err(Problem::unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        };
        let Some(role) = self.role_of(token) else {
            return Err(Problem::unauthorized("the token is not one of api.tokens"));
        };
        let reads = matches!(*method, Method::GET | Method::HEAD);
        match role {
            ApiRole::Operator => Ok(()),
            ApiRole::Reader if reads => Ok(()),
            ApiRole::Reader => Err(Problem::forbidden(format!(
                "a reader's token cannot {method} here: this changes instances or dead letters and needs an operator's token"
            ))),
        }
    }
}

/// Whether two byte strings are equal, in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware applying [`Auth::check`].
pub async fn require(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.check(request.method(), authorization) {
        Ok(()) => next.run(request).await,
        Err(problem) => problem.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(vec![
            ApiToken {
                token: "reader-token-0123456789".into(),
                role: ApiRole::Reader,
            },
            ApiToken {
                token: "operator-token-0123456789".into(),
                role: ApiRole::Operator,
            },
        ])
    }

    #[test]
    fn readers_read_and_operators_also_change() {
        let auth = auth();
        assert!(auth.check(&Method::GET, Some("Bearer reader-token-0123456789")).is_ok());
        assert_eq!(
            auth.check(&Method::POST, Some("Bearer reader-token-0123456789"))
                .map_err(|p| p.status),
            Err(403)
        );
        assert!(
            auth.check(&Method::POST, Some("Bearer operator-token-0123456789"))
                .is_ok()
        );
        assert!(
            auth.check(&Method::DELETE, Some("Bearer operator-token-0123456789"))
                .is_ok()
        );
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_unauthorized() {
        let auth = auth();
        for header in [
            None,
            Some("reader-token-0123456789"),
            Some("Bearer nope"),
            Some("Basic abc"),
        ] {
            assert_eq!(
                auth.check(&Method::GET, header).map_err(|p| p.status),
                Err(401),
                "{header:?}"
            );
        }
        assert!(Auth::default().check(&Method::POST, None).is_ok(), "no tokens: open");
    }
}
