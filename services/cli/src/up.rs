//! Running services: all of them in one process (`skynet up`) or one
//! (`skynet run <service>`). Each service is its own library; this module only
//! wires their dependencies and a shared shutdown signal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use skynet_bus::pause::PauseWatch;
use skynet_bus::{EventStore, Jobs};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::infra::Infra;
use crate::settings::Settings;

/// Every service `skynet run` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Service {
    /// Validates submissions and opens jobs.
    Intake,
    /// Plans requested jobs.
    Planner,
    /// Classifies plans, handles approvals, denials, cancels and timeouts.
    Policy,
    /// Turns approved plans into execution specs.
    Dispatcher,
    /// Picks a provider for each dispatched job.
    Scheduler,
    /// Runs scheduled jobs (start more to scale).
    Executor,
    /// Writes the Postgres read models from the log.
    Projector,
    /// Remembers what happened; answers the planner's and people's questions.
    Memory,
    /// Watches executors, jobs, queues and dependencies; raises alerts.
    Sentinel,
    /// Proposes safe work on its own, inside limits (`skynet up` runs it
    /// only with SKYNET_INITIATIVE=true).
    Initiative,
    /// The Telegram bot (`skynet up` runs it only with TELEGRAM_BOT_TOKEN set).
    Telegram,
    /// The HTTP API.
    Api,
}

impl Service {
    /// Everything `skynet up` runs.
    pub const ALL: &'static [Service] = &[
        Service::Intake,
        Service::Planner,
        Service::Policy,
        Service::Dispatcher,
        Service::Scheduler,
        Service::Executor,
        Service::Projector,
        Service::Memory,
        Service::Sentinel,
        Service::Initiative,
        Service::Telegram,
        Service::Api,
    ];

    /// Whether `skynet up` runs it: all but the initiative, which submits
    /// work on its own and so runs only when enabled, and the Telegram bot,
    /// which runs when it has a token.
    pub fn in_up(self, settings: &Settings) -> bool {
        match self {
            Service::Initiative => settings.initiative.enabled,
            Service::Telegram => settings.telegram.bot_token.as_deref().is_some_and(|t| !t.trim().is_empty()),
            _ => true,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Intake => "intake",
            Service::Planner => "planner",
            Service::Policy => "policy",
            Service::Dispatcher => "dispatcher",
            Service::Scheduler => "scheduler",
            Service::Executor => "executor",
            Service::Projector => "projector",
            Service::Memory => "memory",
            Service::Sentinel => "sentinel",
            Service::Initiative => "initiative",
            Service::Telegram => "telegram",
            Service::Api => "api",
        }
    }
}

/// Whether a process running `services` keeps job histories: they start where
/// jobs are opened (the intake) and are read by the stages and the memory
/// service, so only a process with both would ever use one.
fn keeps_histories(services: &[Service]) -> bool {
    services.contains(&Service::Intake)
        && services.iter().any(|s| {
            matches!(
                s,
                Service::Planner
                    | Service::Policy
                    | Service::Dispatcher
                    | Service::Scheduler
                    | Service::Executor
                    | Service::Memory
            )
        })
}

/// Runs `services` until `shutdown` is cancelled. A service that fails (an
/// error or a panic) is restarted with backoff, the others running on; only a
/// configuration error (the rules, the schema, the first start) ends `run`.
pub async fn run(
    infra: &Infra,
    settings: &Settings,
    services: &[Service],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let rules = Arc::new(settings.policy_rules().context("loading the policy rules")?);
    // Only the services that use Postgres wait for it: the schema exists
    // before any reader starts (migrations are idempotent and serialised by
    // sqlx's advisory lock, so every process may run them).
    if services.iter().any(|s| {
        matches!(
            s,
            Service::Projector
                | Service::Api
                | Service::Memory
                | Service::Sentinel
                | Service::Initiative
                | Service::Telegram
        )
    }) {
        infra.database().await?;
    }
    let mut up = Supervisor {
        infra,
        settings,
        rules,
        shutdown: shutdown.clone(),
        shared: None,
        keep_histories: keeps_histories(services),
        set: JoinSet::new(),
        which: HashMap::new(),
    };
    if let Some(addr) = settings.metrics_listen {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, stop).await {
                error!(error = format!("{e:#}"), "metrics endpoint");
            }
        });
    }
    for &service in services {
        up.start(service).await.with_context(|| format!("starting {}", service.name()))?;
    }
    info!(services = ?services.iter().map(|s| s.name()).collect::<Vec<_>>(), "skynet running");
    let mut failures: HashMap<Service, u32> = HashMap::new();
    while let Some(joined) = up.set.join_next_with_id().await {
        let (id, failure) = match joined {
            Ok((id, (_, Ok(())))) => (id, None),
            Ok((id, (_, Err(e)))) => (id, Some(format!("{e:#}"))),
            Err(e) => (e.id(), Some(format!("panicked: {e}"))),
        };
        let Some(service) = up.which.remove(&id) else { continue };
        if shutdown.is_cancelled() {
            if let Some(why) = failure {
                warn!(service = service.name(), %why, "service failed while stopping");
            }
            continue;
        }
        let why = failure.unwrap_or_else(|| "stopped by itself".into());
        let n = failures.entry(service).or_default();
        *n += 1;
        loop {
            let delay = restart_delay(*n);
            error!(service = service.name(), %why, restarts = *n, ?delay, "service failed; restarting it, the others run on");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => break,
            }
            match up.start(service).await {
                Ok(()) => break,
                Err(e) => {
                    *n += 1;
                    warn!(service = service.name(), error = format!("{e:#}"), "could not restart yet");
                }
            }
        }
    }
    Ok(())
}

/// Restart backoff: 100 ms doubling per failure, at most 30 s.
fn restart_delay(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.clamp(1, 20).saturating_sub(1)))
        .min(Duration::from_secs(30))
}

/// The services of this process and what starting one needs.
struct Supervisor<'a> {
    infra: &'a Infra,
    settings: &'a Settings,
    rules: Arc<skynet_rules::PolicyRules>,
    shutdown: CancellationToken,
    /// The first service's store: the others share its job-state cache.
    shared: Option<EventStore>,
    /// Whether the shared store keeps job histories (see `EventStore::keeping_histories`).
    keep_histories: bool,
    set: JoinSet<(Service, anyhow::Result<()>)>,
    which: HashMap<tokio::task::Id, Service>,
}

impl Supervisor<'_> {
    /// Connects `service` under its own role (its own credential, inbox and
    /// permissions) and spawns it.
    async fn start(&mut self, service: Service) -> anyhow::Result<()> {
        let (infra, settings, shutdown) = (self.infra, self.settings, &self.shutdown);
        let stop = shutdown.clone().cancelled_owned();
        let nats = infra.connect(service.name()).await.with_context(|| format!("connecting {}", service.name()))?;
        let js = async_nats::jetstream::new(nats.clone());
        let store = EventStore::open(js.clone())
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("opening the event log as {}", service.name()))?;
        let store = match &self.shared {
            Some(first) => store.sharing_cache_of(first),
            None => self.shared.insert(store.keeping_histories(self.keep_histories)).clone(),
        };
        let (db, rules) = (infra.db.clone(), self.rules.clone());
        let jobs = Jobs::new(store.clone(), service.name());
        let planner_config = settings.planner_config();
        let executor_config = settings.executor.config(&rules)?;
        let api_config = skynet_api::Config {
            listen: settings.api_listen,
            open_reads: settings.api_open_reads,
            metrics: crate::metrics::render(),
            ..Default::default()
        };
        let api_store = store.clone();
        let sentinel_config = match service {
            Service::Sentinel => Some(settings.sentinel.config().context("the alert sinks")?),
            _ => None,
        };
        let initiative_config = match service {
            Service::Initiative => Some(settings.initiative.config().context("the initiative's settings")?),
            _ => None,
        };
        let telegram_config = match service {
            Service::Telegram => Some(settings.telegram.config().context("the Telegram bot's settings")?),
            _ => None,
        };
        let handle = self.set.spawn(async move {
            let result: anyhow::Result<()> = async move {
                match service {
                    Service::Intake => {
                        let limiter =
                            skynet_intake::ratelimit::RateLimiter::open(&js).await.map_err(|e| anyhow::anyhow!(e))?;
                        let principals = std::sync::Arc::new(
                            skynet_bus::principals::Principals::open(&js).await.map_err(|e| anyhow::anyhow!(e))?,
                        );
                        let deps = skynet_intake::Deps { js, jobs, rules, limiter, principals };
                        skynet_intake::run(skynet_intake::Config::default(), deps, stop)
                            .await
                            .map_err(|e| anyhow::anyhow!(e))
                    }
                    Service::Planner => {
                        let deps = skynet_planner::Deps { js, nats, jobs, rules };
                        skynet_planner::run(planner_config, deps, stop).await.map_err(|e| anyhow::anyhow!(e))
                    }
                    Service::Policy => {
                        let deps = skynet_policy::Deps { js, nats, jobs, rules };
                        skynet_policy::run(skynet_policy::Config::default(), deps, stop)
                            .await
                            .map_err(|e| anyhow::anyhow!(e))
                    }
                    Service::Dispatcher => {
                        let pause = PauseWatch::follow(js.clone(), nats).await.map_err(|e| anyhow::anyhow!(e))?;
                        let deps = skynet_dispatcher::Deps { js, jobs, rules, pause };
                        skynet_dispatcher::run(skynet_dispatcher::Config::default(), deps, stop)
                            .await
                            .map_err(|e| anyhow::anyhow!(e))
                    }
                    Service::Scheduler => {
                        let deps = skynet_scheduler::Deps { js, nats, jobs };
                        skynet_scheduler::run(skynet_scheduler::Config::default(), deps, stop)
                            .await
                            .map_err(|e| anyhow::anyhow!(e))
                    }
                    Service::Executor => {
                        let deps = skynet_executor::Deps { js, nats, jobs };
                        skynet_executor::run(executor_config, deps, stop).await.map_err(|e| anyhow::anyhow!(e))
                    }
                    Service::Api => {
                        let principals = std::sync::Arc::new(
                            skynet_bus::principals::Principals::open(&js).await.map_err(|e| anyhow::anyhow!(e))?,
                        );
                        let deps = skynet_api::Deps { nats, js, store: api_store, db, principals };
                        skynet_api::run(api_config, deps, stop).await.map_err(anyhow::Error::from)
                    }
                    Service::Memory => {
                        let principals = std::sync::Arc::new(
                            skynet_bus::principals::Principals::open(&js).await.map_err(|e| anyhow::anyhow!(e))?,
                        );
                        let deps = skynet_memory::Deps::new(js, nats, store, db, principals);
                        skynet_memory::run(skynet_memory::Config::default(), deps, stop)
                            .await
                            .map_err(anyhow::Error::from)
                    }
                    Service::Sentinel => {
                        let principals = std::sync::Arc::new(
                            skynet_bus::principals::Principals::open(&js).await.map_err(|e| anyhow::anyhow!(e))?,
                        );
                        let http = skynet_sentinel::sinks::client()?;
                        let deps = skynet_sentinel::Deps { js, nats, db, principals, http };
                        let config = sentinel_config.unwrap_or_default();
                        skynet_sentinel::run(config, deps, stop).await.map_err(anyhow::Error::from)
                    }
                    Service::Initiative => {
                        let principals = std::sync::Arc::new(
                            skynet_bus::principals::Principals::open(&js).await.map_err(|e| anyhow::anyhow!(e))?,
                        );
                        let clock = skynet_initiative::system_clock();
                        let deps = skynet_initiative::Deps { js, nats, db, principals, clock };
                        let config = initiative_config.unwrap_or_default();
                        skynet_initiative::run(config, deps, stop).await.map_err(anyhow::Error::from)
                    }
                    Service::Telegram => {
                        let principals = std::sync::Arc::new(
                            skynet_bus::principals::Principals::open(&js).await.map_err(|e| anyhow::anyhow!(e))?,
                        );
                        let deps = skynet_telegram::Deps { nats, js, db, principals };
                        let config = telegram_config.context("the Telegram bot's settings")?;
                        skynet_telegram::run(config, deps, stop).await.map_err(anyhow::Error::from)
                    }
                    Service::Projector => {
                        let deps = skynet_projector::Deps { js, db };
                        skynet_projector::run(skynet_projector::Config::default(), deps, stop)
                            .await
                            .map_err(anyhow::Error::from)
                    }
                }
            }
            .await;
            (service, result)
        });
        self.which.insert(handle.id(), service);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::{Service, keeps_histories};

    #[test]
    fn up_runs_every_service() {
        assert_eq!(Service::ALL, Service::value_variants(), "`skynet up` must run every service `skynet run` knows");
    }

    #[test]
    fn job_histories_are_kept_only_where_one_could_be_read() {
        assert!(keeps_histories(Service::ALL), "`skynet up`");
        assert!(keeps_histories(&[Service::Intake, Service::Memory]));
        assert!(!keeps_histories(&[Service::Intake]), "an intake alone: nothing reads its chains");
        assert!(!keeps_histories(&[Service::Intake, Service::Projector, Service::Api]));
        assert!(!keeps_histories(&[Service::Planner, Service::Memory]), "no intake: no chain ever starts");
    }
}
