//! Who may call what, and how often. Every bearer token belongs to a named
//! principal with roles (`skynet principal add`); each route needs a role
//! ([`required`]), and a request without a valid token answers 401, one whose
//! principal lacks the role 403. Rate limits are per principal once
//! authenticated and per client address before (so random tokens are limited
//! like no token); idle keys are forgotten.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use skynet_contract::principal::{Principal, PrincipalRole};

use crate::error::ApiError;
use crate::state::AppState;

/// Checks between two sweeps of idle keys.
const SWEEP_EVERY: u64 = 1024;

/// Keyed rate limiter that forgets idle keys.
pub struct Limiter {
    inner: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl Limiter {
    pub fn per_minute(n: u32) -> Limiter {
        let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        Limiter { inner: RateLimiter::keyed(Quota::per_minute(n)), checks: AtomicU64::new(0) }
    }

    /// Admits one request of `key`, or says how many seconds to wait.
    pub fn check(&self, key: String) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Keys whose quota is back to full carry no information: drop them.
            self.inner.retain_recent();
            self.inner.shrink_to_fit();
        }
        self.inner.check_key(&key).map_err(|not_until| {
            ApiError::RateLimited(not_until.wait_time_from(DefaultClock::default().now()).as_secs().max(1))
        })
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.inner.len()
    }
}

/// The authenticated caller, for handlers that act in its name.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// Forwarded in NATS commands, where the policy service verifies it again.
    pub token: String,
}

/// What a route needs: nothing (public), or any one of these roles.
pub fn required(method: &Method, path: &str, open_reads: bool) -> Option<&'static [PrincipalRole]> {
    use PrincipalRole as R;
    if matches!(path, "/v1" | "/v1/health" | "/openapi.json") {
        return None;
    }
    // POSTs that only compute an answer are reads.
    let read = matches!(*method, Method::GET | Method::HEAD)
        || (*method == Method::POST && matches!(path, "/v1/policy/check" | "/v1/plan" | "/v1/scheduler/diagnose"));
    if read {
        return (!open_reads).then_some(&[R::Read]);
    }
    let command = path.strip_prefix("/v1/jobs/").and_then(|rest| rest.rsplit('/').next());
    Some(match (path, command) {
        ("/v1/tasks" | "/v1/execute" | "/v1/report", _) => &[R::Submit],
        // Adding to memory is submitting; forgetting is an approver's.
        ("/v1/memory", _) if *method == Method::POST => &[R::Submit],
        // Muting alerts is an operator's, as approving is.
        ("/v1/alerts/silences", _) if *method == Method::POST => &[R::Approve],
        // So is pausing the initiative (or letting it go on).
        ("/v1/initiative/pause" | "/v1/initiative/resume", _) => &[R::Approve],
        (p, _) if *method == Method::DELETE && p.starts_with("/v1/memory/") => &[R::Approve],
        (_, Some("approve" | "deny")) => &[R::Approve],
        // A submitter may cancel its own job (the policy service checks whose).
        (_, Some("cancel")) => &[R::Submit, R::Approve],
        _ => &[R::Admin],
    })
}

/// The middleware: authenticate, authorise, then rate limit.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    let token = bearer(&req).map(str::to_owned).filter(|t| !t.is_empty());
    let principal = match &token {
        Some(t) => state.principals.verify(t).await.map_err(|e| ApiError::Unavailable(format!("principals: {e}")))?,
        None => None,
    };
    // Until a token proves who is calling, the address is the key: a flood of
    // random tokens is limited exactly like requests without one.
    let key = principal.as_ref().map_or_else(|| format!("ip:{peer}"), |p| format!("principal:{}", p.name));
    state.limiter.check(key)?;
    if let Some(roles) = required(req.method(), req.uri().path(), state.config.open_reads) {
        let Some(p) = &principal else { return Err(ApiError::Unauthorized) };
        if !roles.iter().any(|r| p.has(*r)) {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            return Err(ApiError::Forbidden(format!("{} needs the {} role", p.name, names.join(" or "))));
        }
    }
    if let (Some(principal), Some(token)) = (principal, token) {
        req.extensions_mut().insert(Caller { principal, token });
    }
    Ok(next.run(req).await)
}

/// The bearer token of a request (`Authorization: Bearer <t>`, or `X-API-Key`).
pub fn bearer(req: &Request) -> Option<&str> {
    let h = req.headers();
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(skynet_contract::principal::bearer_token)
        .or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use skynet_contract::principal::PrincipalRole as R;

    use super::required;

    #[test]
    fn routes_need_their_roles() {
        let post = Method::POST;
        assert_eq!(required(&Method::GET, "/v1/health", false), None);
        assert_eq!(required(&Method::GET, "/v1/jobs", false), Some(&[R::Read][..]));
        assert_eq!(required(&Method::GET, "/v1/jobs", true), None);
        assert_eq!(required(&post, "/v1/tasks", true), Some(&[R::Submit][..]));
        assert_eq!(required(&post, "/v1/jobs/x/approve", true), Some(&[R::Approve][..]));
        assert_eq!(required(&post, "/v1/jobs/x/cancel", true), Some(&[R::Submit, R::Approve][..]));
        assert_eq!(required(&Method::DELETE, "/v1/jobs/x", true), Some(&[R::Admin][..]));
        assert_eq!(required(&post, "/v1/memory", true), Some(&[R::Submit][..]));
        assert_eq!(required(&post, "/v1/alerts/silences", true), Some(&[R::Approve][..]));
        assert_eq!(required(&post, "/v1/initiative/pause", true), Some(&[R::Approve][..]));
        assert_eq!(required(&Method::GET, "/v1/initiative", false), Some(&[R::Read][..]));
        // The emergency stop is an administrator's.
        assert_eq!(required(&post, "/v1/system/pause", false), Some(&[R::Admin][..]));
        assert_eq!(required(&post, "/v1/system/resume", true), Some(&[R::Admin][..]));
        assert_eq!(required(&Method::GET, "/v1/system", false), Some(&[R::Read][..]));
        assert_eq!(required(&Method::GET, "/v1/alerts", false), Some(&[R::Read][..]));
        assert_eq!(required(&Method::DELETE, "/v1/memory/mem-1", true), Some(&[R::Approve][..]));
        assert_eq!(required(&Method::GET, "/v1/memory/search", false), Some(&[R::Read][..]));
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let l = super::Limiter::per_minute(600);
        for i in 0..5000 {
            let _ = l.check(format!("ip:10.0.{}.{}", i / 256, i % 256));
        }
        assert!(l.tracked() >= 5000);
        // A key is forgotten once its quota has refilled (100 ms at 600/min):
        // keep checking one key (which triggers sweeps) until the rest are gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while l.tracked() >= 100 {
            assert!(std::time::Instant::now() < deadline, "{} keys still tracked", l.tracked());
            for _ in 0..super::SWEEP_EVERY {
                let _ = l.check("ip:one".into());
            }
        }
    }
}
