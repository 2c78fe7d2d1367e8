//! The client commands as a user runs them: the `skynet` binary against a
//! running system. `skynet task --wait` exits with the job's outcome.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use skynet_cli::infra::Infra;
use skynet_cli::settings::Settings;
use skynet_cli::up::{self, Service};
use skynet_testkit::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "cli-test-admin-token";
const BOB_TOKEN: &str = "cli-test-bob-token";

struct Running {
    nats: NatsServer,
    db: TestDb,
    stop: CancellationToken,
    /// A project (a Makefile) whose tests and build the jobs run.
    project: tempfile::TempDir,
}

async fn system() -> anyhow::Result<Running> {
    let nats = NatsServer::start()?;
    let db = TestDb::create().await?;
    let mut settings = Settings::new(Some(nats.url.clone()), Some(db.url.clone()));
    settings.nats_creds_dir = Some(nats.creds().dir.clone());
    // The first admin principal (registered by `Infra::up`), whose token the
    // commands below present.
    settings.api_token = Some(ADMIN_TOKEN.into());
    settings.executor.providers = vec!["mock".into()];
    settings.executor.mock_latency_ms = 5;
    let infra = Infra::up(&settings).await?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    // Every service, the initiative included (its first evaluation is an
    // interval, 300 s, away: it only answers the commands here).
    let services: Vec<Service> =
        Service::ALL.iter().copied().filter(|s| !matches!(s, Service::Api | Service::Telegram)).collect();
    tokio::spawn(async move { up::run(&infra, &settings, &services, token).await });
    // Ready once the policy service answers.
    let client = nats.connect_as("client").await?;
    skynet_testkit::eventually(std::time::Duration::from_secs(20), "the policy service", || async {
        client.request("skynet.policy.check", br#"{"action":"x"}"#.as_slice().into()).await.ok().map(|_| ())
    })
    .await?;
    let project = tempfile::tempdir()?;
    std::fs::write(project.path().join("Makefile"), "test:\n\t@true\nall:\n\t@true\n")?;
    let principals =
        skynet_bus::principals::Principals::open(&async_nats::jetstream::new(nats.connect().await?)).await?;
    let bob = skynet_contract::principal::Principal {
        name: "bob".into(),
        roles: vec![skynet_contract::principal::PrincipalRole::Approve],
    };
    principals.put(BOB_TOKEN, &bob).await?;
    Ok(Running { nats, db, stop, project })
}

fn skynet(r: &Running, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_skynet"));
    c.args(args)
        .env("SKYNET_NATS_URL", &r.nats.url)
        .env("SKYNET_NATS_CREDS", r.nats.creds().path("client"))
        .env("SKYNET_TOKEN", ADMIN_TOKEN)
        .env("DATABASE_URL", &r.db.url)
        .env("SKYNET_LOG", "warn")
        .env("NO_COLOR", "1");
    c
}

fn run(r: &Running, args: &[&str]) -> anyhow::Result<Output> {
    Ok(skynet(r, args).output()?)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_wait_exits_with_the_jobs_outcome_and_the_other_commands_work() -> anyhow::Result<()> {
    let r = system().await?;
    // Success: 0, with live progress.
    let ok = tokio::task::spawn_blocking({
        let dir = r.project.path().display().to_string();
        let cmd = run(&r, &["task", "check git status and run the tests", "--dir", &dir, "--wait"]);
        move || cmd
    })
    .await??;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let out = text(&ok);
    for kind in ["requested", "planned", "scheduled", "step_succeeded", "24 passed", "succeeded"] {
        assert!(out.contains(kind), "{kind} in:\n{out}");
    }
    let job = out.lines().next().and_then(|l| l.strip_prefix("job ")).unwrap_or_default().to_owned();
    assert!(job.parse::<uuid::Uuid>().is_ok(), "first line names the job: {out}");

    // A planning failure: 1.
    let failed = run(&r, &["task", "paint the fence", "--wait"])?;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(text(&failed).contains("planning_failed"));

    // Approval from another terminal while one waits.
    let dir = r.project.path().display().to_string();
    let mut waiting = skynet(&r, &["task", "build the project", "--dir", &dir, "--wait", "--timeout", "60"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut first = String::new();
    BufReader::new(waiting.stdout.take().ok_or_else(|| anyhow::anyhow!("stdout"))?).read_line(&mut first)?;
    let wjob = first.trim().strip_prefix("job ").unwrap_or_default().to_owned();
    let approved =
        skynet_testkit::eventually(std::time::Duration::from_secs(20), "the approval to be accepted", || {
            let r = &r;
            let wjob = wjob.clone();
            async move {
                // Not the requester (the admin token submitted it): bob approves.
                let o = run(r, &["approve", &wjob, "--token", BOB_TOKEN]).ok()?;
                (o.status.code() == Some(0)).then_some(o)
            }
        })
        .await?;
    assert!(text(&approved).contains("approve accepted"), "{}", text(&approved));
    let status = tokio::task::spawn_blocking(move || waiting.wait()).await??;
    assert_eq!(status.code(), Some(0));

    // Refused commands exit 1 and say why.
    let refused = run(&r, &["cancel", &job])?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("already finished"), "{}", text(&refused));
    let bad = run(&r, &["approve", "not-a-job"])?;
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("is not a job id"));

    // jobs and job read the read models and the log.
    let listed = skynet_testkit::eventually(std::time::Duration::from_secs(20), "three jobs listed", || async {
        let o = run(&r, &["jobs", "--json"]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (v.as_array()?.len() == 3).then_some(v)
    })
    .await?;
    assert!(listed.as_array().into_iter().flatten().any(|j| j["id"] == job.as_str() && j["status"] == "succeeded"));
    let table = run(&r, &["jobs"])?;
    assert!(text(&table).starts_with("JOB"), "{}", text(&table));
    let shown = run(&r, &["job", &job])?;
    let shown = text(&shown);
    assert!(shown.contains("timeline") && shown.contains("run_tests") && shown.contains("succeeded"), "{shown}");

    // status: the executor online, as the client role reads it, with what it
    // runs; and the sentinel's look (dependencies, queues, alerts).
    let status = skynet_testkit::eventually(std::time::Duration::from_secs(20), "the sentinel's look", || async {
        let o = run(&r, &["status", "--json"]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        let postgres_ok = v["system"]["dependencies"].get("postgres") == Some(&serde_json::Value::Null);
        (o.status.code() == Some(0) && postgres_ok && v["system"]["executors_up"] == 1).then_some(v)
    })
    .await?;
    let mock = &status["executors"][0]["providers"]["mock"];
    assert_eq!((mock["health"].as_str(), mock["capabilities"].clone()), (Some("healthy"), serde_json::json!(["*"])));
    assert!(status["system"]["consumers"]["planner"].is_u64(), "{status}");
    let human = text(&run(&r, &["status"])?);
    assert!(human.starts_with("executor ") && human.contains("mock      healthy"), "{human}");
    assert!(human.contains("postgres                       ok") && human.contains("queues (pending)"), "{human}");

    // memory: add a fact, find it, count it; a bad type is refused.
    let added = run(&r, &["memory", "add", "web1 restarts nginx nightly"])?;
    assert_eq!(added.status.code(), Some(0), "{}", text(&added));
    let found = skynet_testkit::eventually(std::time::Duration::from_secs(20), "the fact found", || async {
        let o = run(&r, &["memory", "search", "nginx on web1", "--type", "environment_fact", "--json"]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (v["hits"][0]["text"] == "web1 restarts nginx nightly").then_some(v)
    })
    .await?;
    assert_eq!(found["hits"][0]["kind"], "environment_fact");
    let stats = text(&run(&r, &["memory", "stats"])?);
    assert!(stats.contains("environment_fact  1") && stats.contains("pg_trgm"), "{stats}");
    let bad = run(&r, &["memory", "add", "--type", "failure_pattern", "x"])?;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));

    // alerts: the sentinel's table as JSON; a silence set and one refused.
    let listed = run(&r, &["alerts", "--all", "--json"])?;
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
    assert!(serde_json::from_slice::<serde_json::Value>(&listed.stdout)?.is_array(), "{}", text(&listed));
    let silenced =
        run(&r, &["alerts", "silence", "--match", "kind=queue_backlog", "--for", "2h", "--reason", "load test"])?;
    assert_eq!(silenced.status.code(), Some(0), "{}", text(&silenced));
    assert!(text(&silenced).starts_with("silence "), "{}", text(&silenced));
    let refused = run(&r, &["alerts", "silence", "--match", "kind=queue_backlog", "--for", "90d"])?;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("30 days"), "{}", text(&refused));

    // initiative: its status, a pause by an approver (shown, with who and why),
    // a resume with an unknown token refused, then a real one.
    let shown = run(&r, &["initiative", "status"])?;
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown));
    assert!(
        text(&shown).starts_with("initiative: running") && text(&shown).contains("maintenance"),
        "{}",
        text(&shown)
    );
    let paused = run(&r, &["initiative", "pause", "--reason", "release freeze"])?;
    assert_eq!(paused.status.code(), Some(0), "{}", text(&paused));
    assert!(text(&paused).contains("initiative paused by admin"), "{}", text(&paused));
    let shown: serde_json::Value = serde_json::from_slice(&run(&r, &["initiative", "status", "--json"])?.stdout)?;
    assert_eq!(
        (&shown["paused"], &shown["switched"][1]["reason"]),
        (&serde_json::json!(true), &serde_json::json!("release freeze"))
    );
    let refused = run(&r, &["initiative", "resume", "--token", "nobody"])?;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("unauthorized"), "{}", text(&refused));
    let resumed = run(&r, &["initiative", "resume"])?;
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert!(text(&run(&r, &["initiative", "status"])?).starts_with("initiative: running (resumed by admin"));

    // The emergency stop from a terminal: an unknown token refused, then the
    // admin's pause (recorded, naming them) and resume.
    let refused = run(&r, &["pause", "--token", "nobody"])?;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("unauthorized"), "{}", text(&refused));
    let paused = run(&r, &["pause", "--reason", "drill", "--keep-running"])?;
    assert_eq!(paused.status.code(), Some(0), "{}", text(&paused));
    assert!(text(&paused).contains("system paused by admin") && text(&paused).contains("run on"), "{}", text(&paused));
    let resumed = run(&r, &["resume"])?;
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert!(text(&resumed).contains("system resumed by admin"), "{}", text(&resumed));

    // No system: a clear error, not a panic.
    let nowhere = Command::new(env!("CARGO_BIN_EXE_skynet"))
        .args(["jobs"])
        .env("SKYNET_NATS_URL", "nats://127.0.0.1:1")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .output()?;
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(text(&nowhere).contains("error:"), "{}", text(&nowhere));
    r.stop.cancel();
    Ok(())
}
