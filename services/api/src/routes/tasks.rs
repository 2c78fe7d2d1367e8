//! `POST /v1/tasks`: submit a task. The API publishes the same CloudEvent any
//! NATS client could, so the job id is derived exactly as for them; an
//! `Idempotency-Key` becomes the CloudEvent id, so a retried request is one job.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use skynet_contract::task::{MAX_SUBMISSION_BYTES, TASK_REQUESTED, TaskRequested};
use skynet_contract::{Envelope, JobId, subjects};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// CloudEvent `source` of tasks submitted over HTTP.
pub const SOURCE: &str = "skynet/api";

/// Body of `POST /v1/tasks`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitTask {
    /// What you want done, in plain language.
    pub intent: String,
    pub working_dir: Option<String>,
    pub project: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub constraints: BTreeMap<String, serde_json::Value>,
}

/// Answer of `POST /v1/tasks`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskAccepted {
    pub job_id: uuid::Uuid,
    /// Follow the job: `GET` this.
    pub job_url: String,
    /// Or subscribe to its events on NATS.
    pub events_subject: String,
}

/// Submits a task; answers 202 with the job id (idempotent with `Idempotency-Key`).
#[utoipa::path(post, path = "/v1/tasks", request_body = SubmitTask,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key, same job")),
    responses((status = 202, body = TaskAccepted), (status = 400, body = crate::error::Problem),
        (status = 401, body = crate::error::Problem), (status = 422, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn submit(
    State(s): State<AppState>,
    Extension(caller): Extension<crate::guard::Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SubmitTask>,
) -> Result<(StatusCode, Json<TaskAccepted>), ApiError> {
    if body.intent.trim().is_empty() {
        return Err(ApiError::Invalid("intent must not be empty".into()));
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty());
    if key.is_some_and(|k| k.len() > 200) {
        return Err(ApiError::Invalid("Idempotency-Key is longer than 200 characters".into()));
    }
    // Keys are the caller's own: the same key from two principals is two jobs.
    let who = &caller.principal.name;
    let id = key.map_or_else(|| uuid::Uuid::new_v4().to_string(), |k| format!("{who}:{k}"));
    let data = TaskRequested {
        intent: body.intent,
        working_dir: body.working_dir,
        project: body.project,
        // The requester is the authenticated principal (whatever the body says):
        // it decides who may not approve the job and who may cancel it.
        requested_by: Some(who.clone()),
        constraints: body.constraints,
        plan: None,
    };
    let job = publish_task(&s, &id, &data).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TaskAccepted {
            job_id: job.0,
            job_url: format!("/v1/jobs/{job}"),
            events_subject: subjects::job_stream(job),
        }),
    ))
}

/// Publishes a submission to the intake (durably: JetStream acknowledges it).
pub async fn publish_task(s: &AppState, id: &str, data: &TaskRequested) -> Result<JobId, ApiError> {
    let env = Envelope::new(TASK_REQUESTED, id.to_owned(), SOURCE, None, Utc::now(), data)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if env.to_structured_json().len() > MAX_SUBMISSION_BYTES {
        return Err(ApiError::TooLarge(format!("the task exceeds the {MAX_SUBMISSION_BYTES}-byte submission limit")));
    }
    skynet_bus::publish(&s.js, subjects::INTAKE_TASK, &env)
        .await
        .map_err(|e| ApiError::Unavailable(format!("submitting to NATS: {e}")))?;
    Ok(JobId::for_request(SOURCE, id))
}
