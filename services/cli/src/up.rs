//! Running services: all of them in one process (`skynet up`) or one
//! (`skynet run <service>`). Each service is its own library; this module only
//! wires their dependencies and a shared shutdown signal.

use std::sync::Arc;

use anyhow::Context;
use clap::ValueEnum;
use skynet_bus::{EventStore, Jobs};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::infra::Infra;
use crate::settings::Settings;

/// Every service `skynet run` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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
        Service::Api,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Intake => "intake",
            Service::Planner => "planner",
            Service::Policy => "policy",
            Service::Dispatcher => "dispatcher",
            Service::Scheduler => "scheduler",
            Service::Executor => "executor",
            Service::Projector => "projector",
            Service::Api => "api",
        }
    }
}

/// Runs `services` until `shutdown` is cancelled or one of them fails (which
/// stops the others and returns its error).
pub async fn run(
    infra: &Infra,
    settings: &Settings,
    services: &[Service],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let rules = Arc::new(settings.policy_rules().context("loading the policy rules")?);
    // The schema exists before any reader starts (migrations are idempotent and
    // serialised by sqlx's advisory lock, so every process may run them).
    skynet_projector::migrate(&infra.db).await.context("applying database migrations")?;
    // Each service connects under its own role (its own credential, inbox and
    // permissions); the job-state cache is shared by the whole process.
    let mut shared: Option<EventStore> = None;
    let mut set = JoinSet::new();
    for &service in services {
        let stop = shutdown.clone().cancelled_owned();
        let nats = infra.connect(service.name()).await.with_context(|| format!("connecting {}", service.name()))?;
        let js = async_nats::jetstream::new(nats.clone());
        let store = EventStore::open(js.clone())
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("opening the event log as {}", service.name()))?;
        let store = match &shared {
            Some(first) => store.sharing_cache_of(first),
            None => shared.insert(store).clone(),
        };
        let (db, rules) = (infra.db.clone(), rules.clone());
        let jobs = Jobs::new(store.clone(), service.name());
        let planner_config = settings.planner_config();
        let executor_config = settings.executor.config(&rules)?;
        let api_config = skynet_api::Config {
            listen: settings.api_listen,
            open_reads: settings.api_open_reads,
            ..Default::default()
        };
        let api_store = store.clone();
        set.spawn(async move {
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
                        let deps = skynet_dispatcher::Deps { js, jobs, rules };
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
    }
    info!(services = ?services.iter().map(|s| s.name()).collect::<Vec<_>>(), "skynet running");
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        let (service, result) = joined.context("service task panicked")?;
        if let Err(e) = result {
            error!(service = service.name(), error = format!("{e:#}"), "service failed; stopping the others");
            shutdown.cancel();
            first_error.get_or_insert(e.context(format!("service {} failed", service.name())));
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::Service;

    #[test]
    fn up_runs_every_service() {
        assert_eq!(Service::ALL, Service::value_variants(), "`skynet up` must run every service `skynet run` knows");
    }
}
