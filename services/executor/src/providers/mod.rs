//! Execution backends. Each provider runs one step at a time for the runner and
//! reports its health and the actions it can run. They are an enum rather than
//! trait objects: the set is closed and known at compile time.

pub mod archive;
pub mod chat;
pub mod commands;
pub mod devserver;
pub mod docker;
pub mod files;
pub mod local;
pub mod mock;
pub mod openclaw;
pub mod process;
pub mod ssh;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use skynet_contract::executor::{Health, ProviderStatus};
use skynet_contract::job::OutputStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One step to run.
#[derive(Debug, Clone)]
pub struct StepRequest {
    pub job: String,
    pub step: u32,
    /// The lease the step runs under (labels what it leaves on other machines).
    pub lease: u64,
    pub action: String,
    pub params: BTreeMap<String, serde_json::Value>,
    /// The spec's working directory (checked by the dispatcher; checked again by
    /// providers that touch this machine's filesystem).
    pub working_dir: PathBuf,
    /// The effective limit for this step (every timeout level applied).
    pub timeout: Duration,
}

/// How a step ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutcome {
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Why it failed, when it failed other than by a non-zero exit code.
    pub error: Option<String>,
    pub timed_out: bool,
    pub cancelled: bool,
    /// Files the step made for the job (`zip_project`'s archive): the runner
    /// stores each as an artifact; each is deleted when dropped.
    pub produced: Vec<Produced>,
}

/// A file a step produced, kept in a temporary file until stored.
#[derive(Debug, Clone)]
pub struct Produced {
    /// Its artifact name.
    pub name: String,
    file: std::sync::Arc<tempfile::TempPath>,
}

impl Produced {
    pub fn new(name: String, file: tempfile::TempPath) -> Produced {
        Produced { name, file: std::sync::Arc::new(file) }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.file
    }
}

impl PartialEq for Produced {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.path() == other.path()
    }
}

impl Eq for Produced {}

impl StepOutcome {
    /// A step that could not run at all.
    pub fn error(message: String) -> StepOutcome {
        StepOutcome { error: Some(message), ..StepOutcome::default() }
    }

    /// Exit code 0 and no error.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && self.error.is_none() && !self.timed_out && !self.cancelled
    }

    /// Notes output that exceeded the cap (the kept part is stored).
    pub fn note_truncation(&mut self, out_total: usize, err_total: usize, cap: usize) {
        for (buf, total) in [(&mut self.stdout, out_total), (&mut self.stderr, err_total)] {
            if total > cap {
                buf.extend_from_slice(format!("\n[output truncated: {total} bytes, {cap} kept]\n").as_bytes());
            }
        }
    }

    /// One line saying why the step failed.
    pub fn failure(&self) -> String {
        match (&self.error, self.exit_code) {
            (Some(e), _) => e.clone(),
            (None, Some(c)) => format!("exit code {c}"),
            (None, None) => "no exit code".into(),
        }
    }
}

/// Where a step's live output goes.
pub type OutputSink = mpsc::Sender<(OutputStream, String)>;

/// A configured provider.
#[derive(Debug, Clone)]
pub enum Provider {
    Mock(mock::Mock),
    Local(local::Local),
    Ssh(ssh::Ssh),
    Docker(docker::Docker),
    OpenClaw(openclaw::OpenClaw),
}

impl Provider {
    /// The provider's name in schedules and events.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Mock(_) => "mock",
            Provider::Local(_) => "local",
            Provider::Ssh(_) => "ssh",
            Provider::Docker(_) => "docker",
            Provider::OpenClaw(_) => "openclaw",
        }
    }

    /// Runs one step. Never panics; every failure is in the outcome.
    pub async fn run(&self, req: &StepRequest, out: OutputSink, cancel: &CancellationToken) -> StepOutcome {
        match self {
            Provider::Mock(p) => p.run(req, out, cancel).await,
            Provider::Local(p) => p.run(req, out, cancel).await,
            Provider::Ssh(p) => p.run(req, out, cancel).await,
            Provider::Docker(p) => p.run(req, out, cancel).await,
            Provider::OpenClaw(p) => p.run(req, out, cancel).await,
        }
    }

    /// Stops what a job left running on this provider when it ends here.
    pub async fn end_job(&self, job: &str) -> usize {
        match self {
            Provider::Local(p) => p.end_job(job).await,
            _ => 0,
        }
    }

    /// Health and capabilities, checked now.
    pub async fn status(&self) -> ProviderStatus {
        let started = std::time::Instant::now();
        let (health, message) = match self {
            Provider::Mock(_) => (Health::Healthy, "ok".to_owned()),
            Provider::Local(p) => p.health().await,
            Provider::Ssh(p) => p.health().await,
            Provider::Docker(p) => p.health().await,
            Provider::OpenClaw(p) => p.health().await,
        };
        ProviderStatus {
            health,
            message,
            capabilities: self.capabilities(),
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Actions this provider can run (the local provider: what this host has,
    /// see [`local::Local::capabilities`]; ssh and docker: every shared command
    /// action, the remote host's programs being unknown here).
    pub fn capabilities(&self) -> Vec<String> {
        let list: Vec<&str> = match self {
            Provider::Mock(_) => vec!["*"],
            Provider::OpenClaw(_) => openclaw::ACTIONS.to_vec(),
            Provider::Local(p) => p.capabilities(),
            Provider::Ssh(_) | Provider::Docker(_) => commands::SUPPORTED.to_vec(),
        };
        list.into_iter().map(str::to_owned).collect()
    }
}
