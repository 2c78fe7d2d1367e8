//! The web dashboard, served by the API at `/` (the JSON API is under `/v1`).
//! Server-rendered HTML (maud: escaped by construction) with one small script
//! of our own for live updates, both compiled into the binary: no Node
//! toolchain, no CDN, nothing fetched at run time.
//!
//! Every request passes [`guard`]: it finds the session, applies the API's
//! read rule (pages need sign-in with the `read` role when reads are closed),
//! rate-limits like the API, and refuses any form that does not carry the
//! session's CSRF token. Actions are sent as the signed-in principal's
//! commands, which the services verify again.

mod actions;
mod assets;
mod fleet;
mod job;
pub mod jobs;
mod layout;
pub mod live;
pub mod session;
mod submit;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use skynet_contract::principal::{Principal, PrincipalRole};

use crate::error::ApiError;
use crate::guard::Caller;
use crate::state::AppState;
use session::{LOGIN_COOKIE, SESSION_COOKIE, cookie, same_secret};

/// The dashboard's routes (behind [`guard`]).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(jobs::page))
        .route("/jobs/{id}", get(job::page))
        .route("/jobs/{id}/steps/{n}/output", get(crate::routes::jobs::output))
        .route("/jobs/{id}/{command}", post(actions::one))
        .route("/jobs/cancel", post(actions::bulk_cancel))
        .route("/approvals", get(actions::approvals))
        .route("/executors", get(fleet::executors))
        .route("/alerts", get(fleet::alerts))
        .route("/submit", get(submit::form).post(submit::post))
        .route("/login", get(layout::login_form).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/live/jobs", get(live::jobs))
        .route("/live/jobs/{id}", get(live::job))
        .route("/assets/{name}", get(assets::serve))
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

/// Who is looking: a signed-in principal, or nobody (open reads).
#[derive(Debug, Clone, Default)]
pub struct Who(pub Option<Viewer>);

/// A signed-in principal and its session.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub caller: Caller,
    pub session: String,
    pub csrf: String,
}

impl Who {
    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_ref().map(|v| &v.caller.principal)
    }

    pub fn may(&self, role: PrincipalRole) -> bool {
        self.principal().is_some_and(|p| p.has(role))
    }
}

/// An error shown as a page (the API's problem, in HTML).
#[derive(Debug)]
pub struct UiError(pub ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError(e)
    }
}

impl From<sqlx::Error> for UiError {
    fn from(e: sqlx::Error) -> Self {
        UiError(ApiError::from(e))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status.is_server_error() {
            tracing::warn!(service = "api", code = self.0.code(), error = %self.0, "dashboard request failed");
        }
        (status, layout::error_page(status, &self.0.to_string())).into_response()
    }
}

/// Paths anyone may request: the sign-in form and the static files.
fn public(path: &str) -> bool {
    path == "/login" || path.starts_with("/assets/")
}

/// Session, read rule, rate limit and CSRF for every dashboard request.
pub async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match check(&s, req).await {
        Ok(req) => secure(next.run(req).await),
        Err(resp) => secure(resp),
    }
}

async fn check(s: &AppState, mut req: Request) -> Result<Request, Response> {
    let mut who = Who::default();
    if let Some(id) = cookie(req.headers(), SESSION_COOKIE)
        && let Some(session) = s.sessions.get(&id)
    {
        match s.principals.verify(&session.token).await {
            Ok(Some(principal)) => {
                let caller = Caller { principal, token: session.token };
                who = Who(Some(Viewer { caller, session: id, csrf: session.csrf }));
            }
            // The token was revoked: so is every session made from it.
            Ok(None) => s.sessions.remove(&id),
            Err(e) => return Err(UiError(ApiError::Unavailable(format!("principals: {e}"))).into_response()),
        }
    }
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    let key = who.principal().map_or_else(|| format!("ip:{peer}"), |p| format!("principal:{}", p.name));
    s.limiter.check(key).map_err(|e| UiError(e).into_response())?;
    let path = req.uri().path().to_owned();
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if !public(&path) {
        match who.principal() {
            None if !reads || !s.config.open_reads => {
                let back = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let next = if reads { back } else { "/" };
                let to = format!(
                    "/login?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                return Err(Redirect::to(&to).into_response());
            }
            Some(p) if reads && !s.config.open_reads && !p.has(PrincipalRole::Read) => {
                let e = ApiError::Forbidden(format!("{} needs the read role to see the dashboard", p.name));
                return Err(UiError(e).into_response());
            }
            _ => {}
        }
    }
    if !reads {
        let expected =
            if path == "/login" { cookie(req.headers(), LOGIN_COOKIE) } else { who.0.as_ref().map(|v| v.csrf.clone()) };
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, s.config.body_limit)
            .await
            .map_err(|_| UiError(ApiError::TooLarge("the form exceeds the size limit".into())).into_response())?;
        let sent = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
        if !matches!((&expected, &sent), (Some(e), Some(t)) if same_secret(e, t)) {
            let e = ApiError::Forbidden(
                "this form is missing its security token or it is stale (CSRF); reload the page and try again".into(),
            );
            return Err(UiError(e).into_response());
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    req.extensions_mut().insert(who);
    Ok(req)
}

/// Headers every dashboard response carries: scripts, styles and connections
/// only from here (an injected `<script>` would not run even if one got
/// through the escaping), no framing, no sniffing, no referrer off-site.
fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A form's fields, repeated keys kept (bulk actions send many `job`s).
pub fn fields(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The first value of `name` in a form, trimmed; empty is none.
pub fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Where to go after signing in: only a path on this site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        // Browsers drop tabs and newlines from a URL, so `/\t/evil` is `//evil`.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') =>
        {
            n.to_owned()
        }
        _ => "/".into(),
    }
}

/// 303 to `to` (after a form).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn sign_in_goes_back_only_to_this_site() {
        assert_eq!(safe_next(Some("/jobs/1?x=2")), "/jobs/1?x=2");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
