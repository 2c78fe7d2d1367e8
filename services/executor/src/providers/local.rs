//! The local provider: runs the action's argv directly on this machine — never
//! through a shell — in a working directory that must lie inside an allowed
//! root after canonicalisation, with a scrubbed environment and capped output.
//! A timeout or cancel kills the whole process group.

use std::path::PathBuf;

use serde::Deserialize;
use skynet_contract::executor::Health;
use skynet_rules::sandbox;
use tokio_util::sync::CancellationToken;

use super::process::{self, Spawn};
use super::{OutputSink, StepOutcome, StepRequest, commands};

/// Local settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Local {
    /// Directories steps may run in (`~` and `.` allowed); usually the policy's sandbox roots.
    pub allowed_roots: Vec<String>,
    /// Bytes of stdout and of stderr kept per step.
    pub max_output: usize,
}

impl Default for Local {
    fn default() -> Self {
        Local { allowed_roots: vec![".".into()], max_output: 1024 * 1024 }
    }
}

impl Local {
    pub async fn run(&self, req: &StepRequest, out: OutputSink, cancel: &CancellationToken) -> StepOutcome {
        let dir = match self.working_dir(req) {
            Ok(d) => d,
            Err(e) => return StepOutcome::error(e),
        };
        let argv = match commands::argv(&req.action, &req.params) {
            Ok(a) => a,
            Err(e) => return StepOutcome::error(e.to_string()),
        };
        if req.action == "file_read" {
            // The file, too, must stay inside the working directory.
            let target = argv.last().map(|f| dir.join(f)).unwrap_or_default();
            if let Err(e) = sandbox::check(&target.display().to_string(), std::slice::from_ref(&dir), &[]) {
                return StepOutcome::error(format!("file not allowed: {e}"));
            }
        }
        let Some((program, args)) = argv.split_first() else { return StepOutcome::error("empty command".into()) };
        let spawn = Spawn {
            program,
            args,
            cwd: Some(&dir),
            env: Default::default(),
            timeout: req.timeout,
            max_output: self.max_output,
        };
        process::run(spawn, out, cancel).await
    }

    /// The step's directory (its `working_dir` parameter, else the spec's),
    /// canonical and inside an allowed root.
    fn working_dir(&self, req: &StepRequest) -> Result<PathBuf, String> {
        let wanted = req
            .params
            .get("working_dir")
            .and_then(|v| v.as_str())
            .map_or_else(|| req.working_dir.display().to_string(), str::to_owned);
        let roots = sandbox::canonical_roots(&self.allowed_roots);
        sandbox::check(&wanted, &roots, &[]).map_err(|e| format!("working directory not allowed: {e}"))
    }

    pub async fn health(&self) -> (Health, String) {
        if sandbox::canonical_roots(&self.allowed_roots).is_empty() {
            return (Health::Unhealthy, format!("none of the allowed roots {:?} exists", self.allowed_roots));
        }
        match tokio::process::Command::new("true").status().await {
            Ok(s) if s.success() => (Health::Healthy, "ok".into()),
            Ok(s) => (Health::Unhealthy, format!("cannot run commands: `true` exited {s}")),
            Err(e) => (Health::Unhealthy, format!("cannot run commands: {e}")),
        }
    }
}
