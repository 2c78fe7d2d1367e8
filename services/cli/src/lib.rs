//! The `skynet` binary's library: everything behind the command line, so tests
//! can start the system exactly as `skynet up` does.
//!
//! * [`settings`]: configuration from the environment.
//! * [`infra`]: NATS and Postgres, started or created when none is configured.
//! * [`up`]: every service in one process; [`up::run_one`] for one.
//! * [`metrics`]: the process's Prometheus exporter.
//! * [`bench`]: the benchmark; [`chaos`]: the fault suite.
//! * [`cli`], [`commands`], [`render`]: the command line and its output.

pub mod bench;
pub mod chaos;
pub mod cli;
pub mod commands;
pub mod infra;
pub mod metrics;
pub mod render;
pub mod settings;
pub mod telemetry;
pub mod up;
