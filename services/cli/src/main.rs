//! `skynet`: run the system, one service, the client commands, or the benchmark.

use clap::Parser;
use skynet_cli::cli::{self, Cli};

#[tokio::main]
async fn main() {
    let parsed = Cli::parse();
    // The benchmark and the client commands print reports; services log.
    let quiet = !matches!(parsed.command, cli::Cmd::Up { .. } | cli::Cmd::Run { .. } | cli::Cmd::Rebuild { .. });
    let default = if quiet { "warn" } else { "info,async_nats=warn,sqlx=warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SKYNET_LOG").unwrap_or_else(|_| default.into()))
        .with_writer(std::io::stderr)
        .init();
    let code = match cli::run(parsed.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
