//! The sentinel's alerts: `GET /v1/alerts` reads its table; `POST
//! /v1/alerts/silences` asks the sentinel (over NATS, with the caller's token,
//! which it verifies again) to record a silence.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use skynet_contract::alert::{self, SilenceAlerts};
use skynet_contract::commands::CommandReply;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::guard::Caller;
use crate::state::AppState;

/// Query of `GET /v1/alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// `firing` (default) or `all` (resolved too, the latest 500).
    pub status: Option<String>,
}

/// The alerts, most severe and newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<serde_json::Value>,
}

/// Body of `POST /v1/alerts/silences`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Label equalities an alert must all have (`kind`, `severity`, `subject`, `executor`, …).
    pub matchers: BTreeMap<String, String>,
    /// For how long, in seconds (at most 30 days).
    pub duration_secs: u64,
    #[serde(default)]
    pub reason: String,
}

/// Firing alerts (or all).
#[utoipa::path(get, path = "/v1/alerts", params(AlertsQuery),
    responses((status = 200, body = AlertList), (status = 400, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list(State(s): State<AppState>, Query(q): Query<AlertsQuery>) -> Result<Json<AlertList>, ApiError> {
    let all = match q.status.as_deref() {
        None | Some("firing") => false,
        Some("all") => true,
        Some(other) => return Err(ApiError::Invalid(format!("status {other:?}: firing or all"))),
    };
    let alerts: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT to_jsonb(a) FROM alerts a WHERE $1 OR status = 'firing'
         ORDER BY status = 'firing' DESC, CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
                  raised_at DESC LIMIT 500",
    )
    .bind(all)
    .fetch_all(&s.db)
    .await?;
    Ok(Json(AlertList { alerts }))
}

/// Mutes matching alerts for a time (recorded as an event by the sentinel).
#[utoipa::path(post, path = "/v1/alerts/silences", request_body = NewSilence,
    responses((status = 201, body = Object), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn silence(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
    Json(b): Json<NewSilence>,
) -> Result<(StatusCode, Json<CommandReply>), ApiError> {
    let token = caller.map(|Extension(c)| c.token).ok_or(ApiError::Unauthorized)?;
    let body = SilenceAlerts { token, matchers: b.matchers, duration_secs: b.duration_secs, reason: b.reason };
    let raw = s.request(alert::SILENCE, serde_json::to_vec(&body).unwrap_or_default()).await?;
    let reply: CommandReply =
        serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(format!("unreadable sentinel reply: {e}")))?;
    if reply.accepted {
        return Ok((StatusCode::CREATED, Json(reply)));
    }
    Err(ApiError::refused(reply.code.as_deref(), reply.message))
}
