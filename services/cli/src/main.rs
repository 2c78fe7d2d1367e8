//! `skynet`: run the system, one service, the client commands, or the benchmark.

use clap::Parser;
use skynet_cli::cli::{self, Cli};

/// mimalloc rather than glibc's malloc: a job's path through the services is
/// mostly short-lived allocations (decoded events, JSON, rows), and glibc's
/// `malloc`/`free`/`malloc_consolidate` took 7% of a rebuild's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let parsed = Cli::parse();
    // The benchmark and the client commands print reports; services log.
    let quiet = !matches!(parsed.command, cli::Cmd::Up { .. } | cli::Cmd::Run { .. } | cli::Cmd::Rebuild { .. });
    let default = if quiet { "warn" } else { "info,async_nats=warn,sqlx=warn" };
    // Traces leave the process only when an OTLP endpoint is configured.
    let otlp = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.is_empty() && !quiet);
    let telemetry = match skynet_cli::telemetry::init(default, otlp.as_deref()) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("warning: tracing not installed: {e:#}");
            None
        }
    };
    let code = match cli::run(parsed.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    drop(telemetry); // flush what the exporter still holds
    std::process::exit(code);
}
