//! Memory: add a preference or fact, search, similar past jobs, stats, forget.
//! Every route asks the memory service over NATS with the caller's token,
//! which the service verifies again (it is the single writer of its tables,
//! retrieval counts included).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use skynet_contract::memory::{self, AddMemory, ForgetMemory, MemoryKind, MemoryQuery, MemoryReply};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::guard::Caller;
use crate::state::AppState;

/// Body of `POST /v1/memory`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMemory {
    /// `user_preference` or `environment_fact` (the other kinds come from the log).
    pub kind: String,
    pub text: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Query of `GET /v1/memory/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// What to look for, in words.
    pub q: String,
    /// Only records of this kind.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// At most this many (1-100, default 10).
    pub limit: Option<u32>,
}

/// Query of `GET /v1/memory/similar`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SimilarQuery {
    /// An intent: past jobs like it.
    pub text: String,
    pub limit: Option<u32>,
}

fn kind(name: &str) -> Result<MemoryKind, ApiError> {
    MemoryKind::parse(name).ok_or_else(|| {
        let all: Vec<&str> = MemoryKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::Invalid(format!("unknown memory type {name:?}; one of {}", all.join(", ")))
    })
}

async fn ask(s: &AppState, subject: &str, body: serde_json::Value) -> Result<MemoryReply, ApiError> {
    let raw = s.request(subject, serde_json::to_vec(&body).unwrap_or_default()).await?;
    let reply: MemoryReply =
        serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(format!("unreadable memory reply: {e}")))?;
    if reply.ok {
        return Ok(reply);
    }
    Err(ApiError::refused(reply.code.as_deref(), reply.message))
}

/// The caller's token: memory answers only principals (even with open reads).
fn token(caller: Option<Extension<Caller>>) -> Result<String, ApiError> {
    caller.map(|Extension(c)| c.token).ok_or(ApiError::Unauthorized)
}

/// Adds a user preference or environment fact (recorded in the log first).
#[utoipa::path(post, path = "/v1/memory", request_body = NewMemory,
    responses((status = 201, body = Object), (status = 401, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn add(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
    Json(b): Json<NewMemory>,
) -> Result<(StatusCode, Json<MemoryReply>), ApiError> {
    let body = AddMemory { token: token(caller)?, kind: kind(&b.kind)?, text: b.text, labels: b.labels };
    let reply = ask(&s, memory::ADD, serde_json::to_value(body).unwrap_or_default()).await?;
    Ok((StatusCode::CREATED, Json(reply)))
}

/// Records ranked by similarity (full-text and trigram, fused) and importance.
#[utoipa::path(get, path = "/v1/memory/search", params(SearchQuery),
    responses((status = 200, body = Object), (status = 401, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn search(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<MemoryReply>, ApiError> {
    let kind = q.kind.as_deref().map(kind).transpose()?;
    let body = MemoryQuery::Search { token: token(caller)?, text: q.q, kind, limit: q.limit.unwrap_or(10) };
    Ok(Json(ask(&s, memory::QUERY_SUBJECT, serde_json::to_value(body).unwrap_or_default()).await?))
}

/// Past jobs like an intent.
#[utoipa::path(get, path = "/v1/memory/similar", params(SimilarQuery),
    responses((status = 200, body = Object), (status = 401, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn similar(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(q): Query<SimilarQuery>,
) -> Result<Json<MemoryReply>, ApiError> {
    let body = MemoryQuery::Search {
        token: token(caller)?,
        text: q.text,
        kind: Some(MemoryKind::TaskExecution),
        limit: q.limit.unwrap_or(5),
    };
    Ok(Json(ask(&s, memory::QUERY_SUBJECT, serde_json::to_value(body).unwrap_or_default()).await?))
}

/// Records per type, where they live and how they are compared.
#[utoipa::path(get, path = "/v1/memory/stats",
    responses((status = 200, body = Object), (status = 401, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn stats(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Json<MemoryReply>, ApiError> {
    let body = MemoryQuery::Stats { token: token(caller)? };
    Ok(Json(ask(&s, memory::QUERY_SUBJECT, serde_json::to_value(body).unwrap_or_default()).await?))
}

/// Forgets a record (an event in the log; needs the approve role).
#[utoipa::path(delete, path = "/v1/memory/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn forget(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<MemoryReply>, ApiError> {
    let body = ForgetMemory { token: token(caller)?, id, reason: "forgotten by request (API)".into() };
    Ok(Json(ask(&s, memory::FORGET, serde_json::to_value(body).unwrap_or_default()).await?))
}
