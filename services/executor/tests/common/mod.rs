//! Shared set-up for executor tests: a real nats-server, jobs put straight into
//! the `scheduled` state through the job aggregate, and an executor run in-process.
#![allow(dead_code)] // each test binary uses part of it

use std::collections::BTreeMap;
use std::time::Duration;

use skynet_bus::{EventStore, Jobs, bootstrap};
use skynet_contract::job::{PolicyDecided, Requested, Scheduled};
use skynet_contract::{ExecSpec, ExecStep, JobId, Plan, PlanStep, Risk};
use skynet_executor::{Config, Deps, ProvidersConfig};
use skynet_job::Command;
use skynet_testkit::{NatsServer, eventually};
use tokio_util::sync::CancellationToken;

pub struct Env {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub jobs: Jobs,
}

pub async fn env() -> anyhow::Result<Env> {
    let server = NatsServer::start()?;
    let client = server.connect().await?;
    let js = bootstrap(&client).await?;
    let jobs = Jobs::new(EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?, "executor");
    Ok(Env { server, client, js, jobs })
}

/// A step: action and params.
pub fn step(action: &str, params: serde_json::Value) -> (String, BTreeMap<String, serde_json::Value>, bool) {
    let params = params.as_object().map(|m| m.clone().into_iter().collect()).unwrap_or_default();
    (action.to_owned(), params, false)
}

/// Puts a job with these steps into the `scheduled` state on `provider`.
pub async fn scheduled(
    env: &Env,
    id: &str,
    steps: Vec<(String, BTreeMap<String, serde_json::Value>, bool)>,
    working_dir: &str,
    provider: &str,
    artifacts: Vec<String>,
) -> anyhow::Result<JobId> {
    let job = JobId::for_request("executor-test", id);
    let plan = Plan {
        summary: "test".into(),
        steps: steps
            .iter()
            .map(|(a, _, c)| PlanStep {
                title: a.clone(),
                description: String::new(),
                action: Some(a.clone()),
                params: BTreeMap::new(),
                risk: Risk::ReadOnly,
                estimated_minutes: 1,
                continue_on_error: *c,
            })
            .collect(),
        artifacts,
    };
    let spec = ExecSpec {
        steps: steps
            .into_iter()
            .enumerate()
            .map(|(i, (action, params, continue_on_error))| ExecStep {
                index: i as u32,
                action,
                params,
                timeout_secs: 60,
                risk: Risk::ReadOnly,
                continue_on_error,
                description: String::new(),
            })
            .collect(),
        working_dir: working_dir.into(),
        total_timeout_secs: 120,
        approved_risk: Risk::Admin,
    };
    let commands = vec![
        Command::Open(Requested {
            intent: "test".into(),
            working_dir: Some(working_dir.into()),
            project: None,
            requested_by: None,
            constraints: BTreeMap::new(),
            plan: None,
            request_source: "executor-test".into(),
            request_id: id.into(),
        }),
        Command::RecordPlan(skynet_contract::job::Planned {
            plan,
            planner: "test".into(),
            fallback_reason: None,
            memories: vec![],
            warnings: vec![],
        }),
        Command::DecidePolicy(PolicyDecided {
            allowed: true,
            risk: Risk::Admin,
            step_risks: vec![],
            requires_approval: false,
            approvals_required: 0,
            auto_approved: true,
            reasons: vec![],
            blocked_steps: vec![],
            approval_timeout_secs: None,
        }),
        Command::Dispatch(spec),
        Command::Schedule(Scheduled { provider: provider.into(), scores: vec![] }),
    ];
    for (i, c) in commands.into_iter().enumerate() {
        // Each step recorded by the service that owns it, as the pipeline would.
        skynet_testkit::record(env.jobs.store(), job, &format!("setup{i}"), c).await?;
    }
    Ok(job)
}

/// Starts an executor in-process under the `executor` role; cancel the token to stop it.
pub async fn start_executor(env: &Env, id: &str, providers: ProvidersConfig) -> anyhow::Result<CancellationToken> {
    let config = Config { id: id.into(), providers, capacity: 4, heartbeat_ms: 200, ..Config::default() };
    let nats = env.server.connect_as("executor").await?;
    let js = async_nats::jetstream::new(nats.clone());
    let jobs = Jobs::new(EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?, "executor");
    let deps = Deps { js, nats, jobs };
    let token = CancellationToken::new();
    let stop = token.clone().cancelled_owned();
    tokio::spawn(async move {
        if let Err(e) = skynet_executor::run(config, deps, stop).await {
            eprintln!("executor stopped: {e}");
        }
    });
    Ok(token)
}

/// The job's events as (type, data), oldest first.
pub async fn events(env: &Env, job: JobId) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    Ok(env.jobs.store().load(job).await?.events.into_iter().map(|(_, e)| (e.ty, e.data)).collect())
}

/// Waits for the job's first event of this type (`step_started`, `succeeded`, ...).
pub async fn wait_for(env: &Env, job: JobId, kind: &str) -> anyhow::Result<serde_json::Value> {
    let ty = format!("skynet.job.{kind}.v1");
    eventually(Duration::from_secs(30), &ty, || async {
        events(env, job).await.ok()?.into_iter().find(|(t, _)| *t == ty).map(|(_, d)| d)
    })
    .await
}

/// Waits for the job to end; returns the terminal event's type.
pub async fn wait_end(env: &Env, job: JobId) -> anyhow::Result<String> {
    eventually(Duration::from_secs(30), "a terminal event", || async {
        let evs = events(env, job).await.ok()?;
        evs.into_iter().map(|(t, _)| t).find(|t| {
            ["succeeded", "failed", "cancelled", "timed_out"].iter().any(|k| *t == format!("skynet.job.{k}.v1"))
        })
    })
    .await
}

/// Reads a stored object as text.
pub async fn object_text(env: &Env, bucket: &str, key: &str) -> anyhow::Result<String> {
    let store = env.js.get_object_store(bucket).await?;
    let mut obj = store.get(key).await?;
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut obj, &mut text).await?;
    Ok(text)
}

/// Everything a job printed: live chunks and the output quick steps carried in
/// their result events, in order.
pub async fn output(env: &Env, job: JobId) -> anyhow::Result<String> {
    let mut text = String::new();
    for (t, d) in events(env, job).await? {
        if t.ends_with("step_output.v1") {
            text.push_str(d["chunk"].as_str().unwrap_or(""));
        }
        if t.ends_with("step_succeeded.v1") || t.ends_with("step_failed.v1") {
            text.push_str(d["stdout"].as_str().unwrap_or(""));
            text.push_str(d["stderr"].as_str().unwrap_or(""));
        }
    }
    Ok(text)
}

/// A step's full stdout: from its result event, or from the object store.
pub async fn step_stdout(env: &Env, result: &serde_json::Value) -> anyhow::Result<String> {
    if let Some(s) = result["stdout"].as_str() {
        return Ok(s.to_owned());
    }
    let base = result["output_ref"].as_str().ok_or_else(|| anyhow::anyhow!("no output in {result}"))?;
    object_text(env, "SKYNET_OUTPUT", &format!("{base}/stdout")).await
}
