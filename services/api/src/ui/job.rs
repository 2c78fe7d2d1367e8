//! The job page: plan, each step's risk, status, exit code, duration and
//! output (live chunks from the log while it runs, the full stored output on
//! demand), the policy's decision and reasons, the scheduler's scores, who
//! approved when, and the timeline of every event in the log.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;
use maud::{Markup, html};
use skynet_contract::JobId;
use skynet_contract::job::{JobEvent, OutputStream, ProviderScore};
use skynet_contract::principal::PrincipalRole;

use super::layout::{self, duration, risk, short, text, time, when};
use super::{UiError, Who};
use crate::error::ApiError;
use crate::state::AppState;

/// Live output shown per step and stream (the tail; the rest is one click away).
const LIVE_TAIL: usize = 16 * 1024;

/// Whether approving needs the typed confirmation: ADMIN jobs, and jobs whose
/// risk is not known (the policy treats those as ADMIN).
pub fn needs_confirmation(risk: Option<&str>) -> bool {
    risk.is_none_or(|r| r.eq_ignore_ascii_case("admin"))
}

/// Statuses from which a job can still be cancelled.
pub fn cancellable(status: &str) -> bool {
    !matches!(status, "succeeded" | "failed" | "denied" | "cancelled" | "timed_out" | "cancelling")
}

pub fn parse(id: &str) -> Result<JobId, ApiError> {
    id.parse::<JobId>().map_err(|_| ApiError::NotFound(format!("no job {id:?} (job ids are UUIDs)")))
}

/// `GET /jobs/{id}`.
pub async fn page(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Html<String>), UiError> {
    let job = parse(&id)?;
    // A job just submitted is not in the read models yet: the page waits for it
    // (the live feed sends it when it appears), but answers 404 until then.
    let (status, (content, seq)) = match body(&s, &who, job).await {
        Ok(drawn) => (StatusCode::OK, drawn),
        Err(ApiError::NotFound(why)) => (
            StatusCode::NOT_FOUND,
            (
                html! {
                    h1 { "Job " code { (job) } }
                    p.muted role="status" { (why) ". This page shows it when it does." }
                },
                0,
            ),
        ),
        Err(e) => return Err(e.into()),
    };
    let page = html! {
        p { a href="/" { "← Jobs" } }
        // The feed starts from what was drawn: a change since is sent, not missed.
        div id="job-live" data-live={"/live/jobs/" (job) "?after=" (seq)} { (content) }
    };
    Ok((status, layout::page(&s, &who, "", &format!("Job {}", short(&job.to_string())), page)))
}

/// Everything below the navigation (also what the live feed re-sends), and
/// the log sequence of the last event it shows.
pub async fn body(s: &AppState, who: &Who, job: JobId) -> Result<(Markup, i64), ApiError> {
    let row: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT to_jsonb(j) FROM jobs j WHERE id = $1").bind(job.0).fetch_optional(&s.db).await?;
    let Some(row) = row else {
        return Err(ApiError::NotFound(format!(
            "Job {job} is not in the read models yet (a just-submitted job appears within moments)"
        )));
    };
    let list = |sql: &'static str| sqlx::query_scalar::<_, serde_json::Value>(sql).bind(job.0).fetch_all(&s.db);
    let (steps, approvals) = tokio::try_join!(
        list("SELECT to_jsonb(t) FROM steps t WHERE job_id = $1 ORDER BY idx"),
        list("SELECT to_jsonb(t) FROM approvals t WHERE job_id = $1 ORDER BY seq"),
    )?;
    let history = s.store.load(job).await.map_err(|e| ApiError::Unavailable(format!("the event log: {e}")))?;
    let decoded: Vec<Option<JobEvent>> =
        history.events.iter().map(|(_, env)| JobEvent::decode(&env.ty, &env.data).ok()).collect();
    let scores = decoded.iter().rev().flatten().find_map(|e| match e {
        JobEvent::Scheduled(s) => Some((s.provider.clone(), s.scores.clone())),
        _ => None,
    });
    let status = text(&row, "status").unwrap_or("unknown");
    let id = job.to_string();
    let seq = row.get("last_seq").and_then(|v| v.as_i64()).unwrap_or(0);
    let markup = html! {
        h1.intent { (text(&row, "intent").unwrap_or_default()) }
        p.meta {
            (layout::status(status)) " "
            code { (id) }
            " · requested by " strong { (text(&row, "requested_by").unwrap_or("—")) }
            " · " (time(when(&row, "created_at")))
            @if let Some(p) = text(&row, "project") { " · project " (p) }
            @if let Some(d) = text(&row, "working_dir") { " · in " code { (d) } }
            " · " (duration(row.get("duration_ms").and_then(|v| v.as_i64())))
        }
        @if let Some(e) = text(&row, "error") { p.error { (e) } }
        (buttons(who, &id, status, text(&row, "risk")))
        section {
            h2 { "Plan" }
            p { (text(&row, "plan_summary").unwrap_or("not planned yet")) }
            p.muted { "Planner: " (text(&row, "planner").unwrap_or("—"))
                @if let Some(f) = text(&row, "fallback_reason") { " (fallback: " (f) ")" } }
        }
        section {
            h2 { "Policy" }
            p { "Risk " (risk(text(&row, "risk")))
                @match row.get("requires_approval").and_then(|v| v.as_bool()) {
                    Some(true) => { " · needs " (row.get("approvals_required").and_then(|v| v.as_i64()).unwrap_or(1)) " approval(s)" },
                    Some(false) => { " · approved automatically" },
                    None => { " · not decided yet" },
                }
            }
            @if let Some(reasons) = row.get("policy_reasons").and_then(|v| v.as_array()) {
                ul { @for r in reasons { li { (r.as_str().map_or_else(|| r.to_string(), str::to_owned)) } } }
            }
            @if !approvals.is_empty() {
                h3 { "Decisions" }
                ul { @for a in &approvals {
                    li { strong { (text(a, "actor").unwrap_or("?")) } " " (text(a, "decision").unwrap_or("?")) " at " (time(when(a, "at")))
                        @if let Some(c) = text(a, "comment") { ": " (c) } }
                } }
            }
        }
        section {
            h2 { "Steps" }
            @if steps.is_empty() { p.muted { "No steps yet." } }
            @for st in &steps { (step(&id, st, &decoded)) }
        }
        @if let Some((provider, scores)) = scores { (scheduler(&provider, &scores)) }
        section {
            h2 { "Timeline" }
            p.muted { (history.events.len()) " events from the log, oldest first." }
            ol.timeline {
                @for (seq, env) in &history.events {
                    li {
                        details {
                            summary { (time(Some(env.time))) " " code { (env.ty.trim_start_matches("skynet.job.").trim_end_matches(".v1")) } " from " (env.source) " " span.muted { "#" (seq) } }
                            pre { (clip(&serde_json::to_string_pretty(&env.data).unwrap_or_default())) }
                        }
                    }
                }
            }
        }
    };
    Ok((markup, seq))
}

fn buttons(who: &Who, id: &str, status: &str, risk: Option<&str>) -> Markup {
    let Some(v) = &who.0 else { return html! {} };
    let admin = needs_confirmation(risk);
    html! {
        div.actions {
            @if status == "awaiting_approval" && who.may(PrincipalRole::Approve) {
                form method="post" action={"/jobs/" (id) "/approve"} {
                    input type="hidden" name="csrf" value=(v.csrf);
                    @if admin {
                        label { "Confirmation phrase and " code { (short(id)) } " (e.g. " code { "execute " (short(id)) } ")"
                            input name="confirmation" required autocomplete="off"; }
                    }
                    button.approve type="submit" { "Approve" }
                }
                form method="post" action={"/jobs/" (id) "/deny"} {
                    input type="hidden" name="csrf" value=(v.csrf);
                    label { "Reason" input name="reason" required; }
                    button.deny type="submit" { "Deny" }
                }
            }
            @if cancellable(status) {
                form method="post" action={"/jobs/" (id) "/cancel"} {
                    input type="hidden" name="csrf" value=(v.csrf);
                    button.cancel type="submit" { "Cancel job" }
                }
            }
        }
    }
}

fn step(id: &str, st: &serde_json::Value, events: &[Option<JobEvent>]) -> Markup {
    let idx = st.get("idx").and_then(|v| v.as_i64()).unwrap_or(0);
    let status = text(st, "status").unwrap_or("pending");
    let stored = text(st, "output_ref").is_some() || text(st, "stdout").is_some() || text(st, "stderr").is_some();
    // While it runs, the chunks in the log; once done, what the read model holds.
    let (out, err) = match (text(st, "stdout"), text(st, "stderr")) {
        (None, None) => live_output(idx, events),
        (o, e) => (o.unwrap_or_default().to_owned(), e.unwrap_or_default().to_owned()),
    };
    html! {
        article.step id={"step-" (idx)} {
            h3 { (idx + 1) ". " (text(st, "title").unwrap_or_default()) " " (layout::status(status)) }
            p.meta {
                "Action " code { (text(st, "action").unwrap_or("—")) } " · risk " (risk(text(st, "risk")))
                " · exit code " (st.get("exit_code").and_then(|v| v.as_i64()).map_or_else(|| "—".into(), |c| c.to_string()))
                " · " (duration(st.get("duration_ms").and_then(|v| v.as_i64())))
            }
            @if let Some(e) = text(st, "error") { p.error { (e) } }
            @if !out.is_empty() { pre.out aria-label="standard output" { (tail(&out)) } }
            @if !err.is_empty() { pre.err aria-label="standard error" { (tail(&err)) } }
            @if stored {
                p { a href={"/jobs/" (id) "/steps/" (idx) "/output?stream=stdout"} { "Full output" } " · "
                    a href={"/jobs/" (id) "/steps/" (idx) "/output?stream=stderr"} { "Full errors" } }
            }
        }
    }
}

/// The step's output so far, from its chunks in the log.
fn live_output(idx: i64, events: &[Option<JobEvent>]) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    for e in events.iter().flatten() {
        if let JobEvent::StepOutput(o) = e
            && i64::from(o.step) == idx
        {
            match o.stream {
                OutputStream::Stdout => out.push_str(&o.chunk),
                OutputStream::Stderr => err.push_str(&o.chunk),
            }
        }
    }
    (out, err)
}

fn tail(s: &str) -> String {
    if s.len() <= LIVE_TAIL {
        return s.to_owned();
    }
    let mut at = s.len() - LIVE_TAIL;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    format!("… (earlier output under Full output)\n{}", &s[at..])
}

/// An event's data as shown in the timeline: the first 2,000 bytes (output
/// chunks are in the steps above, and each is in the log whole).
fn clip(s: &str) -> String {
    const MAX: usize = 2000;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut at = MAX;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}\n… ({} more bytes: GET /v1/jobs/{{id}}/events has it all)", &s[..at], s.len() - at)
}

fn scheduler(provider: &str, scores: &[ProviderScore]) -> Markup {
    html! {
        section {
            h2 { "Scheduler" }
            p { "Chose " strong { (provider) } "; every candidate's score:" }
            div.scroll { table {
                thead { tr { th { "Provider" } th { "Total" } th { "Health" } th { "Load" } th { "Capability" } th { "Success" } th { "Latency" } th { "Excluded" } } }
                tbody { @for sc in scores { tr {
                    td { (sc.provider) } td { (format!("{:.2}", sc.total)) } td { (format!("{:.2}", sc.health)) }
                    td { (format!("{:.2}", sc.load)) } td { (format!("{:.2}", sc.capability)) }
                    td { (format!("{:.2}", sc.success)) } td { (format!("{:.2}", sc.latency)) }
                    td { (sc.excluded.as_deref().unwrap_or("")) }
                } } }
            } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_of_long_output_is_cut_on_a_character() {
        let long = "é".repeat(LIVE_TAIL);
        let t = tail(&long);
        assert!(t.starts_with("… (earlier"));
        assert!(t.len() < long.len());
        assert_eq!(tail("short"), "short");
    }

    #[test]
    fn finished_jobs_cannot_be_cancelled() {
        assert!(cancellable("running") && cancellable("awaiting_approval"));
        assert!(!cancellable("succeeded") && !cancellable("cancelled"));
    }
}
