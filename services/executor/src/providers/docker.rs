//! The docker provider: `docker run --rm` of a configured image with the step's
//! working directory mounted at /workspace (the predecessor mounted nothing).
//! A timeout or cancel kills the container by name, not only the CLI.

use std::time::Duration;

use serde::Deserialize;
use skynet_contract::executor::Health;
use tokio_util::sync::CancellationToken;

use super::process::{self, Spawn};
use super::{OutputSink, StepOutcome, StepRequest, commands};

/// Docker settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Docker {
    pub image: String,
    /// The docker CLI.
    pub bin: String,
    pub max_output: usize,
}

impl Default for Docker {
    fn default() -> Self {
        Docker { image: "ubuntu:22.04".into(), bin: "docker".into(), max_output: 1024 * 1024 }
    }
}

impl Docker {
    /// The `docker run` argv for a step, and the container's name.
    pub fn argv(&self, req: &StepRequest) -> Result<(Vec<String>, String), String> {
        let cmd = commands::argv(&req.action, &req.params).map_err(|e| e.to_string())?;
        let short: String = req.job.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
        let name = format!("skynet-{short}-{}-{}", req.step, &uuid::Uuid::new_v4().simple().to_string()[..6]);
        let mut a: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--name".into(),
            name.clone(),
            "-v".into(),
            format!("{}:/workspace", req.working_dir.display()),
            "-w".into(),
            "/workspace".into(),
            self.image.clone(),
        ];
        a.extend(cmd);
        Ok((a, name))
    }

    pub async fn run(&self, req: &StepRequest, out: OutputSink, cancel: &CancellationToken) -> StepOutcome {
        let (args, name) = match self.argv(req) {
            Ok(x) => x,
            Err(e) => return StepOutcome::error(e),
        };
        let spawn = Spawn {
            program: &self.bin,
            args: &args,
            cwd: None,
            env: Default::default(),
            timeout: req.timeout,
            max_output: self.max_output,
            hold_stdin: false,
        };
        let o = process::run(spawn, out, cancel).await;
        if o.timed_out || o.cancelled {
            // Killing the CLI leaves the container running; kill it by name.
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::process::Command::new(&self.bin).args(["kill", &name]).output(),
            )
            .await;
        }
        o
    }

    pub async fn health(&self) -> (Health, String) {
        let probe =
            tokio::process::Command::new(&self.bin).args(["version", "--format", "{{.Server.Version}}"]).output();
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Err(_) => (Health::Unhealthy, "Docker engine did not answer within 5 s".into()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                (Health::Unhealthy, format!("docker CLI not found ({}): is Docker installed?", self.bin))
            }
            Ok(Err(e)) => (Health::Unhealthy, format!("cannot run {}: {e}", self.bin)),
            Ok(Ok(out)) if out.status.success() => {
                (Health::Healthy, format!("engine {}", String::from_utf8_lossy(&out.stdout).trim()))
            }
            Ok(Ok(out)) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no error text");
                (Health::Unhealthy, format!("no Docker engine reachable: {first}"))
            }
        }
    }
}
