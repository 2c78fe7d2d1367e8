//! The openclaw provider: the predecessor's remote gateway over HTTP (§7.5–7.6):
//! `POST /action`, `GET /status`, `POST /emergency-stop`, `POST /resume`.
//!
//! Fixed defect (§19.7): the gateway's error bodies (400/503/504, which carry no
//! `status` field) were read as success with exit code 0. Any non-2xx answer,
//! and any 2xx answer whose `status` is not `success`, is now a failure with the
//! gateway's `error` text. Cancel is the gateway's emergency stop, which stops
//! the whole agent, not one job: that is the gateway's API, said here plainly.

use std::time::Duration;

use serde::Deserialize;
use skynet_contract::executor::Health;
use skynet_contract::job::OutputStream;
use tokio_util::sync::CancellationToken;

use super::{OutputSink, StepOutcome, StepRequest};

/// The actions the agent executes (§1.1).
pub const ACTIONS: &[&str] = &[
    "file_read",
    "list_directory",
    "git_status",
    "ollama_chat",
    "run_tests",
    "lint_project",
    "start_dev_server",
    "build_project",
    "file_write",
    "create_directory",
    "git_commit",
    "git_init",
    "git_add_all",
    "install_dependencies",
    "docker_build",
    "zip_project",
    "open_in_vscode",
    "git_push",
    "gh_create_repo",
    "docker_compose_up",
    "close_app",
];

/// Gateway settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenClaw {
    pub url: String,
    /// Limit on one action (the gateway itself gives up after 120 s).
    pub timeout_secs: u64,
}

impl Default for OpenClaw {
    fn default() -> Self {
        OpenClaw { url: "http://127.0.0.1:8766".into(), timeout_secs: 130 }
    }
}

impl OpenClaw {
    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    pub async fn run(&self, req: &StepRequest, out: OutputSink, cancel: &CancellationToken) -> StepOutcome {
        let timeout = req.timeout.min(Duration::from_secs(self.timeout_secs));
        let body = serde_json::json!({"action": req.action, "params": req.params, "confirmed": true});
        let call = Self::client().post(format!("{}/action", self.url)).json(&body).timeout(timeout).send();
        let resp = tokio::select! {
            r = call => r,
            () = cancel.cancelled() => {
                let stop = self.emergency_stop().await;
                return StepOutcome { cancelled: true, error: Some(format!("cancelled ({stop})")), ..StepOutcome::default() };
            }
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return StepOutcome {
                    timed_out: true,
                    error: Some(format!("gateway did not answer within {} s", timeout.as_secs())),
                    ..StepOutcome::default()
                };
            }
            Err(e) => return StepOutcome::error(format!("gateway unreachable: {e}")),
        };
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        let error_text = || v.get("error").and_then(|e| e.as_str()).map(str::to_owned);
        if !status.is_success() {
            return StepOutcome::error(format!(
                "gateway answered HTTP {}: {}",
                status.as_u16(),
                error_text().unwrap_or_else(|| "no error text".into())
            ));
        }
        if v.get("status").and_then(|s| s.as_str()) != Some("success") {
            return StepOutcome {
                exit_code: Some(1),
                error: Some(error_text().unwrap_or_else(|| format!("gateway answered without success: {v}"))),
                ..StepOutcome::default()
            };
        }
        let result = v.get("result").cloned().unwrap_or_default();
        let text = |k: &str| result.get(k).and_then(|s| s.as_str()).unwrap_or_default().to_owned();
        let (stdout, stderr) = (text("stdout"), text("stderr"));
        if !stdout.is_empty() {
            let _ = out.try_send((OutputStream::Stdout, stdout.clone()));
        }
        if !stderr.is_empty() {
            let _ = out.try_send((OutputStream::Stderr, stderr.clone()));
        }
        let code = result
            .get("returncode")
            .and_then(serde_json::Value::as_i64)
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(0);
        StepOutcome {
            exit_code: Some(code),
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
            ..StepOutcome::default()
        }
    }

    /// Stops the agent (all of it) and says what the gateway answered.
    pub async fn emergency_stop(&self) -> String {
        let r =
            Self::client().post(format!("{}/emergency-stop", self.url)).timeout(Duration::from_secs(5)).send().await;
        match r {
            Ok(resp) => match resp.json::<serde_json::Value>().await {
                Ok(v) if v["status"] == "emergency_stop_sent" => "emergency stop sent to the agent".into(),
                Ok(v) => format!(
                    "emergency stop failed: {}",
                    v.get("error").and_then(|e| e.as_str()).unwrap_or("unexpected answer")
                ),
                Err(e) => format!("emergency stop failed: {e}"),
            },
            Err(e) => format!("emergency stop failed: gateway unreachable: {e}"),
        }
    }

    /// Resumes the agent after an emergency stop.
    pub async fn resume(&self) -> Result<(), String> {
        let r = Self::client()
            .post(format!("{}/resume", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        if v["status"] == "resume_sent" { Ok(()) } else { Err(format!("resume failed: {v}")) }
    }

    pub async fn health(&self) -> (Health, String) {
        let r = Self::client().get(format!("{}/status", self.url)).timeout(Duration::from_secs(5)).send().await;
        match r {
            Err(e) => (Health::Unhealthy, format!("gateway unreachable: {e}")),
            Ok(resp) if !resp.status().is_success() => {
                (Health::Unhealthy, format!("gateway answered HTTP {}", resp.status().as_u16()))
            }
            Ok(resp) => match resp.json::<serde_json::Value>().await {
                Ok(v) if v["agent_connected"] == true => (Health::Healthy, "agent connected".into()),
                Ok(_) => (Health::Degraded, "gateway online but no agent connected".into()),
                Err(e) => (Health::Unhealthy, format!("gateway answered garbage: {e}")),
            },
        }
    }
}
