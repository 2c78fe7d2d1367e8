//! The openclaw provider against a real HTTP server, started by the test, that
//! speaks the gateway's API (§7.6) — including its error bodies without a
//! `status` field, which the predecessor read as success.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::*;
use serde_json::json;
use skynet_contract::executor::Health;
use skynet_executor::ProvidersConfig;
use skynet_executor::providers::StepRequest;
use skynet_executor::providers::openclaw::OpenClaw;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Gateway {
    agent: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    /// Set once a long action is in flight.
    busy: Arc<AtomicBool>,
}

async fn action(State(g): State<Gateway>, Json(body): Json<serde_json::Value>) -> Response {
    if !g.agent.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "No agent connected."}))).into_response();
    }
    assert_eq!(body["confirmed"], true);
    match body["action"].as_str() {
        Some("git_status") => {
            Json(json!({"type": "action_response", "request_id": "r1", "status": "success", "action": "git_status",
            "result": {"returncode": 0, "stdout": "On branch main\n", "stderr": ""}}))
            .into_response()
        }
        Some("git_commit") => {
            Json(json!({"type": "action_response", "request_id": "r2", "status": "success", "action": "git_commit",
            "result": {"returncode": 128, "stdout": "", "stderr": "fatal: not a git repository"}}))
            .into_response()
        }
        Some("run_tests") => {
            g.busy.store(true, Ordering::SeqCst);
            // The fake agent hangs, as a real one running long tests would.
            tokio::time::sleep(Duration::from_secs(30)).await;
            Json(json!({"status": "success", "result": {"returncode": 0}})).into_response()
        }
        Some(a) => Json(
            json!({"type": "action_response", "status": "error", "action": a, "error": format!("unknown action {a}")}),
        )
        .into_response(),
        None => (StatusCode::BAD_REQUEST, Json(json!({"error": "Missing 'action' field."}))).into_response(),
    }
}

async fn serve(agent: bool) -> anyhow::Result<(String, Gateway)> {
    let g = Gateway::default();
    g.agent.store(agent, Ordering::SeqCst);
    let app =
        axum::Router::new()
            .route(
                "/status",
                get(|State(g): State<Gateway>| async move {
                    Json(json!({"agent_connected": g.agent.load(Ordering::SeqCst)}))
                }),
            )
            .route("/action", post(action))
            .route(
                "/emergency-stop",
                post(|State(g): State<Gateway>| async move {
                    g.stopped.store(true, Ordering::SeqCst);
                    Json(json!({"status": "emergency_stop_sent"}))
                }),
            )
            .route("/resume", post(|| async { Json(json!({"status": "resume_sent"})) }))
            .with_state(g.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, g))
}

fn req(action: &str) -> StepRequest {
    StepRequest {
        job: "j".into(),
        step: 0,
        lease: 1,
        action: action.into(),
        params: BTreeMap::new(),
        working_dir: PathBuf::from("/tmp"),
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn gateway_answers_are_read_correctly_including_error_bodies() -> anyhow::Result<()> {
    let (url, g) = serve(true).await?;
    let p = OpenClaw { url: url.clone(), timeout_secs: 130 };
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let none = CancellationToken::new();

    let ok = p.run(&req("git_status"), tx.clone(), &none).await;
    assert!(ok.succeeded() && String::from_utf8_lossy(&ok.stdout).contains("On branch main"), "{ok:?}");
    let failed = p.run(&req("git_commit"), tx.clone(), &none).await;
    assert_eq!(failed.exit_code, Some(128));
    assert!(!failed.succeeded());
    let refused = p.run(&req("teleport"), tx.clone(), &none).await;
    assert!(refused.error.as_deref().unwrap_or("").contains("unknown action teleport"), "{refused:?}");

    // The defect: a 503 without `status` was success with exit 0. Not any more.
    g.agent.store(false, Ordering::SeqCst);
    let down = p.run(&req("git_status"), tx.clone(), &none).await;
    assert!(!down.succeeded());
    assert!(down.error.as_deref().unwrap_or("").contains("HTTP 503: No agent connected."), "{down:?}");
    assert_eq!(p.health().await.0, Health::Degraded);
    g.agent.store(true, Ordering::SeqCst);
    assert_eq!(p.health().await.0, Health::Healthy);
    assert_eq!(OpenClaw { url: "http://127.0.0.1:9".into(), timeout_secs: 1 }.health().await.0, Health::Unhealthy);

    // Cancel sends the (whole-agent) emergency stop; resume undoes it.
    let cancel = CancellationToken::new();
    let (c2, busy) = (cancel.clone(), g.busy.clone());
    tokio::spawn(async move {
        // Cancel once the action is in flight at the gateway.
        let _ = skynet_testkit::eventually(Duration::from_secs(10), "the action in flight", || {
            let busy = busy.clone();
            async move { busy.load(Ordering::SeqCst).then_some(()) }
        })
        .await;
        c2.cancel();
    });
    let stopped = p.run(&req("run_tests"), tx, &cancel).await;
    assert!(stopped.cancelled, "{stopped:?}");
    assert!(g.stopped.load(Ordering::SeqCst));
    p.resume().await.map_err(|e| anyhow::anyhow!(e))?;
    Ok(())
}

#[tokio::test]
async fn a_job_runs_through_the_gateway_in_an_executor() -> anyhow::Result<()> {
    let (url, _g) = serve(true).await?;
    let env = env().await?;
    let stop = start_executor(
        &env,
        "x-claw",
        ProvidersConfig { openclaw: Some(OpenClaw { url, timeout_secs: 130 }), ..ProvidersConfig::default() },
    )
    .await?;
    let job =
        scheduled(&env, "claw-1", vec![step("git_status", json!({"working_dir": "/tmp"}))], "/tmp", "openclaw", vec![])
            .await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.succeeded.v1");
    let job = scheduled(
        &env,
        "claw-2",
        vec![step("git_commit", json!({"working_dir": "/tmp", "message": "m"}))],
        "/tmp",
        "openclaw",
        vec![],
    )
    .await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.failed.v1");
    assert_eq!(wait_for(&env, job, "step_failed").await?["exit_code"], 128);
    stop.cancel();
    Ok(())
}
