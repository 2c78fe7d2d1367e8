//! The command line: what each `skynet` subcommand is, and running it.

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::bench::BenchArgs;
use crate::commands::control::{ControlArgs, Verb};
use crate::commands::jobs::{JobArgs, JobsArgs};
use crate::commands::task::TaskArgs;
use crate::commands::watch::WatchArgs;
use crate::commands::{self, ClientArgs};
use crate::infra::Infra;
use crate::settings::Settings;
use crate::up::{self, Service};

/// SKYNET: a governed task-orchestration control plane on NATS JetStream.
#[derive(Parser)]
#[command(name = "skynet", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run every service, the API and the projector in this process (starting
    /// NATS and creating the database when none is configured).
    Up {
        #[command(flatten)]
        settings: Settings,
        /// Services not to run here (e.g. `--without executor` on a control
        /// host, `--without sentinel` to measure its cost).
        #[arg(long, env = "SKYNET_WITHOUT", value_delimiter = ',')]
        without: Vec<Service>,
    },
    /// Run one service.
    Run {
        #[arg(value_enum)]
        service: Service,
        #[command(flatten)]
        settings: Settings,
    },
    /// Submit a task; `--wait` follows it and exits with its outcome.
    Task {
        #[command(flatten)]
        args: TaskArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Tail events (a job id, a subject, or everything).
    Watch {
        #[command(flatten)]
        args: WatchArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List jobs.
    Jobs {
        #[command(flatten)]
        args: JobsArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one job: state, steps, timeline.
    Job {
        #[command(flatten)]
        args: JobArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve a job awaiting approval.
    Approve {
        #[command(flatten)]
        args: ControlArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deny a job awaiting approval.
    Deny {
        #[command(flatten)]
        args: ControlArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a job that has not finished.
    Cancel {
        #[command(flatten)]
        args: ControlArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The executors online: each provider's health and the actions it offers.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replay the whole log into new read models beside the live ones and swap
    /// them in (a live projector keeps serving meanwhile). `--memory` instead
    /// replays it into the memory tables in place (stop the memory service first).
    Rebuild {
        #[command(flatten)]
        settings: Settings,
        /// Rebuild the memory service's tables instead.
        #[arg(long)]
        memory: bool,
    },
    /// The sentinel's alerts (firing; --all for resolved too), and silences.
    Alerts {
        #[command(flatten)]
        args: commands::alerts::AlertsArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Emergency stop: cancel every job running on an executor and hold dispatching
    /// (admin role; `--keep-running` only holds).
    Pause {
        #[command(flatten)]
        args: commands::system::PauseArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lift a pause: held jobs are dispatched (admin role).
    Resume {
        #[command(flatten)]
        args: commands::system::ResumeArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The initiative service: pause, resume, status.
    Initiative {
        #[command(flatten)]
        args: commands::initiative::InitiativeArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Memory: search, add, stats, forget.
    Memory {
        #[command(flatten)]
        args: commands::memory::MemoryArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Measure the system and print a report.
    Bench(BenchArgs),
    /// The fault suite: jobs through kill -9s, a nats-server restart and a
    /// Postgres outage; checks none is lost or doubled.
    Chaos(crate::chaos::ChaosArgs),
    /// Manage principals: who holds an API token, with which roles.
    Principal(commands::principal::PrincipalArgs),
    /// Create or update SKYNET's streams and consumers on a server SKYNET did
    /// not start (with the admin credential: `SKYNET_NATS_CREDS` or
    /// `SKYNET_NATS_CREDS_DIR`).
    Bootstrap(#[command(flatten)] Settings),
    /// Generate one NATS credential per role (nkey seeds, mode 0600) into a
    /// directory, and the nats-server `accounts` block that gives each
    /// role its permissions from `nats/roles.json` (include it in your server's
    /// configuration).
    NatsAuth {
        /// Directory of the credentials (existing ones are kept).
        #[arg(long, default_value = ".data/nats-creds")]
        dir: std::path::PathBuf,
    },
}

/// Runs a command; returns the process exit code.
pub async fn run(cmd: Cmd) -> anyhow::Result<i32> {
    match cmd {
        Cmd::Up { settings, without } => {
            let services: Vec<Service> =
                Service::ALL.iter().copied().filter(|s| !without.contains(s) && s.in_up(&settings)).collect();
            serve(&settings, &services).await.map(|()| 0)
        }
        Cmd::Run { service, settings } => serve(&settings, &[service]).await.map(|()| 0),
        Cmd::Task { args, client } => commands::task::run(args, &client).await,
        Cmd::Watch { args, client } => commands::watch::run(args, &client).await,
        Cmd::Jobs { args, client } => commands::jobs::list(args, &client).await,
        Cmd::Job { args, client } => commands::jobs::show(args, &client).await,
        Cmd::Approve { args, client } => commands::control::run(Verb::Approve, args, &client).await,
        Cmd::Deny { args, client } => commands::control::run(Verb::Deny, args, &client).await,
        Cmd::Cancel { args, client } => commands::control::run(Verb::Cancel, args, &client).await,
        Cmd::Status { client } => commands::status::run(&client).await,
        Cmd::Rebuild { settings, memory: false } => rebuild(&settings).await.map(|()| 0),
        Cmd::Rebuild { settings, memory: true } => rebuild_memory(&settings).await.map(|()| 0),
        Cmd::Memory { args, client } => commands::memory::run(args, &client).await,
        Cmd::Alerts { args, client } => commands::alerts::run(args, &client).await,
        Cmd::Initiative { args, client } => commands::initiative::run(args, &client).await,
        Cmd::Pause { args, client } => commands::system::run(Some(args), None, &client).await,
        Cmd::Resume { args, client } => commands::system::run(None, Some(args.reason), &client).await,
        Cmd::Bench(args) => crate::bench::run(args).await.map(|()| 0),
        Cmd::Chaos(args) => crate::chaos::run(args).await,
        Cmd::Principal(args) => commands::principal::run(args).await,
        Cmd::Bootstrap(settings) => bootstrap(&settings).await.map(|()| 0),
        Cmd::NatsAuth { dir } => nats_auth(&dir).map(|()| 0),
    }
}

async fn bootstrap(settings: &Settings) -> anyhow::Result<()> {
    use skynet_bus::auth;
    let url = settings.nats_url.as_deref().context("set SKYNET_NATS_URL to the server to bootstrap")?;
    let admin =
        auth::connect(url, &settings.nats_auth().credential(auth::ADMIN), auth::ADMIN, "skynet-bootstrap").await?;
    let js = skynet_bus::bootstrap(&admin).await.with_context(|| format!("bootstrapping JetStream on {url}"))?;
    eprintln!("streams and consumers on {url} match nats/");
    if let Some(token) = settings.api_token.as_deref().filter(|t| !t.is_empty()) {
        use skynet_contract::principal::{Principal, PrincipalRole};
        let first = Principal { name: "admin".into(), roles: vec![PrincipalRole::Admin] };
        let principals = skynet_bus::principals::Principals::open(&js).await?;
        principals.remove("admin").await?;
        principals.put(token, &first).await?;
        eprintln!("principal admin holds SKYNET_API_TOKEN");
    }
    Ok(())
}

fn nats_auth(dir: &std::path::Path) -> anyhow::Result<()> {
    use skynet_bus::auth::{Credentials, Roles};
    let roles = Roles::builtin()?;
    let creds = Credentials::ensure(dir, &roles)?;
    let conf = dir.join("accounts.conf");
    let block = roles.render_accounts(&creds)?;
    std::fs::write(&conf, &block).with_context(|| format!("writing {}", conf.display()))?;
    // A complete server configuration too (ours, durable, plus the block), for
    // a server that has no configuration of its own (compose.yaml uses it).
    let full = dir.join("nats-server.conf");
    std::fs::write(&full, format!("{}\n{block}", skynet_bus::server::DURABLE_CONF))
        .with_context(|| format!("writing {}", full.display()))?;
    eprintln!(
        "credentials: {}/<role>.nk (give each service its own; users get client.nk)\n\
         server: add `include {}` to your nats-server configuration",
        dir.display(),
        conf.display()
    );
    Ok(())
}

async fn rebuild(settings: &Settings) -> anyhow::Result<()> {
    let infra = Infra::up(settings).await?;
    // As the projector: it reads the log the way the projector does.
    let js = async_nats::jetstream::new(infra.connect("projector").await?);
    let db = infra.database().await?;
    let progress = skynet_projector::Progress::default();
    let started = std::time::Instant::now();
    let shown = tokio::spawn(show_progress(progress.clone(), started));
    let rebuilt = skynet_projector::rebuild_shadow(skynet_projector::Config::default(), js, db, &progress).await;
    shown.abort();
    let _ = shown.await;
    let at = rebuilt.context("rebuilding the read models")?;
    if progress.restarted() {
        eprintln!(
            "the bulk rebuild met something Postgres refuses (see projection_quarantine) and started over event by event"
        );
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "rebuilt the read models from the log up to sequence {at} in {secs:.1} s ({:.0} events/s) and swapped them in",
        at as f64 / secs.max(1e-9)
    );
    eprintln!("phases ended at (ms): {}", skynet_projector::Progress::show(&progress.phases()));
    Ok(())
}

/// A rebuild's progress and rate as it goes: a bar on a terminal, a line
/// every 10 s otherwise (logs).
async fn show_progress(progress: skynet_projector::Progress, started: std::time::Instant) {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    let mut last_line = started;
    // Cleared when the rebuild ends (this task is aborted then).
    struct Clear(indicatif::ProgressBar);
    impl Drop for Clear {
        fn drop(&mut self) {
            self.0.finish_and_clear();
        }
    }
    let bar = Clear(bar);
    loop {
        tick.tick().await;
        let (applied, target) = (progress.applied(), progress.target());
        let rate = applied as f64 / started.elapsed().as_secs_f64().max(1e-9);
        if terminal {
            bar.0.set_length(target.max(applied));
            bar.0.set_position(applied);
            bar.0.set_message(format!("{rate:.0} events/s"));
        } else if last_line.elapsed() >= std::time::Duration::from_secs(10) {
            last_line = std::time::Instant::now();
            eprintln!("rebuilding: {applied} of {target} events, {rate:.0} events/s");
        }
    }
}

async fn rebuild_memory(settings: &Settings) -> anyhow::Result<()> {
    let infra = Infra::up(settings).await?;
    let nats = infra.connect("memory").await?;
    let js = async_nats::jetstream::new(nats.clone());
    let db = infra.database().await?.clone();
    let principals = std::sync::Arc::new(skynet_bus::principals::Principals::open(&js).await?);
    let store = skynet_bus::EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?;
    let deps = skynet_memory::Deps::new(js, nats, store, db, principals);
    let n = skynet_memory::rebuild(&deps).await.context("rebuilding the memory tables")?;
    eprintln!("rebuilt the memory tables from {n} events of the log");
    Ok(())
}

async fn serve(settings: &Settings, services: &[Service]) -> anyhow::Result<()> {
    let infra = Infra::up(settings).await?;
    eprintln!("skynet is up: NATS {} — submit tasks on `{}`", infra.nats_url, skynet_contract::subjects::INTAKE_TASK);
    if services.contains(&Service::Api) {
        eprintln!(
            "HTTP API on http://{} (token in {})",
            settings.api_listen,
            settings.data_dir.join("api-token").display()
        );
    }
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
