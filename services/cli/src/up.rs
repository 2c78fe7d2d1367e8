//! Running services: all of them in one process (`skynet up`) or one
//! (`skynet run <service>`). Each service is its own library; this module only
//! wires their dependencies and a shared shutdown signal.

use anyhow::Context;
use clap::ValueEnum;
use skynet_bus::{EventStore, Jobs};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::infra::Infra;

/// Every service `skynet run` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// Validates submissions and opens jobs.
    Intake,
    /// Writes the Postgres read models from the log.
    Projector,
}

impl Service {
    /// Everything `skynet up` runs.
    pub const ALL: &'static [Service] = &[Service::Intake, Service::Projector];

    pub fn name(self) -> &'static str {
        match self {
            Service::Intake => "intake",
            Service::Projector => "projector",
        }
    }
}

/// Runs `services` until `shutdown` is cancelled or one of them fails (which
/// stops the others and returns its error).
pub async fn run(
    infra: &Infra,
    services: &[Service],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    for &service in services {
        let token = shutdown.clone();
        let js = infra.js.clone();
        let db = infra.db.clone();
        set.spawn(async move {
            let stop = token.clone().cancelled_owned();
            let result = async move {
                match service {
                    Service::Intake => {
                        let store = EventStore::open(js.clone())
                            .await
                            .map_err(|e| anyhow::anyhow!(e))?;
                        let deps = skynet_intake::Deps {
                            js,
                            jobs: Jobs::new(store, "intake"),
                        };
                        skynet_intake::run(skynet_intake::Config::default(), deps, stop)
                            .await
                            .map_err(|e| anyhow::anyhow!(e))
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
            error!(
                service = service.name(),
                error = format!("{e:#}"),
                "service failed; stopping the others"
            );
            shutdown.cancel();
            first_error.get_or_insert(e.context(format!("service {} failed", service.name())));
        }
    }
    first_error.map_or(Ok(()), Err)
}
