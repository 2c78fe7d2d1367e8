//! Executor scaling: the control plane in this process, 1, 2 and 4 executor
//! processes (`skynet run executor`), each with the same capacity, on jobs
//! whose one mock step takes 50 ms.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use skynet_bus::server::{Durability, ManagedServer};
use tokio_util::sync::CancellationToken;

use super::system::{BenchDb, bench_policy, collect, submit, terminal_events};
use super::tally::Tally;
use crate::infra::Infra;
use crate::settings::Settings;
use crate::up::{self, Service};

/// One point of the curve.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePoint {
    pub executors: usize,
    pub jobs: usize,
    pub jobs_per_sec: f64,
    /// Relative to one executor.
    pub ratio: f64,
}

struct Executor(Child);

impl Drop for Executor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Measures `counts` executors (fast mode), `jobs` jobs each run.
pub async fn run(counts: &[usize], jobs: usize, capacity: usize, step_ms: u64) -> anyhow::Result<Vec<ScalePoint>> {
    let mut points: Vec<ScalePoint> = Vec::new();
    for &n in counts {
        let jps = one(n, jobs, capacity, step_ms).await.with_context(|| format!("scaling run with {n} executor(s)"))?;
        let base = points.first().map_or(jps, |p| p.jobs_per_sec);
        points.push(ScalePoint { executors: n, jobs, jobs_per_sec: jps, ratio: jps / base });
    }
    Ok(points)
}

async fn one(n: usize, jobs: usize, capacity: usize, step_ms: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let server = ManagedServer::start(&dir.path().join("nats"), &dir.path().join("creds"), 0, Durability::Fast)?;
    let db = BenchDb::create().await?;
    let result = async {
        let mut settings = Settings::new(Some(server.url.clone()), Some(db.url.clone()));
        settings.nats_creds_dir = Some(server.creds.dir.clone());
        settings.data_dir = dir.path().to_owned();
        settings.policy_file = Some(bench_policy(dir.path())?);
        let infra = Infra::up(&settings).await?;
        let client = infra.connect(skynet_bus::auth::ADMIN).await?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let services = [
            Service::Intake,
            Service::Planner,
            Service::Policy,
            Service::Dispatcher,
            Service::Scheduler,
            Service::Projector,
        ];
        let plane = tokio::spawn(async move { up::run(&infra, &settings, &services, token).await });
        let mut executors = Vec::new();
        for i in 0..n {
            let child = Command::new(std::env::current_exe()?)
                .args(["run", "executor"])
                .env("SKYNET_NATS_URL", &server.url)
                .env("SKYNET_NATS_CREDS_DIR", &server.creds.dir)
                .env("DATABASE_URL", &db.url)
                .env("SKYNET_EXECUTOR_ID", format!("bench-exec-{i}"))
                .env("SKYNET_EXECUTOR_PROVIDERS", "mock")
                .env("SKYNET_MOCK_LATENCY_MS", step_ms.to_string())
                .env("SKYNET_EXECUTOR_CAPACITY", capacity.to_string())
                .env("SKYNET_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            executors.push(Executor(child));
        }
        // Every executor heartbeating, so none starts with the whole queue.
        let js = async_nats::jetstream::new(client.clone());
        let kv = js.get_key_value(skynet_bus::definitions::EXECUTORS_BUCKET).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            use futures::StreamExt;
            let online = kv.keys().await?.count().await;
            if online >= n {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{online} of {n} executors came online");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut ends = terminal_events(&client).await?;
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let mut tally = Tally::default();
        let started = Instant::now();
        for i in 0..jobs {
            tally.submitted(submit(&client, &format!("{run_id}-{i}")).await?, Instant::now());
        }
        client.flush().await?;
        collect(&mut ends, &mut tally, jobs, Duration::from_secs(30)).await?;
        tally.check()?;
        super::system::log_confirms(&js, &tally).await.context("in the log")?;
        let secs = tally.last_success().map_or(0.0, |t| t.duration_since(started).as_secs_f64());
        drop(executors);
        stop.cancel();
        plane.await??;
        anyhow::Ok(jobs as f64 / secs.max(1e-9))
    }
    .await;
    db.drop_it().await;
    result
}
