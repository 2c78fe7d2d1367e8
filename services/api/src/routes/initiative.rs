//! The initiative's kill switch and status over HTTP: `GET /v1/initiative`
//! asks the initiative service what it holds and would do; `POST
//! /v1/initiative/pause|resume` asks it (over NATS, with the caller's token,
//! which it verifies again) to record the switch.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use skynet_contract::commands::CommandReply;
use skynet_contract::initiative::{self, InitiativeStatus, SwitchInitiative};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::guard::Caller;
use crate::state::AppState;

/// Body of `POST /v1/initiative/pause` and `/resume`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    #[serde(default)]
    pub reason: String,
    /// The client's id for this command: a retry with the same id records
    /// nothing twice (default: a new one per request).
    #[serde(default)]
    pub command_id: Option<String>,
}

/// Whether the initiative is paused, its counts against the limits, each
/// strategy's last decision and what it would do now.
#[utoipa::path(get, path = "/v1/initiative",
    responses((status = 200, body = Object), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn status(State(s): State<AppState>) -> Result<Json<InitiativeStatus>, ApiError> {
    let raw = s.request(initiative::STATUS, Vec::new()).await?;
    let status =
        serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(format!("unreadable initiative status: {e}")))?;
    Ok(Json(status))
}

/// Stops the initiative submitting anything new, at once (an event naming the caller).
#[utoipa::path(post, path = "/v1/initiative/pause", request_body = Switch,
    responses((status = 200, body = Object), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn pause(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Option<Json<Switch>>,
) -> Result<Json<CommandReply>, ApiError> {
    switch(&s, initiative::PAUSE, caller, body).await
}

/// Lets the initiative submit again (an event naming the caller).
#[utoipa::path(post, path = "/v1/initiative/resume", request_body = Switch,
    responses((status = 200, body = Object), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn resume(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Option<Json<Switch>>,
) -> Result<Json<CommandReply>, ApiError> {
    switch(&s, initiative::RESUME, caller, body).await
}

async fn switch(
    s: &AppState,
    subject: &'static str,
    caller: Option<Extension<Caller>>,
    body: Option<Json<Switch>>,
) -> Result<Json<CommandReply>, ApiError> {
    let token = caller.map(|Extension(c)| c.token).ok_or(ApiError::Unauthorized)?;
    let Switch { reason, command_id } = body.map(|Json(b)| b).unwrap_or_default();
    let command_id = command_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let cmd = SwitchInitiative { token, reason, command_id };
    Ok(Json(s.command(subject, &cmd).await?))
}
