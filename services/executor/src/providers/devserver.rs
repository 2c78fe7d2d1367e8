//! `start_dev_server`: the project's dev server (its command resolved by the
//! dispatcher, as for tests), started in the background for the rest of the
//! job. The step succeeds once something answers on `port` (a TCP connect,
//! then an HTTP `GET /` whose status line goes into the output) and fails with
//! the server's own output if it exits first or never answers in time.
//!
//! It is READ_ONLY, so it must leave nothing behind: the server runs under the
//! watched-session wrapper ([`process::WRAPPER`]) whose stdin this executor
//! holds; the runner stops every server of a job when the job ends here —
//! succeeded, failed, cancelled, or lost to another executor — and if the
//! executor dies, the pipe's end kills the server's whole process group. A
//! port that already answers before the start is refused: the answer would
//! not be this server's.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::StepOutcome;
use super::process::{ENV_ALLOW, WRAPPER};

/// The longest a dev server lives even if nothing stops it (a backstop; the
/// job's end stops it first).
pub const MAX_LIFETIME_SECS: u64 = 2 * 3600;

/// The running servers of this executor, by job.
#[derive(Clone, Default)]
pub struct Servers {
    running: Arc<Mutex<HashMap<String, Vec<Server>>>>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.running.lock().map(|m| m.values().map(Vec::len).sum::<usize>()).unwrap_or(0);
        write!(f, "Servers({n} running)")
    }
}

/// One server: the wrapper (its stdin held), and its log.
struct Server {
    port: u16,
    wrapper: tokio::process::Child,
    log: tempfile::NamedTempFile,
}

impl Servers {
    /// Starts `argv` in `dir` for `job` and waits until it answers on `port`.
    pub async fn start(
        &self,
        job: &str,
        argv: &[String],
        dir: &Path,
        port: u16,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> StepOutcome {
        if answers(port).await {
            return StepOutcome::error(format!(
                "port {port} already answers before the dev server starts; refused (the answer would not be its)"
            ));
        }
        let log = match tempfile::Builder::new().prefix("skynet-devserver-").suffix(".log").tempfile() {
            Ok(l) => l,
            Err(e) => return StepOutcome::error(format!("cannot create the dev server's log: {e}")),
        };
        let (Ok(out), Ok(err)) = (log.reopen(), log.reopen()) else {
            return StepOutcome::error("cannot open the dev server's log".into());
        };
        let mut cmd = tokio::process::Command::new("sh");
        let limit = MAX_LIFETIME_SECS.to_string();
        cmd.args(["-c", WRAPPER, "sh", &limit]).arg(dir).args(argv);
        cmd.env_clear().stdin(Stdio::piped()).stdout(out).stderr(err).kill_on_drop(true);
        for key in ENV_ALLOW {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("PORT", port.to_string());
        let wrapper = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return StepOutcome::error(format!("cannot start the dev server: {e}")),
        };
        let mut server = Server { port, wrapper, log };
        let waited = tokio::select! {
            r = wait_ready(&mut server, port) => r,
            () = tokio::time::sleep(timeout) => Err(Ended::TimedOut),
            () = cancel.cancelled() => Err(Ended::Cancelled),
        };
        let output = read_log(server.log.path()).await;
        match waited {
            Ok(status_line) => {
                info!(job, port, "dev server answering");
                let mut stdout = output;
                stdout.extend_from_slice(
                    format!("dev server answering on localhost:{port}: {status_line}\nit runs until the job ends\n")
                        .as_bytes(),
                );
                if let Ok(mut m) = self.running.lock() {
                    m.entry(job.to_owned()).or_default().push(server);
                }
                StepOutcome { exit_code: Some(0), stdout, ..StepOutcome::default() }
            }
            Err(ended) => {
                stop(server).await;
                let mut o = match ended {
                    Ended::Exited(code) => StepOutcome {
                        exit_code: code,
                        error: Some(format!("the dev server exited before answering on port {port}")),
                        ..StepOutcome::default()
                    },
                    Ended::TimedOut => StepOutcome {
                        timed_out: true,
                        error: Some(format!("the dev server did not answer on port {port} within {timeout:?}")),
                        ..StepOutcome::default()
                    },
                    Ended::Cancelled => {
                        StepOutcome { cancelled: true, error: Some("cancelled".into()), ..StepOutcome::default() }
                    }
                };
                o.stdout = output;
                o
            }
        }
    }

    /// Stops every server `job` started here; returns how many.
    pub async fn stop_job(&self, job: &str) -> usize {
        let servers = self.running.lock().ok().and_then(|mut m| m.remove(job)).unwrap_or_default();
        let n = servers.len();
        for s in servers {
            info!(job, port = s.port, "stopping the dev server: the job ended");
            stop(s).await;
        }
        n
    }
}

enum Ended {
    Exited(Option<i32>),
    TimedOut,
    Cancelled,
}

/// Polls until the port answers (then probes it) or the server exits.
async fn wait_ready(server: &mut Server, port: u16) -> Result<String, Ended> {
    loop {
        if let Ok(Some(status)) = server.wrapper.try_wait() {
            return Err(Ended::Exited(status.code()));
        }
        if let Some(mut conn) = connect(port).await {
            return Ok(probe(&mut conn).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /` over an open connection: the status line, or what was seen instead.
async fn probe(conn: &mut TcpStream) -> String {
    let ask = async {
        conn.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
        let mut buf = vec![0u8; 512];
        let n = conn.read(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned())
    };
    match tokio::time::timeout(Duration::from_secs(2), ask).await {
        Ok(Ok(line)) if !line.is_empty() => line,
        _ => "port open (no HTTP answer)".into(),
    }
}

/// A connection to the port on this host's loopback, IPv4 or IPv6 (a server
/// bound to `localhost` may listen on either).
async fn connect(port: u16) -> Option<TcpStream> {
    for host in ["127.0.0.1", "::1"] {
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect((host, port))).await {
            return Some(c);
        }
    }
    None
}

async fn answers(port: u16) -> bool {
    connect(port).await.is_some()
}

/// Closes the wrapper's stdin (its watcher kills the server's process group),
/// waits for it, and kills it if it lingers; then waits until the port stops
/// answering — a killed process closes its sockets a moment after its parent
/// sees it die — so "stopped" means gone.
async fn stop(mut s: Server) {
    drop(s.wrapper.stdin.take());
    if tokio::time::timeout(Duration::from_secs(5), s.wrapper.wait()).await.is_err() {
        warn!(port = s.port, "the dev server's wrapper did not end on its stdin's close; killing it");
        let _ = s.wrapper.kill().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while answers(s.port).await {
        if tokio::time::Instant::now() > deadline {
            warn!(port = s.port, "something still answers on the dev server's port after its stop");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log so far, at most 64 KiB of its end.
async fn read_log(path: &Path) -> Vec<u8> {
    let mut bytes = tokio::fs::read(path).await.unwrap_or_default();
    let keep = 64 * 1024;
    if bytes.len() > keep {
        bytes.drain(..bytes.len() - keep);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
    }

    #[tokio::test]
    async fn answers_until_stopped_or_dropped_and_refuses_a_port_already_taken() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let servers = Servers::default();
        let argv: Vec<String> =
            ["sh", "-c", "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1"].map(String::from).to_vec();
        let (port, cancel, limit) = (free_port(), CancellationToken::new(), Duration::from_secs(20));
        let o = servers.start("job-1", &argv, dir.path(), port, limit, &cancel).await;
        assert!(o.succeeded(), "{o:?}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("HTTP/1.0 200 OK"), "{o:?}");
        // A second server on the same port is refused: the answer would be the first's.
        let again = servers.start("job-2", &argv, dir.path(), port, limit, &cancel).await;
        assert!(again.failure().contains("already answers"), "{again:?}");
        assert_eq!(servers.stop_job("job-1").await, 1);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped means gone");

        // Dropped without a stop (the executor going away): the wrapper's
        // watcher sees its stdin close and kills the server's group.
        let port = free_port();
        let o = servers.start("job-3", &argv, dir.path(), port, limit, &cancel).await;
        assert!(o.succeeded(), "{o:?}");
        drop(servers);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(std::time::Instant::now() < deadline, "the server outlived its executor");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}
