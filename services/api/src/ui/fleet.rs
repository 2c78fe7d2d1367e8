//! The executors page (heartbeats, capacity, each provider's health) and the
//! alerts page (the sentinel's alerts, firing first, and its silences).

use axum::Extension;
use axum::extract::State;
use axum::response::Html;
use chrono::Utc;
use futures::StreamExt;
use maud::html;
use skynet_contract::executor::{ExecutorStatus, Health};

use super::layout::{self, text, time, when};
use super::{UiError, Who};
use crate::error::ApiError;
use crate::state::AppState;

/// A heartbeat older than this is an executor gone quiet.
const STALE_SECS: i64 = 10;

/// Every executor that has a heartbeat in the KV bucket, newest first.
async fn heartbeats(s: &AppState) -> Result<Vec<ExecutorStatus>, ApiError> {
    let kv =
        s.js.get_key_value(skynet_bus::definitions::EXECUTORS_BUCKET)
            .await
            .map_err(|e| ApiError::Unavailable(format!("executors bucket: {e}")))?;
    let mut keys = kv.keys().await.map_err(|e| ApiError::Unavailable(format!("executors bucket: {e}")))?;
    let mut out = Vec::new();
    while let Some(Ok(k)) = keys.next().await {
        if let Ok(Some(v)) = kv.get(&k).await
            && let Ok(st) = serde_json::from_slice::<ExecutorStatus>(&v)
        {
            out.push(st);
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.heartbeat_at));
    Ok(out)
}

/// `GET /executors`.
pub async fn executors(State(s): State<AppState>, Extension(who): Extension<Who>) -> Result<Html<String>, UiError> {
    let (list, started) = tokio::try_join!(heartbeats(&s), async {
        sqlx::query_as::<_, (String, i64)>("SELECT id, jobs_started FROM executors")
            .fetch_all(&s.db)
            .await
            .map_err(ApiError::from)
    })?;
    let started: std::collections::HashMap<String, i64> = started.into_iter().collect();
    let now = Utc::now();
    let body = html! {
        h1 { "Executors" }
        @if list.is_empty() { p.muted { "No executor has reported. Start one with " code { "skynet run executor" } "." } }
        @for e in &list {
            @let age = (now - e.heartbeat_at).num_seconds();
            article.executor {
                h2 { (e.id) " "
                    @if age > STALE_SECS { span.badge.s-failed { "silent " (age) " s" } } @else { span.badge.s-succeeded { "online" } } }
                p.meta { "Running " strong { (e.running) " of " (e.capacity) } " · jobs started "
                    (started.get(&e.id).copied().unwrap_or(0)) " · heartbeat " (time(Some(e.heartbeat_at)))
                    " · up since " (time(Some(e.started_at))) @if !e.version.is_empty() { " · v" (e.version) } }
                div.scroll { table {
                    thead { tr { th { "Provider" } th { "Health" } th { "Latency" } th { "Capabilities" } th { "Message" } } }
                    tbody { @for (name, p) in &e.providers { tr {
                        td { (name) }
                        td { @match p.health {
                            Health::Healthy => span.badge.s-succeeded { "healthy" },
                            Health::Degraded => span.badge.s-awaiting_approval { "degraded" },
                            Health::Unhealthy => span.badge.s-failed { "unhealthy" },
                        } }
                        td { (p.latency_ms) " ms" }
                        td { (p.capabilities.join(", ")) }
                        td { (p.message) }
                    } } }
                } }
            }
        }
    };
    Ok(layout::page(&s, &who, "/executors", "Executors", body))
}

/// `GET /alerts`.
pub async fn alerts(State(s): State<AppState>, Extension(who): Extension<Who>) -> Result<Html<String>, UiError> {
    let (alerts, silences) = tokio::try_join!(
        sqlx::query_scalar::<_, serde_json::Value>(
            "SELECT to_jsonb(a) FROM alerts a ORDER BY status = 'firing' DESC, raised_at DESC LIMIT 200"
        )
        .fetch_all(&s.db),
        sqlx::query_scalar::<_, serde_json::Value>(
            "SELECT to_jsonb(x) FROM alert_silences x WHERE until > now() ORDER BY until"
        )
        .fetch_all(&s.db),
    )?;
    let body = html! {
        h1 { "Alerts" }
        @if alerts.is_empty() { p.muted { "The sentinel has raised no alert." } }
        @if !alerts.is_empty() { div.scroll { table {
            thead { tr { th { "Status" } th { "Severity" } th { "Alert" } th { "Raised" } th { "Resolved" } th { "Times" } th { "Muted" } } }
            tbody { @for a in &alerts { tr {
                td { (layout::status(text(a, "status").unwrap_or("?"))) }
                td { span class={"badge sev-" (text(a, "severity").unwrap_or("info"))} { (text(a, "severity").unwrap_or("?")) } }
                td { strong { (text(a, "kind").unwrap_or("?")) } " " (text(a, "subject").unwrap_or_default()) br; (text(a, "summary").unwrap_or_default()) }
                td { (time(when(a, "raised_at"))) }
                td { (time(when(a, "resolved_at"))) }
                td { (a.get("times_raised").and_then(|v| v.as_i64()).unwrap_or(1)) }
                td { (text(a, "muted").unwrap_or("")) }
            } } }
        } } }
        h2 { "Silences" }
        @if silences.is_empty() { p.muted { "None active. " code { "skynet alerts silence" } " adds one." } }
        ul { @for x in &silences {
            li { (x.get("matchers").map(|m| m.to_string()).unwrap_or_default()) " until " (time(when(x, "until")))
                " by " strong { (text(x, "silenced_by").unwrap_or("?")) } ": " (text(x, "reason").unwrap_or_default()) }
        } }
    };
    Ok(layout::page(&s, &who, "/alerts", "Alerts", body))
}
