//! Executors as separate `skynet run executor` processes, the way users scale
//! them: the work spreads over all of them, every step runs exactly once, and a
//! `kill -9` in the middle of a step loses no job and completes none twice.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use skynet_cli::infra::Infra;
use skynet_cli::settings::Settings;
use skynet_cli::up::{self, Service};
use skynet_testkit::{NatsServer, TestDb, eventually};
use tokio_util::sync::CancellationToken;

struct Executor(Child);

impl Drop for Executor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn executor(nats: &NatsServer, db: &TestDb, id: &str, latency_ms: u64) -> anyhow::Result<Executor> {
    executor_with(nats, db, id, "mock", latency_ms)
}

fn executor_with(
    nats: &NatsServer,
    db: &TestDb,
    id: &str,
    providers: &str,
    latency_ms: u64,
) -> anyhow::Result<Executor> {
    let child = Command::new(env!("CARGO_BIN_EXE_skynet"))
        .args(["run", "executor"])
        .env("SKYNET_NATS_URL", &nats.url)
        // One credential for the process, as an operator deploys an executor.
        .env("SKYNET_NATS_CREDS", nats.creds().path("executor"))
        .env("DATABASE_URL", &db.url)
        .env("SKYNET_EXECUTOR_ID", id)
        .env("SKYNET_EXECUTOR_PROVIDERS", providers)
        .env("SKYNET_EXECUTOR_CAPACITY", "4")
        .env("SKYNET_MOCK_LATENCY_MS", latency_ms.to_string())
        .env("SKYNET_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Executor(child))
}

/// The control plane (everything but executors) in this process.
async fn control_plane(
    nats: &NatsServer,
    db: &TestDb,
) -> anyhow::Result<(CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let mut settings = Settings::new(Some(nats.url.clone()), Some(db.url.clone()));
    settings.nats_creds_dir = Some(nats.creds().dir.clone());
    settings.api_token = Some("scaling-test-admin-token".into());
    let infra = Infra::up(&settings).await?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    let services = [Service::Intake, Service::Planner, Service::Policy, Service::Dispatcher, Service::Scheduler];
    let task = tokio::spawn(async move { up::run(&infra, &settings, &services, token).await });
    Ok((stop, task))
}

async fn submit(client: &async_nats::Client, id: &str) -> anyhow::Result<uuid::Uuid> {
    let body = json!({"specversion": "1.0", "id": id, "source": "tests/scaling", "type": "skynet.task.requested.v1",
        "data": {"intent": "check git status", "working_dir": "/tmp"}});
    client.publish("skynet.intake.task", serde_json::to_vec(&body)?.into()).await?;
    let ns = uuid::Uuid::from_u128(0x6b1f_0d4e_93a2_4c57_8f0e_5d2a_c3b1_7e90);
    Ok(uuid::Uuid::new_v5(&ns, format!("tests/scaling\0{id}").as_bytes()))
}

/// Every job event as (job, type, data), read by direct get as a user may.
async fn all_events(js: &async_nats::jetstream::Context) -> anyhow::Result<Vec<(String, String, serde_json::Value)>> {
    let msgs = skynet_bus::read::read_all(&js.client(), "SKYNET_EVENTS", "skynet.job.>", 1)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut out = Vec::new();
    for m in msgs {
        let v: serde_json::Value = serde_json::from_slice(&m.payload)?;
        out.push((
            v["subject"].as_str().unwrap_or("").to_owned(),
            v["type"].as_str().unwrap_or("").to_owned(),
            v["data"].clone(),
        ));
    }
    Ok(out)
}

fn count(events: &[(String, String, serde_json::Value)], job: &str, kind: &str) -> usize {
    let ty = format!("skynet.job.{kind}.v1");
    events.iter().filter(|(j, t, _)| j == job && *t == ty).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_executor_processes_share_thirty_jobs_each_step_once() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let db = TestDb::create().await?;
    let (stop, plane) = control_plane(&nats, &db).await?;
    let _executors = [
        executor(&nats, &db, "exec-a", 200)?,
        executor(&nats, &db, "exec-b", 200)?,
        executor(&nats, &db, "exec-c", 200)?,
    ];
    // Users submit and read with the client role; the heartbeat check needs admin.
    let client = nats.connect_as("client").await?;
    let js = async_nats::jetstream::new(client.clone());
    let admin = async_nats::jetstream::new(nats.connect().await?);
    // Wait until all three heartbeat, so the first jobs do not all land on one.
    let kv = admin.get_key_value("SKYNET_EXECUTORS").await?;
    eventually(Duration::from_secs(30), "three executors online", || async {
        use futures::StreamExt;
        let keys: Vec<String> = kv.keys().await.ok()?.filter_map(|k| async move { k.ok() }).collect().await;
        (keys.len() == 3).then_some(())
    })
    .await?;
    let mut jobs = Vec::new();
    for i in 0..30 {
        jobs.push(submit(&client, &format!("scale-{i}")).await?.to_string());
    }
    client.flush().await?;
    let events = eventually(Duration::from_secs(60), "30 succeeded jobs", || async {
        let evs = all_events(&js).await.ok()?;
        let done = jobs.iter().filter(|j| count(&evs, j, "succeeded") == 1).count();
        (done == jobs.len()).then_some(evs)
    })
    .await?;
    let mut per_executor: BTreeMap<String, usize> = BTreeMap::new();
    for j in &jobs {
        assert_eq!(count(&events, j, "succeeded"), 1, "{j} succeeded once");
        assert_eq!(count(&events, j, "step_succeeded"), 1, "{j}: its one step ran exactly once");
        assert_eq!(count(&events, j, "step_failed"), 0, "{j}: and never failed");
        assert_eq!(count(&events, j, "started"), 1, "{j}: taken once");
        for (_, _, d) in events.iter().filter(|(jj, t, _)| jj == j && t == "skynet.job.started.v1") {
            *per_executor.entry(d["executor"].as_str().unwrap_or("").to_owned()).or_default() += 1;
        }
    }
    assert_eq!(
        per_executor.keys().cloned().collect::<BTreeSet<_>>(),
        ["exec-a", "exec-b", "exec-c"].map(String::from).into()
    );
    eprintln!("jobs per executor: {per_executor:?}");
    stop.cancel();
    plane.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_step_moves_the_job_to_another_executor_and_completes_it_once() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let db = TestDb::create().await?;
    let (stop, plane) = control_plane(&nats, &db).await?;
    let mut a = Some(executor(&nats, &db, "victim-a", 3000)?);
    let mut b = Some(executor(&nats, &db, "victim-b", 3000)?);
    // Users submit and read with the client role.
    let client = nats.connect_as("client").await?;
    let js = async_nats::jetstream::new(client.clone());
    let job = submit(&client, "kill-1").await?.to_string();
    client.flush().await?;
    let holder = eventually(Duration::from_secs(30), "the step to start", || async {
        let evs = all_events(&js).await.ok()?;
        evs.iter()
            .find(|(j, t, _)| *j == job && t == "skynet.job.step_started.v1")
            .map(|(_, _, d)| d["executor"].as_str().unwrap_or("").to_owned())
    })
    .await?;
    // kill -9 the executor in the middle of its 3-second step.
    let victim = if holder == "victim-a" { a.take() } else { b.take() };
    let mut victim = victim.ok_or_else(|| anyhow::anyhow!("unknown holder {holder}"))?;
    let pid = victim.0.id().to_string();
    assert!(Command::new("kill").args(["-9", &pid]).status()?.success());
    let _ = victim.0.wait();

    let events = eventually(Duration::from_secs(60), "the job to finish elsewhere", || async {
        let evs = all_events(&js).await.ok()?;
        (count(&evs, &job, "succeeded") >= 1).then_some(evs)
    })
    .await?;
    assert_eq!(count(&events, &job, "succeeded"), 1, "completed once");
    let started: Vec<_> = events
        .iter()
        .filter(|(j, t, _)| *j == job && t == "skynet.job.started.v1")
        .map(|(_, _, d)| d.clone())
        .collect();
    assert_eq!(started.len(), 2, "taken twice: {started:?}");
    assert_ne!(started[0]["executor"], started[1]["executor"]);
    assert!(started[1]["lease"].as_u64() > started[0]["lease"].as_u64(), "newer lease");
    let ok: Vec<_> = events.iter().filter(|(j, t, _)| *j == job && t == "skynet.job.step_succeeded.v1").collect();
    assert_eq!(ok.len(), 1, "the step's result is recorded once");
    assert_eq!(ok[0].2["lease"], started[1]["lease"], "under the new lease");
    drop((a, b));
    stop.cancel();
    plane.await??;
    Ok(())
}

/// Process ids whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit(") ").next()?.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_executor_records_nothing_after_it_resumes_and_its_step_is_killed() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let db = TestDb::create().await?;
    let (stop, plane) = control_plane(&nats, &db).await?;
    // A project whose tests take a while (a real child process of the executor).
    let project = tempfile::tempdir()?;
    std::fs::write(project.path().join("Makefile"), "test:\n\tsleep 15\n")?;
    let mut a = executor_with(&nats, &db, "paused-a", "local", 0)?;
    let client = nats.connect_as("client").await?;
    let js = async_nats::jetstream::new(client.clone());
    let body = json!({"specversion": "1.0", "id": "pause-1", "source": "tests/scaling", "type": "skynet.task.requested.v1",
        "data": {"intent": "run the tests", "working_dir": project.path().display().to_string()}});
    client.publish("skynet.intake.task", serde_json::to_vec(&body)?.into()).await?;
    let ns = uuid::Uuid::from_u128(0x6b1f_0d4e_93a2_4c57_8f0e_5d2a_c3b1_7e90);
    let job = uuid::Uuid::new_v5(&ns, b"tests/scaling\0pause-1").to_string();
    eventually(Duration::from_secs(30), "A's step to start", || async {
        (count(&all_events(&js).await.ok()?, &job, "step_started") == 1).then_some(())
    })
    .await?;
    let a_pid = a.0.id();
    eventually(Duration::from_secs(10), "A's child process", || async {
        (!children_of(a_pid).is_empty()).then_some(())
    })
    .await?;
    // Pause A past the lease (5 s ack wait); B takes the job over.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(a_pid)?), nix::sys::signal::Signal::SIGSTOP)?;
    let _b = executor_with(&nats, &db, "paused-b", "local", 0)?;
    let takeover = eventually(Duration::from_secs(30), "B to take the job over", || async {
        let evs = all_events(&js).await.ok()?;
        evs.iter().position(|(j, t, d)| *j == job && t == "skynet.job.started.v1" && d["lease"] == 2)
    })
    .await?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(a_pid)?), nix::sys::signal::Signal::SIGCONT)?;
    // Resumed, A kills its step at once (not when the step would have ended)...
    eventually(Duration::from_secs(3), "A's step killed", || async { children_of(a_pid).is_empty().then_some(()) })
        .await?;
    // ...and records nothing: the job ends once, by B's lease.
    let events = eventually(Duration::from_secs(30), "the job to succeed", || async {
        let evs = all_events(&js).await.ok()?;
        (count(&evs, &job, "succeeded") == 1).then_some(evs)
    })
    .await?;
    let after: Vec<_> = events[takeover..].iter().filter(|(j, _, d)| *j == job && d["lease"] == 1).collect();
    assert!(after.is_empty(), "A recorded after losing its lease: {after:?}");
    assert!(a.0.try_wait()?.is_none(), "A itself lives on, only its step was stopped");
    stop.cancel();
    plane.await??;
    Ok(())
}
