//! The sentinel in the running system: every executor gone is one critical
//! alert, waiting jobs one more, and both resolve when an executor is back; an
//! approval waiting past the reminder raises a reminder; a repeat inside the
//! cooldown is recorded but not re-sent; a silence mutes; every alert sent
//! reaches a real HTTP receiver with a valid Standard Webhooks signature.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use skynet_cli::infra::Infra;
use skynet_cli::up::{self, Service};
use skynet_system_tests::{SOURCE, System, job_id, token};
use skynet_testkit::{NatsServer, TestDb, eventually};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(30);

/// (signature valid, body) of every request the receiver got.
type Seen = Arc<Mutex<Vec<(bool, Value)>>>;

async fn receiver() -> anyhow::Result<(String, Seen)> {
    let seen: Seen = Arc::default();
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = state.clone();
            async move {
                let ok = standardwebhooks::Webhook::new(SECRET).and_then(|w| w.verify(&body, &headers)).is_ok();
                let value = serde_json::from_slice(&body).unwrap_or_default();
                seen.lock().unwrap_or_else(|e| e.into_inner()).push((ok, value));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, seen))
}

/// The notices the receiver got for alerts of `kind` (`alert.raised` / `alert.resolved`).
fn notices(seen: &Seen, ty: &str, kind: &str) -> Vec<Value> {
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    assert!(seen.iter().all(|(ok, _)| *ok), "every notice is signed: {seen:?}");
    seen.iter().filter(|(_, v)| v["type"] == ty && v["data"]["kind"] == kind).map(|(_, v)| v.clone()).collect()
}

async fn alerts(db: &sqlx::PgPool) -> Vec<Value> {
    sqlx::query_scalar("SELECT to_jsonb(a) FROM alerts a ORDER BY raised_at").fetch_all(db).await.unwrap_or_default()
}

/// Waits for the alert of `kind` to be in `status`.
async fn alert(db: &sqlx::PgPool, kind: &str, status: &str) -> anyhow::Result<Value> {
    eventually(WAIT, &format!("{kind} {status}"), || async {
        alerts(db).await.into_iter().find(|a| a["kind"] == kind && a["status"] == status)
    })
    .await
}

/// An executor (mock provider) of its own, stopped by cancelling the token.
async fn executor(sys: &System) -> anyhow::Result<(CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let mut settings = sys.settings();
    settings.executor.providers = vec!["mock".into()];
    settings.executor.mock_latency_ms = 5;
    let infra = Infra::up(&settings).await?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    Ok((stop, tokio::spawn(async move { up::run(&infra, &settings, &[Service::Executor], token).await })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_gone_waiting_jobs_reminders_cooldown_and_silences_as_people_see_them() -> anyhow::Result<()> {
    let (url, seen) = receiver().await?;
    let dir = tempfile::tempdir()?;
    let sinks = dir.path().join("sinks.json");
    std::fs::write(
        &sinks,
        json!({"sinks": [{"name": "ops", "type": "webhook", "url": url, "secret": SECRET}]}).to_string(),
    )?;
    let tune = |s: &mut skynet_cli::settings::Settings| {
        s.sentinel.sinks = Some(sinks.clone());
        s.sentinel.interval_ms = 200;
        s.sentinel.start_limit_secs = 1;
        s.sentinel.approval_reminder_secs = 1;
    };
    let sys = System::start_without(NatsServer::start()?, TestDb::create().await?, tune, &[Service::Executor]).await?;
    let db = sys.db.pool().await?;

    // No executor at all: one critical alert, sent, signed.
    let none = alert(&db, "executors_none", "firing").await?;
    assert_eq!(none["severity"], "critical");
    eventually(WAIT, "executors_none sent", || async {
        (notices(&seen, "alert.raised", "executors_none").len() == 1).then_some(())
    })
    .await?;

    // Jobs wait: one grouped alert, however many jobs.
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(
            sys.submit(&format!("wait-{i}"), json!({"intent": "list files", "working_dir": sys.project()})).await?,
        );
    }
    let waiting = eventually(WAIT, "jobs_not_starting, critical", || async {
        alerts(&db).await.into_iter().find(|a| a["kind"] == "jobs_not_starting" && a["severity"] == "critical")
    })
    .await?;
    assert_eq!(alerts(&db).await.iter().filter(|a| a["kind"] == "jobs_not_starting").count(), 1);
    assert!(waiting["summary"].as_str().unwrap_or("").contains("no executor is online"), "{waiting}");

    // An executor: both resolve, and people hear so.
    let (stop, task) = executor(&sys).await?;
    alert(&db, "executors_none", "resolved").await?;
    for job in &jobs {
        sys.wait_for(*job, "skynet.job.succeeded.v1").await?;
    }
    alert(&db, "jobs_not_starting", "resolved").await?;
    eventually(WAIT, "both resolutions sent", || async {
        let sent = notices(&seen, "alert.resolved", "executors_none").len()
            + notices(&seen, "alert.resolved", "jobs_not_starting").len();
        (sent == 2).then_some(())
    })
    .await?;

    // An approval waiting past the reminder: a reminder naming the command.
    let zip = sys.submit("zip-1", json!({"intent": "zip the project", "working_dir": sys.project()})).await?;
    let reminder = alert(&db, "approval_waiting", "firing").await?;
    assert_eq!(reminder["subject"], zip.to_string());
    assert!(reminder["summary"].as_str().unwrap_or("").contains(&format!("skynet approve {zip}")), "{reminder}");
    eventually(WAIT, "the reminder sent", || async {
        (notices(&seen, "alert.raised", "approval_waiting").len() == 1).then_some(())
    })
    .await?;

    // A silence (an approver's) of one job's reminders: recorded, not sent.
    let bad = sys
        .request(
            "skynet.cmd.alert.silence",
            json!({"token": "nobody", "matchers": {"kind": "approval_waiting"}, "duration_secs": 600, "reason": "x"}),
        )
        .await?;
    assert_eq!((bad["accepted"].as_bool(), bad["code"].as_str()), (Some(false), Some("unauthorized")));
    let everything = sys
        .request(
            "skynet.cmd.alert.silence",
            json!({"token": token("ann"), "matchers": {}, "duration_secs": 600, "reason": "x"}),
        )
        .await?;
    assert_eq!(everything["accepted"], false, "a silence must say what it mutes: {everything}");
    let zip2 = job_id(SOURCE, "zip-2");
    let silenced = sys
        .request(
            "skynet.cmd.alert.silence",
            json!({"token": token("ann"), "matchers": {"job": zip2.to_string()}, "duration_secs": 600, "reason": "known"}),
        )
        .await?;
    assert_eq!(silenced["accepted"], true, "{silenced}");
    eventually(WAIT, "the silence applied", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM alert_silences").fetch_one(&db).await.ok()?;
        (n == 1).then_some(())
    })
    .await?;
    sys.submit("zip-2", json!({"intent": "zip the project", "working_dir": sys.project()})).await?;
    let muted = eventually(WAIT, "the second reminder", || async {
        alerts(&db).await.into_iter().find(|a| a["kind"] == "approval_waiting" && a["subject"] == zip2.to_string())
    })
    .await?;
    assert_eq!(muted["notified"], false);
    assert!(muted["muted"].as_str().unwrap_or("").starts_with("silenced by "), "{muted}");

    // The executor stops again inside the cooldown: raised again, not re-sent.
    stop.cancel();
    task.await??;
    let again = eventually(WAIT, "executors_none raised a second time", || async {
        alerts(&db)
            .await
            .into_iter()
            .find(|a| a["kind"] == "executors_none" && a["status"] == "firing" && a["times_raised"] == 2)
    })
    .await?;
    assert_eq!((again["notified"].as_bool(), again["muted"].as_str()), (Some(false), Some("cooldown")));

    // A reminder nobody silenced is sent after both: the sink's notices are
    // in order, so by then anything sent of the two above would be there.
    let zip3 = sys.submit("zip-3", json!({"intent": "zip the project", "working_dir": sys.project()})).await?;
    eventually(WAIT, "the third reminder sent", || async {
        notices(&seen, "alert.raised", "approval_waiting")
            .iter()
            .any(|n| n["data"]["subject"] == zip3.to_string())
            .then_some(())
    })
    .await?;
    assert_eq!(notices(&seen, "alert.raised", "executors_none").len(), 1, "not re-sent inside the cooldown");
    assert!(
        notices(&seen, "alert.raised", "approval_waiting").iter().all(|n| n["data"]["subject"] != zip2.to_string()),
        "the silenced reminder was not sent"
    );

    // People see the same through the API.
    let base = sys.api(skynet_api::Config::default()).await?;
    let listed: Value = reqwest::Client::new()
        .get(format!("{base}/v1/alerts"))
        .bearer_auth(token("alice"))
        .send()
        .await?
        .json()
        .await?;
    let kinds: Vec<&str> =
        listed["alerts"].as_array().into_iter().flatten().filter_map(|a| a["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"executors_none"), "critical first: {listed}");
    assert!(kinds.contains(&"approval_waiting"), "{listed}");
    // The health: degraded while something critical fires, with the sentinel's counts.
    let health: Value = reqwest::get(format!("{base}/v1/health")).await?.json().await?;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["components"]["sentinel"]["alerts_firing"]["critical"], 1, "{health}");
    assert_eq!(health["components"]["sentinel"]["dependencies"]["postgres"], "ok", "{health}");
    // And the sentinel's own answer, as `skynet status` asks it.
    let status = sys.request("skynet.sentinel.status", json!(null)).await?;
    assert_eq!(status["executors_up"], 0, "{status}");
    assert!(status["alerts"][0]["kind"] == "executors_none", "most severe first: {status}");
    sys.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sentinel_neither_raises_again_what_fires_nor_forgets_it() -> anyhow::Result<()> {
    let tune = |s: &mut skynet_cli::settings::Settings| s.sentinel.interval_ms = 200;
    let sys = System::start_without(NatsServer::start()?, TestDb::create().await?, tune, &[Service::Executor]).await?;
    let db = sys.db.pool().await?;
    let none = alert(&db, "executors_none", "firing").await?;
    let fp = none["fingerprint"].as_str().unwrap_or_default().to_owned();
    let raised = format!("skynet.alert.{fp}.raised");
    assert_eq!(sys.read_all("SKYNET_EVENTS", &raised).await?.len(), 1);

    // Everything stops and starts again on the same log and database.
    let (nats, test_db) = sys.stop_services().await?;
    let restarted = chrono::Utc::now();
    let sys = System::start_without(nats, test_db, tune, &[Service::Executor]).await?;
    // Its first looks after the restart (live, still no executor) are in...
    eventually(WAIT, "the restarted sentinel's looks", || async {
        let s = sys.request("skynet.sentinel.status", json!(null)).await.ok()?;
        let at: chrono::DateTime<chrono::Utc> = serde_json::from_value(s["at"].clone()).ok()?;
        (at > restarted + chrono::Duration::seconds(1) && s["executors_up"] == 0).then_some(())
    })
    .await?;
    // ...and the alert still fires, raised once.
    assert_eq!(sys.read_all("SKYNET_EVENTS", &raised).await?.len(), 1, "not raised again");
    let status = sys.request("skynet.sentinel.status", json!(null)).await?;
    assert_eq!(status["alerts"][0]["fingerprint"], fp.as_str(), "{status}");
    sys.shutdown().await
}
