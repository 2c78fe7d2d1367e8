//! Live updates as Server-Sent Events: the jobs page's rows and the job
//! page's body, re-rendered from the read model when it moves. The cursor is
//! the log sequence of a job's last projected event, so nothing that changed
//! after a page was drawn is missed, and filters are the page's own SQL.
//! Each message is `{"parts":[{"id":…, "html":…, "created_at":…}]}`;
//! `assets/app.js` swaps them in. A signed-out session's stream ends.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;

use super::jobs::{JobsQuery, row_html};
use super::{UiError, Who};
use crate::error::ApiError;
use crate::routes::jobs::changed_since;
use crate::state::AppState;

/// How often a live page looks for changes.
const TICK: Duration = Duration::from_millis(700);
/// Rows sent per tick at most (the rest follow on the next).
const BATCH: i64 = 200;

/// Query of `/live/jobs`: the page's filters and where its rows were.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    #[serde(flatten)]
    pub filters: JobsQuery,
    /// A log sequence (a string: numbers do not survive `flatten` in a query).
    #[serde(default)]
    pub after: String,
}

/// Query of `/live/jobs/{id}`: the log sequence the page was drawn at.
#[derive(Debug, Deserialize)]
pub struct After {
    #[serde(default)]
    pub after: String,
}

/// Whether the viewer may still look (its session not ended; the token
/// re-checked now and then, so a revoked one stops the stream too).
async fn still_allowed(s: &AppState, who: &Who, ticks: u64) -> bool {
    let Some(v) = &who.0 else { return s.config.open_reads };
    if s.sessions.get(&v.session).is_none() {
        return false;
    }
    ticks % 40 != 39 || matches!(s.principals.verify(&v.caller.token).await, Ok(Some(_)))
}

fn permit(s: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    s.sse.clone().try_acquire_owned().map_err(|_| {
        ApiError::Unavailable(format!("{} live streams are open, the most allowed; reload later", s.config.max_sse))
    })
}

fn message(parts: &[serde_json::Value]) -> Event {
    Event::default().data(serde_json::json!({ "parts": parts }).to_string())
}

/// `GET /live/jobs`: rows of the jobs page that changed.
pub async fn jobs(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    Query(q): Query<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, UiError> {
    let filters = q.filters.filters()?;
    let after: i64 = q.after.parse().unwrap_or(0);
    let permit = permit(&s)?;
    let stream = futures::stream::unfold((after, 0u64, permit), move |(mut after, mut ticks, permit)| {
        let (s, who, filters) = (s.clone(), who.clone(), filters.clone());
        async move {
            loop {
                tokio::time::sleep(TICK).await;
                ticks += 1;
                if !still_allowed(&s, &who, ticks).await {
                    return None;
                }
                // A database hiccup is a skipped tick, not the end of the page.
                let Ok(rows) = changed_since(&s.db, &filters, after, BATCH).await else { continue };
                if rows.is_empty() {
                    continue;
                }
                after = rows.iter().filter_map(|r| r.get("last_seq").and_then(|v| v.as_i64())).max().unwrap_or(after);
                let parts: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| {
                        let id = r.get("id").and_then(|v| v.as_str()).unwrap_or_default();
                        serde_json::json!({"id": format!("job-{id}"), "html": row_html(r).into_string(),
                            "created_at": r.get("created_at")})
                    })
                    .collect();
                return Some((Ok(message(&parts)), (after, ticks, permit)));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /live/jobs/{id}`: the job page's body whenever the job moves.
pub async fn job(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    Path(id): Path<String>,
    Query(q): Query<After>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, UiError> {
    let job = super::job::parse(&id)?;
    let permit = permit(&s)?;
    let seen: i64 = q.after.parse().unwrap_or(0);
    let stream = futures::stream::unfold((seen, 0u64, permit), move |(mut seen, mut ticks, permit)| {
        let (s, who) = (s.clone(), who.clone());
        async move {
            loop {
                tokio::time::sleep(TICK).await;
                ticks += 1;
                if !still_allowed(&s, &who, ticks).await {
                    return None;
                }
                let now: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM jobs WHERE id = $1")
                    .bind(job.0)
                    .fetch_optional(&s.db)
                    .await
                    .ok()
                    .flatten();
                let Some(now) = now.filter(|n| *n > seen) else { continue };
                let Ok((body, drawn)) = super::job::body(&s, &who, job).await else { continue };
                seen = drawn.max(now);
                let part = serde_json::json!({"id": "job-live", "html": body.into_string(), "inner": true});
                return Some((Ok(message(&[part])), (seen, ticks, permit)));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
