//! The ssh provider: the OpenSSH client against one configured host. The remote
//! command is one string built by quoting every argv word (`shlex`), so
//! parameters cannot inject shell syntax (the predecessor concatenated them).
//!
//! Remote work never outlives its connection: the step runs under a small
//! POSIX-shell wrapper ([`WRAPPER`]) that starts it in a new session (its own
//! process group) and kills that group when the connection's stdin reaches
//! end-of-file. The executor holds that stdin open and never writes it, so the
//! EOF comes when the step is timed out, cancelled or dropped (the ssh client
//! is killed) and when the executor itself dies, even by `kill -9`.
//!
//! Host keys are pinned: `known_hosts` names the file of accepted keys and an
//! unknown or changed key is refused, unless the operator opts into
//! `host_keys = "accept-new"` (trust on first use).

use std::time::Duration;

use serde::Deserialize;
use skynet_contract::executor::Health;
use tokio_util::sync::CancellationToken;

use super::process::{self, Spawn, WRAPPER};
use super::{OutputSink, StepOutcome, StepRequest, commands};

/// SSH settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ssh {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key file.
    pub key_path: Option<String>,
    /// The known_hosts file holding the host's pinned key (filled on first
    /// use with `accept-new`). Unset: the user's own known_hosts.
    pub known_hosts: Option<String>,
    /// What to do with a host key not in `known_hosts` (`strict_host_key_checking`,
    /// its earlier name, is still read: `yes` or `accept-new`; `no` is refused).
    #[serde(alias = "strict_host_key_checking")]
    pub host_keys: HostKeys,
    pub connect_timeout_secs: u64,
    /// Remote directory steps run in, unless a step names `remote_dir`.
    pub remote_dir: String,
    pub max_output: usize,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh {
            host: "localhost".into(),
            port: 22,
            user: "ubuntu".into(),
            key_path: None,
            known_hosts: None,
            host_keys: HostKeys::Pinned,
            connect_timeout_secs: 10,
            remote_dir: "/tmp".into(),
            max_output: 1024 * 1024,
        }
    }
}

/// How host keys are checked. There is deliberately no "don't check".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeys {
    /// Only keys already in `known_hosts` (OpenSSH `StrictHostKeyChecking=yes`).
    #[serde(alias = "yes")]
    Pinned,
    /// Trust the first key seen and record it; a changed key is still refused.
    AcceptNew,
}

impl HostKeys {
    fn openssh(self) -> &'static str {
        match self {
            HostKeys::Pinned => "yes",
            HostKeys::AcceptNew => "accept-new",
        }
    }
}

/// Seconds a remote step may outlive its limit before the remote side kills it
/// on its own (the executor kills it at the limit over the connection).
pub const REMOTE_GRACE_SECS: u64 = 10;

impl Ssh {
    /// The ssh argv running `remote` (already a quoted command string).
    pub fn argv(&self, remote: &str) -> Vec<String> {
        let mut a = vec!["-p".into(), self.port.to_string()];
        if let Some(k) = &self.key_path {
            a.extend(["-i".into(), k.clone(), "-o".into(), "IdentitiesOnly=yes".into()]);
        }
        if let Some(kh) = &self.known_hosts {
            a.extend(["-o".into(), format!("UserKnownHostsFile={kh}")]);
        }
        a.extend([
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("StrictHostKeyChecking={}", self.host_keys.openssh()),
            "-o".into(),
            format!("ConnectTimeout={}", self.connect_timeout_secs),
            "-o".into(),
            "LogLevel=ERROR".into(),
            format!("{}@{}", self.user, self.host),
            "--".into(),
            remote.into(),
        ]);
        a
    }

    /// The remote command string for a step: the wrapper, the directory and
    /// the step's argv, every word quoted.
    pub fn remote_command(&self, req: &StepRequest) -> Result<String, String> {
        let argv = commands::argv(&req.action, &req.params).map_err(|e| e.to_string())?;
        let dir = req.params.get("remote_dir").and_then(|v| v.as_str()).unwrap_or(&self.remote_dir);
        let limit = (req.timeout.as_secs() + REMOTE_GRACE_SECS).to_string();
        let words = ["sh", "-c", WRAPPER, "sh", &limit, dir].into_iter().chain(argv.iter().map(String::as_str));
        shlex::try_join(words).map_err(|e| e.to_string())
    }

    pub async fn run(&self, req: &StepRequest, out: OutputSink, cancel: &CancellationToken) -> StepOutcome {
        let remote = match self.remote_command(req) {
            Ok(r) => r,
            Err(e) => return StepOutcome::error(e),
        };
        let args = self.argv(&remote);
        let mut o = process::run(
            Spawn {
                program: "ssh",
                args: &args,
                cwd: None,
                env: Default::default(),
                timeout: req.timeout,
                max_output: self.max_output,
                hold_stdin: true,
            },
            out,
            cancel,
        )
        .await;
        // ssh exits 255 for its own failures (connection, authentication,
        // host key). A missing remote directory is the wrapper's exit 125 with
        // the shell's own message on stderr.
        if o.exit_code == Some(255) {
            o.error = Some(format!("ssh failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
        }
        o
    }

    pub async fn health(&self) -> (Health, String) {
        let args = self.argv("true");
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let spawn = Spawn {
            program: "ssh",
            args: &args,
            cwd: None,
            env: Default::default(),
            timeout: Duration::from_secs(self.connect_timeout_secs + 5),
            max_output: 4096,
            hold_stdin: false,
        };
        let o = process::run(spawn, tx, &CancellationToken::new()).await;
        let target = format!("{}@{}:{}", self.user, self.host, self.port);
        match (o.exit_code, o.timed_out) {
            (Some(0), _) => (Health::Healthy, target),
            (_, true) => (Health::Unhealthy, format!("{target}: connection timed out")),
            (_, false) => (
                Health::Unhealthy,
                format!(
                    "{target}: {}",
                    o.error.unwrap_or_else(|| String::from_utf8_lossy(&o.stderr).trim().to_owned())
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn argv_and_quoting() {
        let s = Ssh {
            host: "example.com".into(),
            user: "user".into(),
            port: 2222,
            key_path: Some("/k".into()),
            ..Ssh::default()
        };
        let mut params = BTreeMap::new();
        params.insert("command".to_owned(), serde_json::Value::from("echo 'a b' ; rm -rf /"));
        params.insert("remote_dir".to_owned(), serde_json::Value::from("/home/user"));
        let req = StepRequest {
            job: "j".into(),
            step: 0,
            lease: 1,
            action: "execute_command".into(),
            params,
            working_dir: PathBuf::from("/tmp"),
            timeout: Duration::from_secs(1),
        };
        let remote = s.remote_command(&req).expect("remote");
        // `;` is quoted into an argument, not a command separator.
        let words = shlex::split(&remote).expect("splits");
        assert_eq!(&words[..3], ["sh", "-c", WRAPPER]);
        // The remote limit: the step's own (1 s) plus the grace.
        assert_eq!(&words[3..], ["sh", "11", "/home/user", "echo", "a b", ";", "rm", "-rf", "/"]);
        let argv = s.argv(&remote);
        assert_eq!(&argv[..4], ["-p", "2222", "-i", "/k"]);
        assert!(argv.contains(&"user@example.com".to_owned()));
        assert_eq!(argv.last(), Some(&remote));
    }
}
