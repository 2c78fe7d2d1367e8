//! The executor process: the shared consumer, bounded by capacity, and the heartbeat.

use skynet_bus::pause::PauseWatch;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use skynet_bus::Jobs;
use skynet_bus::consumer::{self, ConsumerSpec};
use skynet_bus::definitions::{ARTIFACTS_BUCKET, EVENTS_STREAM, EXECUTORS_BUCKET, OUTPUT_BUCKET};
use tracing::info;

use crate::config::Config;
use crate::heartbeat;
use crate::runner::{self, Ctx};

/// What an executor needs.
#[derive(Clone)]
pub struct Deps {
    pub js: jetstream::Context,
    pub nats: async_nats::Client,
    pub jobs: Jobs,
}

/// Runs the executor until `shutdown` resolves; running jobs finish first.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), async_nats::Error> {
    let providers = config.providers.build();
    let names: Vec<_> = providers.iter().map(|p| p.name()).collect();
    // Shared by every message's handling, not cloned for each (it holds
    // object stores, each a stream handle with its whole info).
    let ctx = Arc::new(Ctx {
        config: Arc::new(config.clone()),
        providers: Arc::new(providers.iter().map(|p| (p.name(), p.clone())).collect::<HashMap<_, _>>()),
        jobs: deps.jobs.clone(),
        nats: deps.nats.clone(),
        output: deps.js.get_object_store(OUTPUT_BUCKET).await?,
        artifacts: deps.js.get_object_store(ARTIFACTS_BUCKET).await?,
        pause: PauseWatch::follow(deps.js.clone(), deps.nats.clone()).await?,
    });
    let kv = deps.js.get_key_value(EXECUTORS_BUCKET).await?;
    let (stop, ended) = consumer::service_stop(shutdown);
    let running = Arc::new(AtomicU32::new(0));
    info!(service = "executor", executor = %config.id, providers = ?names, capacity = config.capacity, "executor running");
    let beat = heartbeat::run(
        heartbeat::Beat {
            kv,
            id: config.id.clone(),
            providers,
            capacity: u32::try_from(config.capacity).unwrap_or(u32::MAX),
            running: running.clone(),
            period: Duration::from_millis(config.heartbeat_ms),
            health_every: config.health_every,
        },
        stop.clone(),
    );
    let mut spec = ConsumerSpec::new(EVENTS_STREAM, "executor", "executor", config.capacity)
        .failing_jobs(deps.jobs.clone(), skynet_contract::job::Stage::Execution);
    // A job waiting in a buffer is a lease nobody keeps: take one per free slot.
    spec.prefetch = false;
    let stop_sweep = stop.clone();
    let consume = consumer::run(
        deps.js.clone(),
        spec,
        move |msg| {
            let (ctx, running) = (ctx.clone(), running.clone());
            async move {
                running.fetch_add(1, Ordering::Relaxed);
                let d = runner::handle(&ctx, msg).await;
                running.fetch_sub(1, Ordering::Relaxed);
                d
            }
        },
        stop,
    );
    // Containers of dead executors: removed at start-up and on every sweep.
    let sweep = async {
        if let Some(docker) = config.providers.docker.clone() {
            crate::orphans::run(docker, deps.jobs.clone(), Duration::from_millis(config.orphan_sweep_ms), stop_sweep)
                .await;
        }
    };
    let (consumed, (), ()) = tokio::join!(consumer::ending(consume, &ended), beat, sweep);
    consumed
}
