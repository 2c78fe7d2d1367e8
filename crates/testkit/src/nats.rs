//! A real nats-server for one test, on a random loopback port with its own
//! temporary store, killed when dropped.

use std::path::PathBuf;

use anyhow::Context;
use skynet_bus::server::{Durability, ManagedServer};

/// A running nats-server. The process and its store are removed on drop.
pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
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
        let server = ManagedServer::start(store.path(), 0, durability)?;
        Ok(NatsServer { url: server.url.clone(), port: server.port, server, _store: store })
    }

    /// A connected client.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(&self.url).await.with_context(|| format!("connecting to {}", self.url))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

/// The workspace root (where `nats/`, `migrations/` and `.tools/` live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}
