//! The docker provider: `docker run --rm` of a configured image with the step's
//! working directory mounted at /workspace (the predecessor mounted nothing).
//!
//! Containers never outlive their step. Each is labelled with its job, step and
//! lease ([`LABEL_JOB`], [`LABEL_LEASE`]); a timeout, cancel or drop removes it
//! by name (killing the CLI alone leaves the container running), and
//! [`Docker::containers`] lists the containers an executor that died left behind,
//! which the executor removes at start-up and on every sweep once their lease
//! is no longer the job's current one.

use std::time::Duration;

use serde::Deserialize;
use skynet_contract::executor::Health;
use tokio_util::sync::CancellationToken;

use super::process::{self, Spawn};
use super::{OutputSink, StepOutcome, StepRequest, commands};

/// The label naming a container's job.
pub const LABEL_JOB: &str = "skynet.job";
/// The label naming the lease a container ran under.
pub const LABEL_LEASE: &str = "skynet.lease";

/// Docker settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Docker {
    pub image: String,
    /// The docker CLI.
    pub bin: String,
    pub max_output: usize,
    /// `docker run --network` (e.g. `none`); unset: the engine's default.
    pub network: Option<String>,
}

impl Default for Docker {
    fn default() -> Self {
        Docker { image: "ubuntu:22.04".into(), bin: "docker".into(), max_output: 1024 * 1024, network: None }
    }
}

/// A container this provider started that its step no longer owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub job: String,
    pub lease: u64,
}

/// Removes the container when dropped, unless disarmed: a step's future that
/// is dropped mid-run (the job moved on) must not leave it running.
struct Remove {
    bin: String,
    name: Option<String>,
}

impl Drop for Remove {
    fn drop(&mut self) {
        let Some(name) = self.name.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let bin = std::mem::take(&mut self.bin);
            rt.spawn(async move { remove(&bin, &name).await });
        }
    }
}

/// `docker rm -f`, bounded; a container already gone is fine.
async fn remove(bin: &str, name: &str) {
    let rm = tokio::process::Command::new(bin).args(["rm", "-f", name]).output();
    match tokio::time::timeout(Duration::from_secs(20), rm).await {
        Ok(Ok(o)) if o.status.success() => {}
        outcome => tracing::warn!(container = name, ?outcome, "removing a container failed"),
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
            "--label".into(),
            format!("{LABEL_JOB}={}", req.job),
            "--label".into(),
            format!("{LABEL_LEASE}={}", req.lease),
            "--label".into(),
            format!("skynet.step={}", req.step),
            // A signal to the CLI is not forwarded: the container is removed by name.
            "--sig-proxy=false".into(),
        ];
        if let Some(net) = &self.network {
            a.extend(["--network".into(), net.clone()]);
        }
        a.extend([
            "-v".into(),
            format!("{}:/workspace", req.working_dir.display()),
            "-w".into(),
            "/workspace".into(),
            self.image.clone(),
        ]);
        a.extend(cmd);
        Ok((a, name))
    }

    pub async fn run(&self, req: &StepRequest, out: OutputSink, cancel: &CancellationToken) -> StepOutcome {
        let (args, name) = match self.argv(req) {
            Ok(x) => x,
            Err(e) => return StepOutcome::error(e),
        };
        let mut guard = Remove { bin: self.bin.clone(), name: Some(name.clone()) };
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
        guard.name = None;
        // `--rm` removes a container whose end the CLI saw. Otherwise (timeout,
        // cancel, the CLI killed by a signal, 125: the engine failed) it may
        // still run: remove it by name (a container already gone is fine).
        if o.timed_out || o.cancelled || matches!(o.exit_code, None | Some(125)) {
            remove(&self.bin, &name).await;
        }
        o
    }

    /// Every container of this provider's making (by label), running or not.
    pub async fn containers(&self) -> Result<Vec<Container>, String> {
        let format = format!("{{{{.Names}}}}\t{{{{.Label \"{LABEL_JOB}\"}}}}\t{{{{.Label \"{LABEL_LEASE}\"}}}}");
        let ps = tokio::process::Command::new(&self.bin)
            .args(["ps", "-a", "--filter", &format!("label={LABEL_JOB}"), "--format", &format])
            .output();
        let out = match tokio::time::timeout(Duration::from_secs(20), ps).await {
            Ok(Ok(o)) if o.status.success() => o.stdout,
            Ok(Ok(o)) => return Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("docker ps did not answer within 20 s".into()),
        };
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let (name, job, lease) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
                Some(Container { name: name.to_owned(), job: job.to_owned(), lease })
            })
            .collect())
    }

    /// Removes one container (an orphan found by [`Docker::containers`]).
    pub async fn remove(&self, name: &str) {
        remove(&self.bin, name).await;
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
