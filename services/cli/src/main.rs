//! `skynet`: run the system, one service, or the benchmark.

use anyhow::Context;
use clap::{Parser, Subcommand};
use skynet_cli::bench::BenchArgs;
use skynet_cli::infra::Infra;
use skynet_cli::settings::Settings;
use skynet_cli::up::{self, Service};
use tokio_util::sync::CancellationToken;

/// SKYNET: a governed task-orchestration control plane on NATS JetStream.
#[derive(Parser)]
#[command(name = "skynet", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every service in this process (starting NATS and creating the
    /// database when none is configured).
    Up(#[command(flatten)] Settings),
    /// Run one service.
    Run {
        #[arg(value_enum)]
        service: Service,
        #[command(flatten)]
        settings: Settings,
    },
    /// Drop the read models and replay the whole log into them.
    Rebuild(#[command(flatten)] Settings),
    /// Measure the system and print a report.
    Bench(BenchArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKYNET_LOG")
                .unwrap_or_else(|_| "info,async_nats=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Cmd::Up(settings) => serve(&settings, Service::ALL).await,
        Cmd::Run { service, settings } => serve(&settings, &[service]).await,
        Cmd::Rebuild(settings) => {
            let infra = Infra::up(&settings).await?;
            skynet_projector::rebuild(&infra.db).await.context("dropping the read models")?;
            let stop = CancellationToken::new();
            let done = skynet_cli::bench::wait_projected(&infra, stop.clone());
            let (run, caught_up) = tokio::join!(up::run(&infra, &settings, &[Service::Projector], stop.clone()), done);
            run?;
            eprintln!("rebuilt read models up to sequence {}", caught_up?);
            Ok(())
        }
        Cmd::Bench(args) => skynet_cli::bench::run(args).await,
    }
}

async fn serve(settings: &Settings, services: &[Service]) -> anyhow::Result<()> {
    let infra = Infra::up(settings).await?;
    eprintln!("skynet is up: NATS {} — submit tasks on `{}`", infra.nats_url, skynet_contract::subjects::INTAKE_TASK);
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        // Ctrl-C from a terminal, SIGTERM from `docker compose stop` or systemd.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
        }
        on_signal.cancel();
    });
    up::run(&infra, settings, services, shutdown).await
}
