//! The local provider: runs the action's argv directly on this machine — never
//! through a shell — in a working directory that must lie inside an allowed
//! root after canonicalisation, with a scrubbed environment and capped output.
//! A timeout or cancel kills the whole process group.

use std::path::PathBuf;

use serde::Deserialize;
use skynet_contract::executor::Health;
use skynet_rules::{catalog, sandbox};
use tokio_util::sync::CancellationToken;

use super::process::{self, Spawn};
use super::{OutputSink, StepOutcome, StepRequest, archive, chat, commands, devserver, files};

/// Local settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Local {
    /// Directories steps may run in (`~` and `.` allowed); usually the policy's sandbox roots.
    pub allowed_roots: Vec<String>,
    /// Paths no step may touch, whatever the roots say (the policy's denied
    /// paths, SKYNET's own data and tools).
    pub denied_paths: Vec<String>,
    /// Bytes of stdout and of stderr kept per step.
    pub max_output: usize,
    /// Author and committer of `git_commit` (`Name <email>`): commits are
    /// SKYNET's, whatever git configuration the host has or lacks.
    pub git_author: String,
    /// The chat endpoint `ollama_chat` calls; unset: the action is not offered.
    pub chat: Option<chat::Chat>,
    /// Dev servers running for jobs (not a setting).
    #[serde(skip)]
    pub servers: devserver::Servers,
}

impl Default for Local {
    fn default() -> Self {
        Local {
            allowed_roots: vec![".".into()],
            denied_paths: Vec::new(),
            max_output: 1024 * 1024,
            git_author: "SKYNET <skynet@localhost>".into(),
            chat: None,
            servers: devserver::Servers::default(),
        }
    }
}

impl Local {
    pub async fn run(&self, req: &StepRequest, out: OutputSink, cancel: &CancellationToken) -> StepOutcome {
        // One snapshot of the sandbox for the whole step, taken right before it runs.
        let bounds = sandbox::Bounds::now(&self.allowed_roots, &self.denied_paths);
        let dir = match self.working_dir(req, &bounds) {
            Ok(d) => d,
            Err(e) => return StepOutcome::error(e),
        };
        if let Err(e) = self.check_paths(req, &dir, &bounds) {
            return StepOutcome::error(e);
        }
        let path = |name: &str| req.params.get(name).and_then(|v| v.as_str()).map(std::path::Path::new);
        match req.action.as_str() {
            "file_read" => return self.read_file(req),
            // Paths checked just above: absolute, canonical, inside the sandbox.
            "file_write" => {
                let Some(file) = path("file") else { return StepOutcome::error("file_write needs a file".into()) };
                let content = req.params.get("content").and_then(|v| v.as_str()).unwrap_or("");
                return match files::Mode::parse(req.params.get("mode").and_then(|v| v.as_str())) {
                    Ok(mode) => files::write(file, content, mode),
                    Err(e) => StepOutcome::error(e),
                };
            }
            "create_directory" => {
                let Some(d) = path("directory") else {
                    return StepOutcome::error("create_directory needs a directory".into());
                };
                let parents = req.params.get("parents").and_then(serde_json::Value::as_bool).unwrap_or(false);
                return files::create_directory(d, parents);
            }
            "zip_project" => {
                return archive::zip_project(dir, bounds.denied, req.timeout, cancel).await;
            }
            "ollama_chat" => {
                return match &self.chat {
                    Some(c) => c.run(&req.params, req.timeout, cancel).await,
                    None => {
                        StepOutcome::error("ollama_chat is not available on this executor: no chat endpoint".into())
                    }
                };
            }
            _ => {}
        }
        let argv = match commands::argv(&req.action, &req.params) {
            Ok(a) => a,
            Err(e) => return StepOutcome::error(e.to_string()),
        };
        if req.action == "start_dev_server" {
            let Some(port) = req.params.get("port").and_then(serde_json::Value::as_u64) else {
                return StepOutcome::error("start_dev_server needs a port".into());
            };
            let Some(port) = u16::try_from(port).ok().filter(|p| *p >= 1024) else {
                return StepOutcome::error(format!("port {port} is not a TCP port a dev server may use (1024-65535)"));
            };
            return self.servers.start(&req.job, &argv, &dir, port, req.timeout, cancel).await;
        }
        // Asked for what this host lacks (a plan sent to it anyway): say so,
        // rather than a bare "cannot start".
        if let Some(missing) = commands::program(&req.action).filter(|p| !commands::on_path(p)) {
            return StepOutcome::error(format!("{} is not available on this executor: no {missing}", req.action));
        }
        if commands::needs_desktop(&req.action) && !commands::has_desktop() {
            return StepOutcome::error(format!("{} is not available on this executor: no desktop session", req.action));
        }
        let Some((program, args)) = argv.split_first() else { return StepOutcome::error("empty command".into()) };
        let mut env = std::collections::BTreeMap::new();
        if commands::needs_desktop(&req.action) {
            for key in commands::DESKTOP_ENV {
                if let Ok(v) = std::env::var(key) {
                    env.insert((*key).to_owned(), v);
                }
            }
        }
        if req.action == "git_commit" {
            let (name, email) = split_author(&self.git_author);
            for (k, v) in [("GIT_AUTHOR_NAME", &name), ("GIT_COMMITTER_NAME", &name)] {
                env.insert(k.to_owned(), v.clone());
            }
            for (k, v) in [("GIT_AUTHOR_EMAIL", &email), ("GIT_COMMITTER_EMAIL", &email)] {
                env.insert(k.to_owned(), v.clone());
            }
        }
        let spawn = Spawn {
            program,
            args,
            cwd: Some(&dir),
            env,
            timeout: req.timeout,
            max_output: self.max_output,
            hold_stdin: false,
        };
        let mut o = process::run(spawn, out, cancel).await;
        if req.action == "git_commit"
            && o.exit_code == Some(1)
            && String::from_utf8_lossy(&o.stdout).contains("nothing to commit")
        {
            o.error = Some("nothing to commit: no change is staged (stage changes first: git_add_all)".into());
        }
        o
    }

    /// The step's directory (its `working_dir` parameter, else the spec's),
    /// canonical and inside an allowed root.
    fn working_dir(&self, req: &StepRequest, bounds: &sandbox::Bounds) -> Result<PathBuf, String> {
        let wanted = req
            .params
            .get("working_dir")
            .and_then(|v| v.as_str())
            .map_or_else(|| req.working_dir.display().to_string(), str::to_owned);
        bounds.check(&wanted).map_err(|e| format!("working directory not allowed: {e}"))
    }

    /// Every directory and path parameter again, right before the step runs:
    /// still inside the sandbox, and still the canonical path the dispatcher
    /// checked (a symbolic link swapped in since then is refused).
    fn check_paths(&self, req: &StepRequest, dir: &std::path::Path, bounds: &sandbox::Bounds) -> Result<(), String> {
        let Some(entry) = catalog::action(&req.action) else { return Ok(()) };
        for p in entry.all_params().filter(|p| matches!(p.kind, catalog::Kind::Dir | catalog::Kind::Path)) {
            let Some(given) = req.params.get(p.name).and_then(|v| v.as_str()) else { continue };
            let now = match p.kind {
                catalog::Kind::Dir => bounds.check(given),
                _ => bounds.check_path(given, dir),
            }
            .map_err(|e| format!("parameter {:?} not allowed: {e}", p.name))?;
            if now.as_path() != std::path::Path::new(given) {
                return Err(format!(
                    "parameter {:?}: {given:?} now resolves to {} (changed since it was checked); refused",
                    p.name,
                    now.display()
                ));
            }
        }
        Ok(())
    }

    /// `file_read`: opens the checked file itself — never through a symbolic
    /// link in its last component, only a regular file — and returns up to
    /// `max_output` bytes of it as the step's output.
    fn read_file(&self, req: &StepRequest) -> StepOutcome {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let Some(path) = req.params.get("file").and_then(|v| v.as_str()) else {
            return StepOutcome::error("file_read needs a file".into());
        };
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)
            .and_then(|f| match f.metadata() {
                Ok(m) if m.is_file() => Ok(f),
                Ok(_) => Err(std::io::Error::other("not a regular file")),
                Err(e) => Err(e),
            });
        let file = match opened {
            Ok(f) => f,
            Err(e) => return StepOutcome::error(format!("cannot read {path}: {e}")),
        };
        let mut stdout = Vec::new();
        let cap = u64::try_from(self.max_output).unwrap_or(u64::MAX);
        if let Err(e) = file.take(cap).read_to_end(&mut stdout) {
            return StepOutcome::error(format!("cannot read {path}: {e}"));
        }
        StepOutcome { exit_code: Some(0), stdout, ..StepOutcome::default() }
    }

    /// What this host can run: an action whose program is missing, or that
    /// needs a desktop this host lacks, or a chat endpoint none is configured
    /// for, is not offered — so the scheduler never picks it for one.
    pub fn capabilities(&self) -> Vec<&'static str> {
        let commands = commands::SUPPORTED.iter().chain(commands::HOST_ONLY).copied().collect::<Vec<_>>();
        let mut v = commands::runnable(&commands, commands::on_path, commands::has_desktop());
        v.extend(files::ACTIONS);
        v.extend(["zip_project", "start_dev_server"]);
        if self.chat.is_some() {
            v.push("ollama_chat");
        }
        v
    }

    /// Stops what the job left running here (its dev servers).
    pub async fn end_job(&self, job: &str) -> usize {
        self.servers.stop_job(job).await
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

/// `Name <email>` → (name, email); a bare name gets `skynet@localhost`.
fn split_author(author: &str) -> (String, String) {
    match author.split_once('<') {
        Some((name, rest)) => (name.trim().to_owned(), rest.trim_end_matches('>').trim().to_owned()),
        None => (author.trim().to_owned(), "skynet@localhost".to_owned()),
    }
}
