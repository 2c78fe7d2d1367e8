//! A real nats-server for one test, on a random loopback port with its own store,
//! killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Oldest server we accept: 2.11 introduced
/// `Nats-Expected-Last-Subject-Sequence-Subject`, which the event store needs.
const MIN_VERSION: (u32, u32) = (2, 11);

/// A running nats-server. The process and its store are removed on drop.
pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    child: Child,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server with the fast configuration (`nats/server-fast.conf`).
    pub fn start() -> anyhow::Result<NatsServer> {
        Self::start_with_config(&workspace_root().join("nats/server-fast.conf"))
    }

    /// Starts a server with the given configuration file.
    pub fn start_with_config(config: &Path) -> anyhow::Result<NatsServer> {
        let bin = find_nats_server()?;
        let store = tempfile::tempdir().context("temp store for nats-server")?;
        let port = free_port()?;
        let child = Command::new(&bin)
            .arg("-c")
            .arg(config)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut server = NatsServer { url: format!("nats://127.0.0.1:{port}"), port, child, _store: store };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("nats-server exited at start with {status}");
            }
            if Instant::now() > deadline {
                bail!("nats-server did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// A connected client.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(&self.url).await.with_context(|| format!("connecting to {}", self.url))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workspace root (where `nats/` and `.tools/` live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

/// Finds a nats-server binary of at least version 2.11: `$SKYNET_NATS_SERVER`,
/// then `.tools/venv/bin/nats-server` (installed by `./dev setup`), then `PATH`.
/// An older server (such as Debian's 2.9) is refused with a clear error.
pub fn find_nats_server() -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("SKYNET_NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(workspace_root().join(".tools/venv/bin/nats-server"));
    candidates.push(PathBuf::from("nats-server"));
    let mut seen = Vec::new();
    for c in candidates {
        let Ok(out) = Command::new(&c).arg("--version").output() else { continue };
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        match parse_version(&text) {
            Some(v) if v >= MIN_VERSION => return Ok(c),
            _ => seen.push(format!("{} ({})", c.display(), text.trim())),
        }
    }
    bail!(
        "no nats-server >= {}.{} found (saw: {}). Run `./dev setup`, or set SKYNET_NATS_SERVER",
        MIN_VERSION.0,
        MIN_VERSION.1,
        if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
    )
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_server_versions() {
        assert_eq!(super::parse_version("nats-server: v2.15.1"), Some((2, 15)));
        assert_eq!(super::parse_version("nats-server: v2.9.11"), Some((2, 9)));
        assert!(super::parse_version("garbage").is_none());
    }
}
