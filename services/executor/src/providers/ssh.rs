//! The ssh provider: the OpenSSH client against one configured host. The remote
//! command is one string built by quoting every argv word (`shlex`), so
//! parameters cannot inject shell syntax (the predecessor concatenated them).

use std::time::Duration;

use serde::Deserialize;
use skynet_contract::executor::Health;
use tokio_util::sync::CancellationToken;

use super::process::{self, Spawn};
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
    /// known_hosts file to use (and fill, with `accept-new`).
    pub known_hosts: Option<String>,
    /// `yes`, `accept-new` or `no`.
    pub strict_host_key_checking: String,
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
            strict_host_key_checking: "accept-new".into(),
            connect_timeout_secs: 10,
            remote_dir: "/tmp".into(),
            max_output: 1024 * 1024,
        }
    }
}

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
            format!("StrictHostKeyChecking={}", self.strict_host_key_checking),
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

    /// The remote command string for a step.
    pub fn remote_command(&self, req: &StepRequest) -> Result<String, String> {
        let argv = commands::argv(&req.action, &req.params).map_err(|e| e.to_string())?;
        let dir = req.params.get("remote_dir").and_then(|v| v.as_str()).unwrap_or(&self.remote_dir);
        let quoted = shlex::try_join(argv.iter().map(String::as_str)).map_err(|e| e.to_string())?;
        let dir = shlex::try_quote(dir).map_err(|e| e.to_string())?;
        Ok(format!("cd {dir} && {quoted}"))
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
            },
            out,
            cancel,
        )
        .await;
        // ssh exits 255 for its own failures (connection, authentication).
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
            action: "execute_command".into(),
            params,
            working_dir: PathBuf::from("/tmp"),
            timeout: Duration::from_secs(1),
        };
        let remote = s.remote_command(&req).expect("remote");
        // `;` is quoted into an argument, not a command separator.
        assert_eq!(remote, "cd /home/user && echo 'a b' ';' rm -rf /");
        let argv = s.argv(&remote);
        assert_eq!(&argv[..4], ["-p", "2222", "-i", "/k"]);
        assert!(argv.contains(&"user@example.com".to_owned()));
        assert_eq!(argv.last(), Some(&remote));
    }
}
