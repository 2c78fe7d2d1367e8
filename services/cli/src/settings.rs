//! Settings read from the environment (and flags). Every variable is listed in
//! the README.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use skynet_bus::server::Durability;

/// Where the system's infrastructure is.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// NATS server URL. Unset: start our own nats-server (>= 2.11) on
    /// `--nats-port` with its store under `--data-dir`.
    #[arg(long, env = "SKYNET_NATS_URL")]
    pub nats_url: Option<String>,
    /// Port of the nats-server SKYNET starts itself (never 4222, where an old
    /// system server may listen).
    #[arg(long, env = "SKYNET_NATS_PORT", default_value_t = 4333)]
    pub nats_port: u16,
    /// Durability of the nats-server SKYNET starts itself.
    #[arg(long, env = "SKYNET_DURABILITY", value_enum, default_value_t = DurabilityArg::Durable)]
    pub durability: DurabilityArg,
    /// Postgres URL for the read models. Unset: the local server on
    /// 127.0.0.1:5432, database `skynet` (created when missing).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where SKYNET keeps the state of the servers it starts.
    #[arg(long, env = "SKYNET_DATA_DIR", default_value = ".data")]
    pub data_dir: PathBuf,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// fsync before every acknowledgement (`sync_interval: always`).
    Durable,
    /// The server's default: fsync every 2 minutes.
    Fast,
}

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Durable => Durability::Durable,
            DurabilityArg::Fast => Durability::Fast,
        }
    }
}
