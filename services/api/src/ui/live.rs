//! Live updates as Server-Sent Events: the jobs page's rows and the job
//! page's body, re-rendered from the read model when it moves. The cursor is
//! the log sequence of a job's last projected event (each message's SSE id,
//! so a reconnecting browser resumes where it was), and nothing that changed
//! after a page was drawn is missed. Each message is
//! `{"parts":[{"id":…, "html":…, "created_at":…} | {"id":…, "remove":true}]}`;
//! `assets/app.js` swaps them in. A stream ends with its session (or the
//! viewer's read role, when reads are closed); each viewer holds a few at most.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use skynet_contract::principal::PrincipalRole;

use super::jobs::{JobsQuery, row_html};
use super::{UiError, Who};
use crate::error::ApiError;
use crate::routes::jobs::{Filters, changed_since};
use crate::state::AppState;

/// How often a live page looks for changes.
const TICK: Duration = Duration::from_millis(700);
/// Rows sent per tick at most (the rest follow on the next).
const BATCH: i64 = 200;
/// Live streams one viewer (principal, or address when signed out) holds.
const PER_VIEWER: usize = 8;
/// Ticks a job page waits for a job that is in no read model (~1 minute).
const WAIT_FOR_JOB: u64 = 90;

/// Live streams open per viewer.
#[derive(Debug, Default)]
pub struct Viewers(Mutex<HashMap<String, usize>>);

/// One open stream: its viewer's count goes down when it ends.
pub struct Slot {
    viewers: Arc<Viewers>,
    key: String,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.viewers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// A slot for one more stream, within the process's cap and the viewer's.
fn slot(s: &AppState, who: &Who, peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> Result<Slot, ApiError> {
    let key = who.principal().map_or_else(
        || format!("ip:{}", peer.map(|c| c.0.0.ip().to_string()).unwrap_or_default()),
        |p| format!("principal:{}", p.name),
    );
    let permit = s.sse.clone().try_acquire_owned().map_err(|_| {
        ApiError::Unavailable(format!("{} live streams are open, the most allowed; reload later", s.config.max_sse))
    })?;
    let mut map = s.live.0.lock().unwrap_or_else(|p| p.into_inner());
    let n = map.entry(key.clone()).or_default();
    if *n >= PER_VIEWER {
        return Err(ApiError::RateLimited(5));
    }
    *n += 1;
    Ok(Slot { viewers: s.live.clone(), key, _permit: permit })
}

/// Where a stream starts: the browser's `Last-Event-ID` on a reconnect, else
/// the sequence the page was drawn at.
fn start(headers: &HeaderMap, after: &str) -> i64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| after.parse().unwrap_or(0))
}

/// Whether the viewer may still look: its session not ended, and (now and
/// then, as the token is checked again) its principal still allowed to read.
async fn still_allowed(s: &AppState, who: &Who, ticks: u64) -> bool {
    let Some(v) = &who.0 else { return s.config.open_reads };
    if s.sessions.get(&v.session).is_none() {
        return false;
    }
    if ticks % 40 != 39 {
        return true;
    }
    match s.principals.verify(&v.caller.token).await {
        Ok(Some(p)) => s.config.open_reads || p.has(PrincipalRole::Read),
        Ok(None) => false,
        // The store did not answer: keep the stream, ask again later.
        Err(_) => true,
    }
}

fn message(seq: i64, parts: &[serde_json::Value]) -> Event {
    Event::default().id(seq.to_string()).data(serde_json::json!({ "parts": parts }).to_string())
}

/// Query of a live feed: the page's filters and the sequence it was drawn at.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    #[serde(flatten)]
    pub filters: JobsQuery,
    /// A log sequence (a string: numbers do not survive `flatten` in a query).
    #[serde(default)]
    pub after: String,
}

/// `GET /live/jobs`: rows of the jobs page that changed. A row that no
/// longer matches the page's filters is removed from it.
pub async fn jobs(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(q): Query<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, UiError> {
    let filters = q.filters.filters()?;
    let slot = slot(&s, &who, peer)?;
    let after = start(&headers, &q.after);
    let stream = futures::stream::unfold((after, 0u64, slot), move |(mut after, mut ticks, slot)| {
        let (s, who, filters) = (s.clone(), who.clone(), filters.clone());
        async move {
            loop {
                tokio::time::sleep(TICK).await;
                ticks += 1;
                if !still_allowed(&s, &who, ticks).await {
                    return None;
                }
                // A database hiccup is a skipped tick, not the end of the page.
                let Ok(rows) = changed_since(&s.db, &Filters::default(), after, BATCH).await else { continue };
                if rows.is_empty() {
                    continue;
                }
                after = rows.iter().filter_map(|r| r.get("last_seq").and_then(|v| v.as_i64())).max().unwrap_or(after);
                let parts: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| {
                        let id = format!("job-{}", r.get("id").and_then(|v| v.as_str()).unwrap_or_default());
                        if filters.matches(r) {
                            serde_json::json!({"id": id, "html": row_html(r).into_string(), "created_at": r.get("created_at")})
                        } else {
                            serde_json::json!({"id": id, "remove": true})
                        }
                    })
                    .collect();
                return Some((Ok(message(after, &parts)), (after, ticks, slot)));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /live/jobs/{id}`: the job page's body whenever the job moves.
pub async fn job(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, UiError> {
    let job = super::job::parse(&id)?;
    let slot = slot(&s, &who, peer)?;
    let seen = start(&headers, &q.after);
    let stream = futures::stream::unfold((seen, 0u64, slot), move |(mut seen, mut ticks, slot)| {
        let (s, who) = (s.clone(), who.clone());
        async move {
            loop {
                tokio::time::sleep(TICK).await;
                ticks += 1;
                if !still_allowed(&s, &who, ticks).await {
                    return None;
                }
                let now: Option<i64> = match sqlx::query_scalar("SELECT last_seq FROM jobs WHERE id = $1")
                    .bind(job.0)
                    .fetch_optional(&s.db)
                    .await
                {
                    Ok(now) => now,
                    Err(_) => continue,
                };
                // A job that never appears is not worth a stream forever.
                if now.is_none() && seen == 0 && ticks > WAIT_FOR_JOB {
                    return None;
                }
                let Some(now) = now.filter(|n| *n > seen) else { continue };
                let Ok((body, drawn)) = super::job::body(&s, &who, job).await else { continue };
                seen = drawn.max(now);
                let part = serde_json::json!({"id": "job-live", "html": body.into_string(), "inner": true});
                return Some((Ok(message(seen, &[part])), (seen, ticks, slot)));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
