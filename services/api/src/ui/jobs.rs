//! The jobs page: newest first, filters and cursor pages kept in the URL (a
//! view can be shared), rows that update live (see [`super::live`]).

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Html;
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, duration, short, text, time, when};
use super::{UiError, Who};
use crate::error::ApiError;
use crate::routes::jobs::{Filters, last_seq, page_of};
use crate::state::AppState;

/// Rows per page.
pub const PAGE: i64 = 50;

/// Statuses offered in the filter (the job's lifecycle).
const STATES: &[&str] = &[
    "requested",
    "planned",
    "awaiting_approval",
    "approved",
    "dispatched",
    "scheduled",
    "running",
    "cancelling",
    "succeeded",
    "failed",
    "denied",
    "cancelled",
    "timed_out",
];

/// The page's query: every field a form input, empty meaning "any".
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct JobsQuery {
    pub state: String,
    pub requester: String,
    pub project: String,
    /// From (RFC 3339 or the browser's `YYYY-MM-DDTHH:MM`, UTC).
    pub since: String,
    pub until: String,
    /// Words in the intent.
    pub q: String,
    pub cursor: String,
}

fn some(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn instant(s: &str, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(s) = some(s) else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&s, f).ok())
        .or_else(|| chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| ApiError::Invalid(format!("{name} is not a time (YYYY-MM-DDTHH:MM, UTC): {s:?}")))
}

impl JobsQuery {
    pub fn filters(&self) -> Result<Filters, ApiError> {
        Ok(Filters {
            state: some(&self.state),
            requester: some(&self.requester),
            project: some(&self.project),
            since: instant(&self.since, "from")?,
            until: instant(&self.until, "until")?,
            text: some(&self.q),
        })
    }

    /// The query string of these filters (no cursor), for links and the live feed.
    pub fn filter_query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("state", &self.state),
            ("requester", &self.requester),
            ("project", &self.project),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
        ] {
            if !v.trim().is_empty() {
                q.append_pair(k, v.trim());
            }
        }
        q.finish()
    }
}

/// `GET /`: the jobs page.
pub async fn page(
    State(s): State<AppState>,
    Extension(who): Extension<Who>,
    Query(q): Query<JobsQuery>,
) -> Result<Html<String>, UiError> {
    let body = body(&s.db, &q).await?;
    Ok(layout::page(&s, &who, "/", "Jobs", body))
}

/// The page below the navigation: the filters, one page of rows, the links
/// to other pages (what `skynet bench` times with 100,000 jobs).
pub async fn body(db: &sqlx::PgPool, q: &JobsQuery) -> Result<Markup, ApiError> {
    let filters = q.filters()?;
    let cursor = some(&q.cursor);
    // Read before the rows: a change in between is sent again, never missed.
    let seq = last_seq(db).await?;
    let page = page_of(db, &filters, PAGE, cursor.as_deref()).await?;
    let first = cursor.is_none();
    let query = q.filter_query();
    let live = format!("/live/jobs?{query}{}after={seq}", if query.is_empty() { "" } else { "&" });
    Ok(html! {
        h1 { "Jobs" }
        (filter_form(q))
        table.jobs {
            caption.sr { "Jobs, newest first" }
            thead { tr { th { "Job" } th { "Intent" } th { "Status" } th.hide-s { "Requester" } th.hide-s { "Risk" } th { "Created" } th.hide-s { "Duration" } } }
            // Rows that change are replaced; new ones are added on the first page only.
            tbody id="job-rows" data-live=(live) data-prepend=[first.then_some("true")] {
                @for row in &page.jobs { (row_html(row)) }
            }
        }
        @if page.jobs.is_empty() { p.muted.no-jobs { "No jobs match." } }
        nav.pages aria-label="Pages" {
            @if !first { a href={"/?" (query)} { "← Newest" } }
            @if let Some(next) = &page.next_cursor {
                a href={"/?" (query) (if query.is_empty() { "" } else { "&" }) "cursor=" (next)} rel="next" { "Older →" }
            }
        }
    })
}

fn filter_form(q: &JobsQuery) -> Markup {
    html! {
        form.filters method="get" action="/" role="search" {
            label { "Status"
                select name="state" {
                    option value="" { "any" }
                    @for st in STATES { option value=(st) selected[q.state == *st] { (st.replace('_', " ")) } }
                }
            }
            label { "Intent" input type="search" name="q" value=(q.q) placeholder="words in the intent"; }
            label { "Requester" input name="requester" value=(q.requester); }
            label { "Project" input name="project" value=(q.project); }
            label { "From (UTC)" input type="datetime-local" name="since" value=(q.since); }
            label { "Until (UTC)" input type="datetime-local" name="until" value=(q.until); }
            button type="submit" { "Filter" }
            a href="/" { "Clear" }
        }
    }
}

/// One job's row (also what the live feed sends when it changes).
pub fn row_html(row: &serde_json::Value) -> Markup {
    let id = text(row, "id").unwrap_or_default();
    let st = text(row, "status").unwrap_or("unknown");
    html! {
        tr id={"job-" (id)} data-status=(st) data-created=[text(row, "created_at")] {
            td { a href={"/jobs/" (id)} { code { (short(id)) } } }
            td.intent { (text(row, "intent").unwrap_or_default()) }
            td { (layout::status(st)) }
            td.hide-s { (text(row, "requested_by").unwrap_or("—")) }
            td.hide-s { (layout::risk(text(row, "risk"))) }
            td { (time(when(row, "created_at"))) }
            td.hide-s { (duration(row.get("duration_ms").and_then(|v| v.as_i64()))) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_inputs_are_no_filter_and_browser_times_are_utc() {
        let q = JobsQuery { state: " ".into(), since: "2026-12-04T10:30".into(), ..Default::default() };
        let f = q.filters().map_err(|e| e.to_string());
        assert_eq!(f.as_ref().map(|f| f.state.clone()), Ok(None));
        assert_eq!(f.map(|f| f.since.map(|t| t.to_rfc3339())), Ok(Some("2026-12-04T10:30:00+00:00".into())));
        let bad = JobsQuery { until: "yesterday".into(), ..Default::default() };
        assert!(bad.filters().is_err());
    }

    #[test]
    fn filters_round_trip_through_the_url() {
        let q = JobsQuery { state: "running".into(), q: "a&b=c".into(), ..Default::default() };
        assert_eq!(q.filter_query(), "state=running&q=a%26b%3Dc");
        let back: JobsQuery = serde_urlencoded_like(&q.filter_query());
        assert_eq!(back.q, "a&b=c");
    }

    fn serde_urlencoded_like(s: &str) -> JobsQuery {
        let mut q = JobsQuery::default();
        for (k, v) in url::form_urlencoded::parse(s.as_bytes()) {
            match &*k {
                "state" => q.state = v.into_owned(),
                "q" => q.q = v.into_owned(),
                _ => {}
            }
        }
        q
    }

    #[test]
    fn a_row_shows_the_intent_as_text() {
        let row =
            serde_json::json!({"id": "0123456789", "status": "running", "intent": "<img src=x onerror=alert(1)>"});
        let html = row_html(&row).into_string();
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
        assert!(!html.contains("<img"), "{html}");
    }
}
