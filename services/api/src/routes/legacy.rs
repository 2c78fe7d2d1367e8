//! The predecessor's endpoints (§15), with the same meaning and its defects
//! fixed: the plan consults the policy, reports are recorded in the log,
//! `/v1/execute` goes through governance like any job, health is real.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Utc;
use futures::StreamExt;
use serde::Deserialize;
use skynet_bus::codec;
use skynet_contract::commands::{POLICY_CHECK, PolicyCheckReply};
use skynet_contract::executor::{DIAGNOSE_SUBJECT, Diagnosis, ExecutorStatus, Health};
use skynet_contract::task::{
    PLAN_PREVIEW, PlanPreview, PlanPreviewReply, REPORT_RECEIVED, ReportReceived, TaskRequested,
};
use skynet_contract::{Envelope, ExecSpec, ExecStep, Plan, PlanStep, Risk, subjects};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::guard;
use crate::state::AppState;

/// `GET /`.
#[utoipa::path(get, path = "/v1", responses((status = 200, body = Object)))]
pub async fn root() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "service": "SKYNET Control Plane API", "version": env!("CARGO_PKG_VERSION"), "status": "online", "docs": "/openapi.json", "dashboard": "/",
        "endpoints": {"tasks": "/v1/tasks", "jobs": "/v1/jobs", "events": "/v1/events", "plan": "/v1/plan", "report": "/v1/report",
            "policy_check": "/v1/policy/check", "health": "/v1/health"}
    }))
}

/// `GET /metrics`: the Prometheus text exposition of this process (jobs,
/// stages, consumers, executors, alerts: see ARCHITECTURE.md).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, body = String, content_type = "text/plain"), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn metrics(State(s): State<AppState>) -> Result<impl axum::response::IntoResponse, crate::error::ApiError> {
    let render = s
        .config
        .metrics
        .as_ref()
        .ok_or_else(|| crate::error::ApiError::NotFound("metrics are not enabled in this process".into()))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], (render.0)()))
}

/// `GET /v1/health`: NATS, the database, whether the services answer, and the
/// sentinel's look (dependencies, projector lag, alerts firing by severity;
/// no details: the route is public).
#[utoipa::path(get, path = "/v1/health", responses((status = 200, body = Object), (status = 503, body = Object)))]
pub async fn health(State(s): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let nats_ok = s.nats.connection_state() == async_nats::connection::State::Connected;
    let db_ok = sqlx::query("SELECT 1").execute(&s.db).await.is_ok();
    let policy_ok = s.request(POLICY_CHECK, br#"{"action":"git_status"}"#.to_vec()).await.is_ok();
    let online = executors(&s).await.map(|e| e.len()).unwrap_or(0);
    let sentinel = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        s.nats.request(skynet_contract::alert::STATUS, bytes::Bytes::new()),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .and_then(|m| serde_json::from_slice::<Option<skynet_contract::alert::SystemStatus>>(&m.payload).ok().flatten());
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let critical = sentinel
        .as_ref()
        .is_some_and(|st| st.alerts.iter().any(|a| a.severity == skynet_contract::alert::Severity::Critical));
    let status = if nats_ok && db_ok && policy_ok && online > 0 && !critical { "ok" } else { "degraded" };
    let code = if nats_ok && db_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let watched = sentinel.map(|st| {
        let firing = |sev: skynet_contract::alert::Severity| st.alerts.iter().filter(|a| a.severity == sev).count();
        let dependencies: serde_json::Map<String, serde_json::Value> =
            st.dependencies.iter().map(|(name, error)| (name.clone(), word(error.is_none()).into())).collect();
        // A look older than 30 s is the sentinel not looking any more.
        let stale = (chrono::Utc::now() - st.at).num_seconds() > 30;
        serde_json::json!({"looked_at": st.at, "stale": stale, "dependencies": dependencies, "projector_lag": st.projector_lag,
            "alerts_firing": {"critical": firing(skynet_contract::alert::Severity::Critical),
                "warning": firing(skynet_contract::alert::Severity::Warning), "info": firing(skynet_contract::alert::Severity::Info)}})
    });
    (
        code,
        Json(serde_json::json!({"status": status, "version": env!("CARGO_PKG_VERSION"),
            "components": {"nats": word(nats_ok), "database": word(db_ok), "policy_engine": word(policy_ok),
                "executors_online": online, "sentinel": watched}})),
    )
}

/// `POST /v1/plan` request (the predecessor's shape).
#[derive(Debug, Deserialize, ToSchema)]
pub struct PlanRequest {
    pub request_id: uuid::Uuid,
    pub user_message: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub constraints: serde_json::Map<String, serde_json::Value>,
}

/// Plans without creating a job; risk comes from the policy, not the planner.
#[utoipa::path(post, path = "/v1/plan", request_body = PlanRequest,
    responses((status = 200, body = Object), (status = 422, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn plan(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<PlanRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if req.user_message.trim().is_empty() {
        return Err(ApiError::Invalid("user_message must not be empty".into()));
    }
    let working_dir = req.context.get("working_dir").and_then(|v| v.as_str()).map(str::to_owned);
    let preview = PlanPreview { intent: req.user_message.clone(), working_dir };
    let raw = s.request(PLAN_PREVIEW, serde_json::to_vec(&preview).unwrap_or_default()).await?;
    let reply: PlanPreviewReply = serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(plan) = reply.plan else {
        return Err(ApiError::Invalid(format!("no plan: {}", reply.error.unwrap_or_default())));
    };
    let allowed: Vec<String> = req
        .constraints
        .get("allowed_targets")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_else(|| vec!["laptop".into()]);
    let gates_for: Vec<String> = req
        .constraints
        .get("requires_approval_for")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_else(|| vec!["deploy_prod".into(), "send_email".into()]);
    let mut worst = ("low", false);
    let mut steps = Vec::new();
    let mut gates = Vec::new();
    for (i, st) in plan.steps.iter().enumerate() {
        let action = st.action.clone().unwrap_or_else(|| st.title.clone());
        let check: PolicyCheckReply = serde_json::from_slice(
            &s.request(POLICY_CHECK, serde_json::to_vec(&serde_json::json!({"action": action})).unwrap_or_default())
                .await?,
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        let rank = |r: &str| match r {
            "low" => 0,
            "med" => 1,
            _ => 2,
        };
        if rank(&check.risk_level) > rank(worst.0) || !check.allowed {
            worst = (if check.allowed { leak(&check.risk_level) } else { "high" }, worst.1 || check.requires_approval);
        }
        worst.1 |= check.requires_approval || !check.allowed;
        let text = format!("{} {}", st.description, action).to_lowercase();
        let target = if text.contains("deploy") || text.contains("production") {
            "ec2"
        } else if text.contains("docker") {
            "docker"
        } else {
            "laptop"
        };
        let target = if allowed.iter().any(|a| a == target) {
            target.to_owned()
        } else {
            allowed.first().cloned().unwrap_or_else(|| "laptop".into())
        };
        let agent = ["test", "pytest"]
            .iter()
            .find(|w| text.contains(*w))
            .map(|_| "tester")
            .or_else(|| text.contains("build").then_some("builder"))
            .or_else(|| (text.contains("deploy") || text.contains("push")).then_some("deployer"))
            .or_else(|| text.contains("git").then_some("git"))
            .unwrap_or("executor");
        for g in &gates_for {
            if text.contains(&g.to_lowercase()) {
                gates.push(serde_json::json!({"gate": g, "required": true, "when_step": i + 1, "reason": format!("Step involves {g}")}));
            }
        }
        steps.push(serde_json::json!({"step": i + 1, "agent": agent, "action": action, "target": target,
            "description": st.description, "estimated_time_min": st.estimated_minutes}));
    }
    Ok(Json(serde_json::json!({
        "request_id": req.request_id,
        "decision": {"mode": if worst.1 { "approval_required" } else { "execute" }, "risk_level": worst.0,
            "model_policy": {"default": reply.planner, "fallback_reason": reply.fallback_reason},
            "reason": if worst.1 { "Requires approval before execution" } else { "Auto-approved (low risk)" }},
        "execution_plan": steps,
        "approval_gates": gates,
        "summary": plan.summary,
        "artifacts": {"expected": plan.artifacts, "bucket": skynet_bus::definitions::ARTIFACTS_BUCKET}
    })))
}

/// Output a quick step carried in its result event.
fn inline(r: &mut serde_json::Value, data: &serde_json::Value) {
    for key in ["stdout", "stderr"] {
        if let Some(text) = data.get(key).and_then(|v| v.as_str()) {
            r[key] = text.into();
            if key == "stdout" {
                r["output"] = text.into();
            }
        }
    }
}

fn leak(level: &str) -> &'static str {
    match level {
        "low" => "low",
        "med" => "med",
        _ => "high",
    }
}

/// `POST /v1/report` request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReportRequest {
    pub request_id: uuid::Uuid,
    #[schema(value_type = Vec<Object>)]
    pub step_reports: Vec<serde_json::Value>,
    pub overall_status: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Records an outside agent's execution report in the log (the predecessor kept
/// it in memory).
#[utoipa::path(post, path = "/v1/report", request_body = ReportRequest,
    responses((status = 200, body = Object), (status = 422, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn report(
    State(s): State<AppState>,
    ApiJson(r): ApiJson<ReportRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let statuses = ["pending", "in_progress", "completed", "failed", "skipped"];
    for (i, step) in r.step_reports.iter().enumerate() {
        let st = step.get("status").and_then(|v| v.as_str()).unwrap_or("");
        if !statuses.contains(&st) || step.get("step").and_then(serde_json::Value::as_u64).is_none() {
            return Err(ApiError::Invalid(format!(
                "step_reports[{i}] needs an integer step and a status in {statuses:?}"
            )));
        }
    }
    let next_action = match r.overall_status.as_str() {
        "failed" => Some("Review error logs and retry failed steps"),
        "completed" => Some("Task completed successfully"),
        _ => None,
    };
    let data = ReportReceived {
        request_id: r.request_id.to_string(),
        step_reports: r.step_reports,
        overall_status: r.overall_status,
        metadata: r.metadata,
    };
    let env = Envelope::new(
        REPORT_RECEIVED,
        uuid::Uuid::new_v4().to_string(),
        "skynet/api",
        Some(r.request_id.to_string()),
        Utc::now(),
        &data,
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    skynet_bus::publish(&s.js, &subjects::report(&data.request_id), &env)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(serde_json::json!({"request_id": r.request_id, "received": true, "next_action": next_action})))
}

/// `POST /v1/policy/check` (§2.6, case-insensitive now).
#[utoipa::path(post, path = "/v1/policy/check", request_body = Object,
    responses((status = 200, body = Object), (status = 422, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn policy_check(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<skynet_contract::commands::PolicyCheck>,
) -> Result<Json<PolicyCheckReply>, ApiError> {
    let raw = s.request(POLICY_CHECK, serde_json::to_vec(&body).unwrap_or_default()).await?;
    Ok(Json(serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(e.to_string()))?))
}

/// A step of the predecessor's execution spec.
#[derive(Debug, Deserialize)]
struct LegacyStep {
    action: String,
    #[serde(default)]
    params: BTreeMap<String, serde_json::Value>,
}

fn legacy_steps(spec: &serde_json::Value) -> Result<Vec<LegacyStep>, ApiError> {
    let list = spec
        .get("steps")
        .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        .or_else(|| spec.get("actions"))
        .cloned();
    let steps: Vec<serde_json::Value> = list.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    if steps.is_empty() {
        return Err(ApiError::Invalid("execution_spec needs a non-empty `steps` (or `actions`) list".into()));
    }
    steps
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(action) => Ok(LegacyStep { action, params: BTreeMap::new() }),
            other => serde_json::from_value(other).map_err(|e| ApiError::Invalid(format!("bad step: {e}"))),
        })
        .collect()
}

/// `POST /v1/execute` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    #[schema(value_type = Object)]
    pub execution_spec: serde_json::Value,
    /// Seconds to wait, 1..=1800.
    pub timeout: Option<u64>,
}

/// Runs an execution spec as a governed job and waits for it (policy and
/// approvals apply; a job still waiting for approval at the timeout says so).
#[utoipa::path(post, path = "/v1/execute", request_body = ExecuteRequest,
    responses((status = 200, body = Object), (status = 422, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn execute(
    State(s): State<AppState>,
    Extension(caller): Extension<guard::Caller>,
    ApiJson(req): ApiJson<ExecuteRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let timeout = req.timeout.unwrap_or(300);
    if !(1..=1800).contains(&timeout) {
        return Err(ApiError::Invalid("timeout must be 1..=1800 seconds".into()));
    }
    let steps = legacy_steps(&req.execution_spec)?;
    let working_dir = req.execution_spec.get("working_dir").and_then(|v| v.as_str()).map(str::to_owned);
    let plan = Plan {
        summary: "direct execution".into(),
        steps: steps
            .iter()
            .map(|st| PlanStep {
                title: st.action.clone(),
                description: String::new(),
                action: Some(st.action.clone()),
                params: st.params.clone(),
                risk: Risk::ReadOnly,
                estimated_minutes: 1,
                continue_on_error: false,
            })
            .collect(),
        artifacts: vec![],
    };
    let id = uuid::Uuid::new_v4().to_string();
    let job = skynet_contract::JobId::for_request(super::tasks::SOURCE, &id);
    let mut sub =
        s.nats.subscribe(subjects::job_stream(job)).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let data = TaskRequested {
        intent: format!("execute {}", steps.iter().map(|x| x.action.as_str()).collect::<Vec<_>>().join(", ")),
        working_dir,
        project: None,
        requested_by: Some(caller.principal.name.clone()),
        constraints: BTreeMap::new(),
        plan: Some(plan),
    };
    let started = Instant::now();
    super::tasks::publish_task(&s, &id, &data).await?;
    let terminal = ["succeeded", "failed", "cancelled", "timed_out", "denied", "planning_failed"];
    let mut outcome = "timeout".to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        let Ok(env) = codec::decode(msg.headers.as_ref(), &msg.payload) else { continue };
        if let Some(kind) = terminal.iter().find(|k| env.ty == format!("skynet.job.{k}.v1")) {
            outcome = (*kind).to_owned();
            break;
        }
        if env.ty == "skynet.job.policy_decided.v1" && env.data["requires_approval"] == true {
            outcome = "awaiting_approval".into();
            break;
        }
    }
    let history = s.store.load(job).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut results: Vec<serde_json::Value> = steps.iter().map(|st| serde_json::json!({"action": st.action, "status": "pending", "output": "", "stdout": "", "stderr": "", "error": null})).collect();
    let mut provider = "unknown".to_owned();
    for (_, env) in &history.events {
        let i = env.data.get("step").and_then(serde_json::Value::as_u64).and_then(|i| usize::try_from(i).ok());
        match (env.ty.as_str(), i.and_then(|i| results.get_mut(i))) {
            ("skynet.job.scheduled.v1", _) => provider = env.data["provider"].as_str().unwrap_or("unknown").to_owned(),
            ("skynet.job.step_output.v1", Some(r)) => {
                let key = if env.data["stream"] == "stderr" { "stderr" } else { "stdout" };
                let text = format!("{}{}", r[key].as_str().unwrap_or(""), env.data["chunk"].as_str().unwrap_or(""));
                r[key] = text.clone().into();
                if key == "stdout" {
                    r["output"] = text.into();
                }
            }
            ("skynet.job.step_succeeded.v1", Some(r)) => {
                r["status"] = "success".into();
                inline(r, &env.data);
            }
            ("skynet.job.step_failed.v1", Some(r)) => {
                r["status"] = "failed".into();
                r["error"] = env.data["error"].clone();
                inline(r, &env.data);
            }
            _ => {}
        }
    }
    let completed = results.iter().filter(|r| r["status"] != "pending").count();
    let status = match outcome.as_str() {
        "succeeded" => "success",
        "failed" if completed > 0 => "partial_failure",
        other => other,
    };
    Ok(Json(serde_json::json!({
        "job_id": job, "status": status, "provider": provider, "results": results,
        "steps_completed": completed, "steps_total": steps.len(), "elapsed_seconds": started.elapsed().as_secs_f64(),
        "timeout_seconds": timeout, "error": if status == "success" { serde_json::Value::Null } else { serde_json::Value::from(outcome) }
    })))
}

/// `POST /v1/scheduler/diagnose` request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DiagnoseRequest {
    #[schema(value_type = Object)]
    pub execution_spec: serde_json::Value,
    #[serde(default = "default_fallback")]
    pub fallback: String,
}

fn default_fallback() -> String {
    "local".into()
}

/// The scheduler's score breakdown for a spec, without scheduling it.
#[utoipa::path(post, path = "/v1/scheduler/diagnose", request_body = DiagnoseRequest,
    responses((status = 200, body = Object), (status = 422, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn diagnose(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<DiagnoseRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(p) = req.execution_spec.get("provider").and_then(|v| v.as_str()).filter(|p| !p.is_empty()) {
        return Ok(Json(serde_json::json!({"selected_provider": p, "fallback_used": false, "preselected_provider": p,
            "required_capabilities": [], "candidates": [p], "scores": []})));
    }
    let steps = legacy_steps(&req.execution_spec)?;
    let spec = ExecSpec {
        steps: steps
            .into_iter()
            .enumerate()
            .map(|(i, st)| ExecStep {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                action: st.action,
                params: st.params,
                timeout_secs: 60,
                risk: Risk::ReadOnly,
                continue_on_error: false,
                description: String::new(),
            })
            .collect(),
        working_dir: "/tmp".into(),
        total_timeout_secs: 1800,
        approved_risk: Risk::Admin,
    };
    let body = serde_json::to_vec(&skynet_contract::executor::DiagnoseRequest { spec }).unwrap_or_default();
    let d: Diagnosis = serde_json::from_slice(&s.request(DIAGNOSE_SUBJECT, body).await?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let scores: Vec<_> = d
        .scores
        .iter()
        .map(|x| serde_json::json!({"provider": x.provider, "total_score": x.total, "health_score": x.health, "load_score": x.load,
            "capability_score": x.capability, "success_score": x.success, "latency_score": x.latency, "excluded": x.excluded}))
        .collect();
    let candidates: Vec<_> = d.scores.iter().filter(|x| x.excluded.is_none()).map(|x| x.provider.clone()).collect();
    Ok(Json(serde_json::json!({
        "selected_provider": d.selected_provider.clone().unwrap_or(req.fallback), "fallback_used": d.selected_provider.is_none(),
        "preselected_provider": null, "required_capabilities": d.required_capabilities, "candidates": candidates, "scores": scores,
        "reason": d.reason
    })))
}

async fn executors(s: &AppState) -> Result<Vec<ExecutorStatus>, ApiError> {
    let kv =
        s.js.get_key_value(skynet_bus::definitions::EXECUTORS_BUCKET)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut keys = kv.keys().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(Ok(k)) = keys.next().await {
        if let Ok(Some(v)) = kv.get(&k).await
            && let Ok(st) = serde_json::from_slice::<ExecutorStatus>(&v)
            && Utc::now() - st.heartbeat_at < chrono::Duration::seconds(10)
        {
            out.push(st);
        }
    }
    Ok(out)
}

/// Provider health as the executors report it; unhealthy details are redacted
/// for unauthenticated callers (as before).
#[utoipa::path(get, path = "/v1/providers/health", responses((status = 200, body = Object), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn providers_health(State(s): State<AppState>, req: Request) -> Result<Json<serde_json::Value>, ApiError> {
    let authed = req.extensions().get::<guard::Caller>().is_some();
    let list = executors(&s).await?;
    let mut providers = serde_json::Map::new();
    let (mut healthy, mut unhealthy, mut unknown) = (0, 0, 0);
    let mut last_check = None;
    for e in &list {
        last_check = last_check.max(Some(e.heartbeat_at));
        for (name, p) in &e.providers {
            let key = format!("{name}@{}", e.id);
            let status = match p.health {
                Health::Healthy => {
                    healthy += 1;
                    "healthy"
                }
                Health::Degraded => {
                    unknown += 1;
                    "degraded"
                }
                Health::Unhealthy => {
                    unhealthy += 1;
                    "unhealthy"
                }
            };
            let message = if p.health == Health::Unhealthy && !authed {
                "Provider unhealthy (details redacted)".to_owned()
            } else {
                p.message.clone()
            };
            providers.insert(
                key,
                serde_json::json!({"provider": name, "executor": e.id, "status": status, "message": message,
                "latency_ms": p.latency_ms, "capabilities": p.capabilities, "last_checked": e.heartbeat_at}),
            );
        }
    }
    let total = healthy + unhealthy + unknown;
    let status = if total == 0 {
        "no_data"
    } else if unhealthy == 0 && unknown == 0 {
        "healthy"
    } else {
        "degraded"
    };
    Ok(Json(
        serde_json::json!({"status": status, "healthy_count": healthy, "unhealthy_count": unhealthy, "unknown_count": unknown,
        "total_count": total, "providers": providers, "last_check": last_check, "executors_online": list.len()}),
    ))
}
