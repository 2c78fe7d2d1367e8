//! The emergency stop over HTTP: `GET /v1/system` reads the pause from the
//! log; `POST /v1/system/pause|resume` (admin role) asks the policy service,
//! with the caller's token (verified again there), to record the switch.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use skynet_contract::commands::CommandReply;
use skynet_contract::system::{self, SwitchSystem, SystemState};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::guard::Caller;
use crate::state::AppState;

/// Body of `POST /v1/system/pause` and `/resume`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemSwitch {
    #[serde(default)]
    pub reason: String,
    /// Pause only: let dispatched jobs finish (default: cancel them all).
    #[serde(default)]
    pub keep_running: bool,
    /// The client's id for this command: a retry with the same id records
    /// nothing twice (default: a new one per request).
    #[serde(default)]
    pub command_id: Option<String>,
}

/// Whether the system is paused, by whom, since when.
#[utoipa::path(get, path = "/v1/system",
    responses((status = 200, body = Object), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn status(State(s): State<AppState>) -> Result<Json<SystemState>, ApiError> {
    let stream =
        s.js.get_stream(skynet_bus::definitions::EVENTS_STREAM)
            .await
            .map_err(|e| ApiError::Unavailable(format!("the log: {e}")))?;
    let state =
        skynet_bus::pause::current(&stream).await.map_err(|e| ApiError::Unavailable(format!("the pause: {e}")))?;
    Ok(Json(state))
}

/// Emergency stop: every job running on an executor cancelled (unless `keep_running`) and
/// dispatching held until a resume; an event naming the caller.
#[utoipa::path(post, path = "/v1/system/pause", request_body = SystemSwitch,
    responses((status = 200, body = Object), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn pause(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Option<Json<SystemSwitch>>,
) -> Result<Json<CommandReply>, ApiError> {
    switch(&s, system::PAUSE, caller, body).await
}

/// Lifts a pause: held jobs are dispatched.
#[utoipa::path(post, path = "/v1/system/resume", request_body = SystemSwitch,
    responses((status = 200, body = Object), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn resume(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Option<Json<SystemSwitch>>,
) -> Result<Json<CommandReply>, ApiError> {
    switch(&s, system::RESUME, caller, body).await
}

async fn switch(
    s: &AppState,
    subject: &'static str,
    caller: Option<Extension<Caller>>,
    body: Option<Json<SystemSwitch>>,
) -> Result<Json<CommandReply>, ApiError> {
    let token = caller.map(|Extension(c)| c.token).ok_or(ApiError::Unauthorized)?;
    let SystemSwitch { reason, keep_running, command_id } = body.map(|Json(b)| b).unwrap_or_default();
    let command_id = command_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let cmd = SwitchSystem { token, reason, command_id, cancel_running: subject == system::PAUSE && !keep_running };
    Ok(Json(s.command(subject, &cmd).await?))
}
