//! A real nats-server for one test, on a random loopback port with its own
//! temporary store, killed when dropped. Like the server `skynet up` starts, it
//! runs with authorization on: every role of `nats/roles.json` has its own
//! credential, and tests connect under the role whose rights they exercise.

use std::path::PathBuf;

use anyhow::Context;
use skynet_bus::auth::{self, Credentials};
use skynet_bus::server::{Durability, ManagedServer};

/// A running nats-server. The process and its store are removed on drop.
pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    durability: Durability,
    // Field order matters: the process stops before its store is deleted.
    server: ManagedServer,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server in fast mode (tests do not need fsync per write).
    pub fn start() -> anyhow::Result<NatsServer> {
        Self::start_with(Durability::Fast)
    }

    /// Starts a server with the given durability.
    pub fn start_with(durability: Durability) -> anyhow::Result<NatsServer> {
        let store = tempfile::tempdir().context("temp store for nats-server")?;
        let server = ManagedServer::start(&store.path().join("js"), &store.path().join("creds"), 0, durability)?;
        Ok(NatsServer { url: server.url.clone(), port: server.port, durability, server, _store: store })
    }

    /// A client with the `admin` role: for bootstrapping streams and writing
    /// test fixtures no service role could write. Services under test get
    /// [`connect_as`](Self::connect_as) their own role.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        self.connect_as(auth::ADMIN).await
    }

    /// A client with `role`'s credential and private inbox.
    pub async fn connect_as(&self, role: &str) -> anyhow::Result<async_nats::Client> {
        Ok(auth::connect(&self.url, &self.server.creds.credential(role), role, &format!("test-{role}")).await?)
    }

    /// Every role's credential.
    pub fn creds(&self) -> &Credentials {
        &self.server.creds
    }

    /// Kills the server (`kill -9`) and starts it again on the same port and
    /// store, as after a crash: clients and services must reconnect by themselves.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.server.kill();
        let store = self._store.path();
        self.server = ManagedServer::start(&store.join("js"), &store.join("creds"), self.port, self.durability)?;
        Ok(())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The permission violations the server logged so far (`Publish
    /// Violation - Subject "..."`), for tests that expect a refusal.
    pub fn violations(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self._store.path().join("js/nats-server.log")).unwrap_or_default();
        log.lines().filter(|l| l.contains("Violation")).map(str::to_owned).collect()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Shown with a failing test's output: a refused operation is otherwise
        // only a timeout somewhere else.
        for v in self.violations() {
            eprintln!("[nats-server] {v}");
        }
    }
}

/// The workspace root (where `nats/`, `migrations/` and `.tools/` live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}
