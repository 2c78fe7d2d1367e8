//! What the dashboard changes: signing in and out, and approve / deny /
//! cancel (one job or many) as the signed-in principal's commands, which the
//! policy service verifies and records exactly as it does the API's. The
//! approvals page lists everything waiting, with those buttons.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, Response};
use bytes::Bytes;
use futures::StreamExt;
use maud::html;
use skynet_contract::commands;
use skynet_contract::principal::PrincipalRole;

use super::layout::{self, risk, short, text, time, when};
use super::session::{LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL, https, set_cookie};
use super::{UiError, Viewer, Who, field, fields, safe_next, see_other};
use crate::error::ApiError;
use crate::state::AppState;

/// Jobs cancelled by one bulk request at most.
const MAX_BULK: usize = 200;

/// `POST /login`: a valid token becomes a session.
pub async fn login(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, UiError> {
    let f = fields(&body);
    let next = field(&f, "next");
    let token = field(&f, "token").unwrap_or_default();
    let principal = s.principals.verify(&token).await.map_err(|e| ApiError::Unavailable(format!("principals: {e}")))?;
    let Some(principal) = principal else {
        tracing::info!(service = "api", "dashboard sign-in refused: unknown token");
        let e = "That token is not valid (unknown or revoked).";
        return Ok(layout::login_page(&headers, next.as_deref(), Some(e), StatusCode::UNAUTHORIZED));
    };
    tracing::info!(service = "api", principal = %principal.name, "dashboard sign-in");
    // A session this browser had is replaced, never kept beside the new one.
    if let Some(old) = super::session::cookie(&headers, SESSION_COOKIE) {
        s.sessions.remove(&old);
    }
    let id = s.sessions.create(token, &principal.name);
    let secure = https(&headers);
    let mut resp = see_other(&safe_next(next.as_deref()));
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, "/", SESSION_TTL, secure));
    h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", "/login", std::time::Duration::ZERO, secure));
    Ok(resp)
}

/// `POST /logout`: the session ends here, not only in this browser.
pub async fn logout(State(s): State<AppState>, Extension(who): Extension<Who>, headers: HeaderMap) -> Response {
    if let Some(v) = &who.0 {
        s.sessions.remove(&v.session);
    }
    let mut resp = see_other("/login");
    let gone = set_cookie(SESSION_COOKIE, "", "/", std::time::Duration::ZERO, https(&headers));
    resp.headers_mut().append(header::SET_COOKIE, gone);
    resp
}

fn viewer(who: &Who) -> Result<&Viewer, ApiError> {
    who.0.as_ref().ok_or(ApiError::Unauthorized)
}

/// `POST /jobs/{id}/{approve|deny|cancel}`.
pub async fn one(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    Path((id, command)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, UiError> {
    let v = viewer(&who)?;
    let job = super::job::parse(&id)?;
    let f = fields(&body);
    let token = v.caller.token.clone();
    let (subject, cmd) = match command.as_str() {
        "approve" => {
            let confirmation = field(&f, "confirmation");
            let c = commands::Approve { job_id: job, token, comment: field(&f, "comment"), confirmation };
            (commands::APPROVE, serde_json::to_value(c))
        }
        "deny" => {
            let reason = field(&f, "reason").unwrap_or_else(|| "denied from the dashboard".into());
            (commands::DENY, serde_json::to_value(commands::Deny { job_id: job, token, reason }))
        }
        "cancel" => {
            let reason = field(&f, "reason").unwrap_or_else(|| "cancelled from the dashboard".into());
            (commands::CANCEL, serde_json::to_value(commands::Cancel { job_id: job, token, reason }))
        }
        other => return Err(ApiError::NotFound(format!("no job command {other:?}")).into()),
    };
    let message = match s.command(subject, &cmd.unwrap_or_default()).await {
        Ok(reply) => format!("Job {}: {command} done. {}", short(&id), reply.message),
        Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => return Err(e.into()),
        // A refusal (not allowed, already decided, wrong confirmation) is news, not a failure page.
        Err(e) => format!("Job {}: {command} refused: {e}", short(&id)),
    };
    s.sessions.flash(&v.session, message);
    let back = field(&f, "back").filter(|b| b == "/approvals").unwrap_or_else(|| format!("/jobs/{job}"));
    Ok(see_other(&back))
}

/// `POST /jobs/cancel`: cancels every selected job (`job` repeated).
pub async fn bulk_cancel(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    body: Bytes,
) -> Result<Response, UiError> {
    let v = viewer(&who)?;
    let f = fields(&body);
    // Every id checked before anything is sent; each job once.
    let mut jobs = Vec::new();
    for (_, id) in f.iter().filter(|(k, _)| k == "job") {
        let job = super::job::parse(id)?;
        if !jobs.contains(&job) {
            jobs.push(job);
        }
    }
    if jobs.is_empty() {
        s.sessions.flash(&v.session, "No job was selected.".into());
        return Ok(see_other("/approvals"));
    }
    if jobs.len() > MAX_BULK {
        return Err(ApiError::Invalid(format!("at most {MAX_BULK} jobs at once")).into());
    }
    let reason = field(&f, "reason").unwrap_or_else(|| "cancelled from the dashboard (bulk)".into());
    let (mut done, mut refused) = (0, Vec::new());
    // A few at a time: a slow policy service costs the request less.
    let sends: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let cmd = commands::Cancel { job_id: job, token: v.caller.token.clone(), reason: reason.clone() };
            let s = s.clone();
            async move { (job, s.command(commands::CANCEL, &cmd).await) }
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(sends).buffer_unordered(8).collect().await;
    for (job, result) in results {
        match result {
            Ok(_) => done += 1,
            Err(e) => refused.push(format!("{}: {e}", short(&job.to_string()))),
        }
    }
    let mut message = format!("Cancelled {done} job(s).");
    if !refused.is_empty() {
        message.push_str(&format!(" Refused: {}", refused.join("; ")));
    }
    s.sessions.flash(&v.session, message);
    Ok(see_other("/approvals"))
}

/// `GET /approvals`: every job waiting for a decision, oldest first.
pub async fn approvals(State(s): State<AppState>, Extension(who): Extension<Who>) -> Result<Html<String>, UiError> {
    let rows: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT to_jsonb(j) FROM jobs j WHERE status = 'awaiting_approval' ORDER BY created_at LIMIT 500",
    )
    .fetch_all(&s.db)
    .await?;
    let approver = who.may(PrincipalRole::Approve);
    let csrf = who.0.as_ref().map(|v| v.csrf.clone()).unwrap_or_default();
    let body = html! {
        h1 { "Approvals" }
        @if rows.is_empty() { p.muted { "Nothing is waiting for approval." } }
        @if who.0.is_none() { p.muted { a href="/login?next=/approvals" { "Sign in" } " to decide." } }
        @for row in &rows {
            @let id = text(row, "id").unwrap_or_default();
            @let admin = super::job::needs_confirmation(text(row, "risk"));
            article.waiting id={"wait-" (id)} {
                h2 { a href={"/jobs/" (id)} { (text(row, "intent").unwrap_or_default()) } }
                p.meta { code { (short(id)) } " · " (risk(text(row, "risk"))) " · requested by "
                    strong { (text(row, "requested_by").unwrap_or("—")) } " · " (time(when(row, "created_at"))) }
                @if let Some(reasons) = row.get("policy_reasons").and_then(|v| v.as_array()) {
                    ul { @for r in reasons { li { (r.as_str().unwrap_or_default()) } } }
                }
                @if approver {
                    div.actions {
                        label.pick { input type="checkbox" name="job" value=(id) form="bulk"; " select" }
                        form method="post" action={"/jobs/" (id) "/approve"} {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="back" value="/approvals";
                            @if admin { label { "Confirmation phrase and " code { (short(id)) } " (e.g. " code { "execute " (short(id)) } ")" input name="confirmation" required autocomplete="off"; } }
                            button.approve type="submit" { "Approve" }
                        }
                        form method="post" action={"/jobs/" (id) "/deny"} {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="back" value="/approvals";
                            label { "Reason" input name="reason" required; }
                            button.deny type="submit" { "Deny" }
                        }
                        form method="post" action={"/jobs/" (id) "/cancel"} {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="back" value="/approvals";
                            button.cancel type="submit" { "Cancel" }
                        }
                    }
                }
            }
        }
        @if approver && !rows.is_empty() {
            form id="bulk" method="post" action="/jobs/cancel" {
                input type="hidden" name="csrf" value=(csrf);
                label { input id="select-all" type="checkbox"; " select all" }
                label { "Reason" input name="reason" placeholder="cancelled from the dashboard (bulk)"; }
                button.cancel type="submit" { "Cancel selected" }
            }
        }
    };
    Ok(layout::page(&s, &who, "/approvals", "Approvals", body))
}
