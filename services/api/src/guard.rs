//! Who may call what, and how often: bearer-token auth for mutations (and for
//! reads when they are closed), and a per-client rate limit (the token, else
//! the peer address) answering 429 with `Retry-After`.

use std::net::SocketAddr;
use std::num::NonZeroU32;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::state::AppState;

/// Keyed rate limiter.
pub struct Limiter(DefaultKeyedRateLimiter<String>);

impl Limiter {
    pub fn per_minute(n: u32) -> Limiter {
        let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        Limiter(RateLimiter::keyed(Quota::per_minute(n)))
    }
}

/// The middleware: rate limit first (so unauthenticated floods are cheap), then auth.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let token = bearer(&req);
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    let key = token.map(|t| format!("token:{t}")).unwrap_or(format!("ip:{peer}"));
    if let Err(not_until) = state.limiter.0.check_key(&key) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return Err(ApiError::RateLimited(wait.as_secs().max(1)));
    }
    // POSTs that only compute an answer are reads.
    let read_only_post = matches!(req.uri().path(), "/v1/policy/check" | "/v1/plan" | "/v1/scheduler/diagnose");
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) && !read_only_post;
    let public = matches!(req.uri().path(), "/" | "/v1/health" | "/openapi.json");
    let needs_token = !public && (mutating || !state.config.open_reads);
    if needs_token && !authorized(&state.config.token, token) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

/// Whether the caller presented the configured token. With no token
/// configured, nothing is authorized (mutations are closed, not open).
pub fn authorized(configured: &str, presented: Option<&str>) -> bool {
    !configured.is_empty() && presented.is_some_and(|p| constant_time_eq(p.as_bytes(), configured.as_bytes()))
}

/// The bearer token of a request (`Authorization: Bearer <t>`, or `X-API-Key`).
pub fn bearer(req: &Request) -> Option<&str> {
    let h = req.headers();
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| &v[7..]))
        .or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens() {
        assert!(super::authorized("s3cret", Some("s3cret")));
        assert!(!super::authorized("s3cret", Some("s3cre")));
        assert!(!super::authorized("", Some("")), "no configured token authorizes nothing");
        assert!(!super::authorized("s3cret", None));
    }
}
