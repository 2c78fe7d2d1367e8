//! Jobs: list, detail, history from the log, step output, and the commands
//! approve / deny / cancel (sent to the policy service over NATS).

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use skynet_contract::JobId;
use skynet_contract::commands;
use tokio::io::AsyncReadExt;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::OptionalJson;
use crate::guard::Caller;
use crate::state::AppState;

/// Filters of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Status (`running`, `awaiting_approval`, `succeeded`, ...).
    pub state: Option<String>,
    pub requester: Option<String>,
    pub project: Option<String>,
    /// Created at or after (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Words anywhere in the intent (case-insensitive).
    pub q: Option<String>,
    /// Page size, 1..=500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    #[schema(value_type = Vec<Object>)]
    pub jobs: Vec<serde_json::Value>,
    pub next_cursor: Option<String>,
}

/// A job with its steps, approvals and artifacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    #[schema(value_type = Object)]
    pub job: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub approvals: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub artifacts: Vec<serde_json::Value>,
}

/// Body of approve / deny / cancel. Who acts is the principal of the token.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    pub comment: Option<String>,
    /// For ADMIN jobs (approve): the confirmation phrase and the job's short
    /// id, e.g. `execute 1a2b3c4d`, as the approval request shows it.
    pub confirmation: Option<String>,
    pub reason: Option<String>,
}

/// A step's stored output.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepOutput {
    pub job_id: uuid::Uuid,
    pub step: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The command's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandOutcome {
    pub accepted: bool,
    pub job_id: uuid::Uuid,
    pub status: Option<String>,
    pub message: String,
}

fn parse_job(id: &str) -> Result<JobId, ApiError> {
    id.parse::<JobId>().map_err(|_| ApiError::NotFound(format!("no job {id:?} (job ids are UUIDs)")))
}

/// Lists jobs, newest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/v1/jobs", params(ListQuery),
    responses((status = 200, body = JobPage), (status = 400, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<JobPage>, ApiError> {
    let filters = Filters {
        state: q.state,
        requester: q.requester,
        project: q.project,
        since: q.since,
        until: q.until,
        text: q.q,
    };
    Ok(Json(page_of(&s.db, &filters, q.limit.unwrap_or(50), q.cursor.as_deref()).await?))
}

/// Filters of a job list (the API's and the dashboard's).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filters {
    pub state: Option<String>,
    pub requester: Option<String>,
    pub project: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Words anywhere in the intent (case-insensitive).
    pub text: Option<String>,
}

/// The filters as SQL over `jobs j`, binding `$1`..`$6`.
const FILTERED: &str = "SELECT to_jsonb(j) FROM jobs j
    WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR requested_by = $2)
      AND ($3::text IS NULL OR project = $3) AND ($4::timestamptz IS NULL OR created_at >= $4)
      AND ($5::timestamptz IS NULL OR created_at < $5)
      AND ($6::text IS NULL OR intent ILIKE '%' || $6 || '%' ESCAPE '\\')";

impl Filters {
    /// Whether a row (`to_jsonb` of `jobs`) passes the filters: the SQL's
    /// test, for rows already fetched.
    pub fn matches(&self, row: &serde_json::Value) -> bool {
        let text = |k: &str| row.get(k).and_then(|v| v.as_str());
        let same = |want: &Option<String>, k: &str| want.as_deref().is_none_or(|w| text(k) == Some(w));
        let created =
            text("created_at").and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc));
        same(&self.state, "status")
            && same(&self.requester, "requested_by")
            && same(&self.project, "project")
            && self.since.is_none_or(|s| created.is_some_and(|c| c >= s))
            && self.until.is_none_or(|u| created.is_some_and(|c| c < u))
            && self
                .text
                .as_deref()
                .is_none_or(|t| text("intent").is_some_and(|i| i.to_lowercase().contains(&t.to_lowercase())))
    }

    fn bind<'q>(
        &'q self,
        sql: &'q str,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, serde_json::Value, sqlx::postgres::PgArguments> {
        // `%`, `_` and `\` in the words are matched as themselves.
        let text = self.text.as_deref().map(|t| t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        sqlx::query_scalar(sql)
            .bind(&self.state)
            .bind(&self.requester)
            .bind(&self.project)
            .bind(self.since)
            .bind(self.until)
            .bind(text)
    }
}

/// One page of jobs, newest first, after `cursor` (a page's `next_cursor`).
pub async fn page_of(
    db: &sqlx::PgPool,
    filters: &Filters,
    limit: i64,
    cursor: Option<&str>,
) -> Result<JobPage, ApiError> {
    if !(1..=500).contains(&limit) {
        return Err(ApiError::Invalid("limit must be 1..=500".into()));
    }
    let after = cursor.map(decode_cursor).transpose()?;
    let sql = format!(
        "{FILTERED} AND ($7::timestamptz IS NULL OR (created_at, id) < ($7, $8))
         ORDER BY created_at DESC, id DESC LIMIT $9"
    );
    let rows = filters
        .bind(&sql)
        .bind(after.map(|(t, _)| t))
        .bind(after.map(|(_, id)| id))
        .bind(limit + 1)
        .fetch_all(db)
        .await?;
    let more = rows.len() as i64 > limit;
    let jobs: Vec<_> = rows.into_iter().take(usize::try_from(limit).unwrap_or(50)).collect();
    let next_cursor = if more { jobs.last().and_then(encode_cursor) } else { None };
    Ok(JobPage { jobs, next_cursor })
}

/// Jobs matching `filters` whose last event is past log sequence `seq`, in
/// log order (at most `limit`): what changed since a page was drawn.
pub async fn changed_since(
    db: &sqlx::PgPool,
    filters: &Filters,
    seq: i64,
    limit: i64,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let sql = format!("{FILTERED} AND last_seq > $7 ORDER BY last_seq LIMIT $8");
    Ok(filters.bind(&sql).bind(seq).bind(limit).fetch_all(db).await?)
}

/// The highest log sequence any job's row reflects (0 when none).
pub async fn last_seq(db: &sqlx::PgPool) -> Result<i64, ApiError> {
    Ok(sqlx::query_scalar::<_, Option<i64>>("SELECT max(last_seq) FROM jobs").fetch_one(db).await?.unwrap_or(0))
}

fn encode_cursor(row: &serde_json::Value) -> Option<String> {
    let at = row.get("created_at")?.as_str()?;
    let id = row.get("id")?.as_str()?;
    Some(URL_SAFE_NO_PAD.encode(format!("{at}|{id}")))
}

fn decode_cursor(c: &str) -> Result<(DateTime<Utc>, uuid::Uuid), ApiError> {
    let bad = || ApiError::Invalid("cursor is not one this API issued".into());
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?).map_err(|_| bad())?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    Ok((DateTime::parse_from_rfc3339(at).map_err(|_| bad())?.with_timezone(&Utc), id.parse().map_err(|_| bad())?))
}

/// One job with its steps, approvals and artifacts.
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path)),
    responses((status = 200, body = JobDetail), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<JobDetail>, ApiError> {
    let job = parse_job(&id)?;
    let row: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT to_jsonb(j) FROM jobs j WHERE id = $1").bind(job.0).fetch_optional(&s.db).await?;
    let Some(row) = row else {
        return Err(ApiError::NotFound(format!(
            "no job {job} in the read models (a just-submitted job appears within moments)"
        )));
    };
    let list = |sql: &'static str| sqlx::query_scalar::<_, serde_json::Value>(sql).bind(job.0).fetch_all(&s.db);
    let (steps, approvals, artifacts) = tokio::try_join!(
        list("SELECT to_jsonb(t) FROM steps t WHERE job_id = $1 ORDER BY idx"),
        list("SELECT to_jsonb(t) FROM approvals t WHERE job_id = $1 ORDER BY seq"),
        list("SELECT to_jsonb(t) FROM artifacts t WHERE job_id = $1 ORDER BY name"),
    )?;
    Ok(Json(JobDetail { job: row, steps, approvals, artifacts }))
}

/// The job's full history, from the event log itself (CloudEvents, oldest first).
#[utoipa::path(get, path = "/v1/jobs/{id}/events", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Object>), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn events(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let job = parse_job(&id)?;
    let history = s.store.load(job).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if history.events.is_empty() {
        return Err(ApiError::NotFound(format!("no events for job {job}")));
    }
    let events = history
        .events
        .iter()
        .map(|(seq, env)| {
            let mut v = serde_json::to_value(env.to_cloudevent()).unwrap_or_default();
            v["skynetseq"] = serde_json::json!(seq);
            v
        })
        .collect();
    Ok(Json(events))
}

/// A step's full stored output (`?stream=stdout` or `stderr` for plain text).
#[utoipa::path(get, path = "/v1/jobs/{id}/steps/{n}/output",
    params(("id" = String, Path), ("n" = i32, Path), ("stream" = Option<String>, Query)),
    responses((status = 200, body = StepOutput), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn output(
    State(s): State<AppState>,
    Path((id, n)): Path<(String, i32)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let job = parse_job(&id)?;
    let row: Option<(Option<String>, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT output_ref, stdout, stderr FROM steps WHERE job_id = $1 AND idx = $2")
            .bind(job.0)
            .bind(n)
            .fetch_optional(&s.db)
            .await?;
    let Some((output_ref, inline_out, inline_err)) = row else {
        return Err(ApiError::NotFound(format!("job {job} has no step {n}")));
    };
    let Some(base) = output_ref else {
        // A quick step's output is in the read model, from its result event.
        if inline_out.is_none() && inline_err.is_none() {
            return Err(ApiError::NotFound(format!("step {n} of job {job} has no output (yet)")));
        }
        let (stdout, stderr) = (inline_out.unwrap_or_default(), inline_err.unwrap_or_default());
        return match q.get("stream").map(String::as_str) {
            Some("stdout") => Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], stdout).into_response()),
            Some("stderr") => Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], stderr).into_response()),
            Some(other) => Err(ApiError::Invalid(format!("stream must be stdout or stderr, not {other:?}"))),
            None => Ok(Json(StepOutput { job_id: job.0, step: n, stdout, stderr }).into_response()),
        };
    };
    let store =
        s.js.get_object_store(skynet_bus::definitions::OUTPUT_BUCKET)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let read = |name: &'static str| {
        let (store, key) = (store.clone(), format!("{base}/{name}"));
        async move {
            let mut obj =
                store.get(key.as_str()).await.map_err(|e| ApiError::Unavailable(format!("output {key}: {e}")))?;
            let mut text = String::new();
            obj.read_to_string(&mut text).await.map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok::<_, ApiError>(text)
        }
    };
    match q.get("stream").map(String::as_str) {
        Some(st @ ("stdout" | "stderr")) => {
            let text = if st == "stdout" { read("stdout").await? } else { read("stderr").await? };
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        Some(other) => Err(ApiError::Invalid(format!("stream must be stdout or stderr, not {other:?}"))),
        None => {
            let (stdout, stderr) = (read("stdout").await?, read("stderr").await?);
            Ok(Json(StepOutput { job_id: job.0, step: n, stdout, stderr }).into_response())
        }
    }
}

async fn command(
    s: &AppState,
    subject: &str,
    job: JobId,
    body: serde_json::Value,
) -> Result<Json<CommandOutcome>, ApiError> {
    let reply = s.command(subject, &body).await?;
    Ok(Json(CommandOutcome { accepted: true, job_id: job.0, status: reply.status, message: reply.message }))
}

/// Approves a job awaiting approval (ADMIN jobs need `confirmation`).
#[utoipa::path(post, path = "/v1/jobs/{id}/approve", params(("id" = String, Path)), request_body = CommandBody,
    responses((status = 200, body = CommandOutcome), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn approve(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson<CommandBody>,
) -> Result<Json<CommandOutcome>, ApiError> {
    let job = parse_job(&id)?;
    let cmd = commands::Approve { job_id: job, token: caller.token, comment: b.comment, confirmation: b.confirmation };
    command(&s, commands::APPROVE, job, serde_json::to_value(cmd).unwrap_or_default()).await
}

/// Denies a job awaiting approval.
#[utoipa::path(post, path = "/v1/jobs/{id}/deny", params(("id" = String, Path)), request_body = CommandBody,
    responses((status = 200, body = CommandOutcome), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 503, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn deny(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson<CommandBody>,
) -> Result<Json<CommandOutcome>, ApiError> {
    let job = parse_job(&id)?;
    let cmd = commands::Deny { job_id: job, token: caller.token, reason: b.reason.unwrap_or_else(|| "denied".into()) };
    command(&s, commands::DENY, job, serde_json::to_value(cmd).unwrap_or_default()).await
}

/// Cancels a job that has not finished.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", params(("id" = String, Path)), request_body = CommandBody,
    responses((status = 200, body = CommandOutcome), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 503, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn cancel(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson<CommandBody>,
) -> Result<Json<CommandOutcome>, ApiError> {
    let job = parse_job(&id)?;
    let cmd = commands::Cancel {
        job_id: job,
        token: caller.token,
        reason: b.reason.unwrap_or_else(|| "cancelled by request".into()),
    };
    command(&s, commands::CANCEL, job, serde_json::to_value(cmd).unwrap_or_default()).await
}
