//! The sentinel against a real nats-server, a real Postgres and a real HTTP
//! receiver: its consumer under real redelivery, forged alert events
//! dead-lettered, and a webhook delivery signed per Standard Webhooks,
//! retried after a 500.

use std::sync::{Arc, Mutex};

use async_nats::jetstream::AckKind;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use skynet_bus::consumer::Disposition;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_contract::Envelope;
use skynet_contract::alert::{self, AlertKind, AlertRaised, Severity};
use skynet_sentinel::sinks::{self, Notice};
use skynet_sentinel::{Deps, handle};
use skynet_testkit::{Log, TestDb, fetch_one};

async fn deps(log: &Log, db: &TestDb) -> anyhow::Result<Deps> {
    let pool = db.pool().await?;
    skynet_sentinel::migrate(&pool).await?;
    let principals = Arc::new(skynet_bus::principals::Principals::open(&log.js).await?);
    Ok(Deps { js: log.js.clone(), nats: log.client.clone(), db: pool, principals, http: sinks::client()? })
}

fn raised(subject: &str) -> AlertRaised {
    let fingerprint = alert::fingerprint(AlertKind::ExecutorLost, subject);
    AlertRaised {
        fingerprint,
        kind: AlertKind::ExecutorLost,
        subject: subject.into(),
        severity: Severity::Warning,
        summary: format!("executor {subject} sent no heartbeat for 12 s"),
        labels: [("kind".to_owned(), "executor_lost".to_owned())].into(),
        notified: true,
        muted: None,
    }
}

async fn alerts(db: &sqlx::PgPool) -> anyhow::Result<Vec<(String, String, i32)>> {
    Ok(sqlx::query_as("SELECT fingerprint, status, times_raised FROM alerts ORDER BY fingerprint")
        .fetch_all(db)
        .await?)
}

#[tokio::test]
async fn a_redelivered_alert_event_changes_nothing_and_forgeries_are_dead_lettered() -> anyhow::Result<()> {
    let log = Log::start("sentinel").await?;
    let db = TestDb::create().await?;
    let deps = deps(&log, &db).await?;
    let r = raised("e1");
    let env =
        Envelope::new(alert::RAISED, "ev-1".into(), "skynet/sentinel", Some(r.fingerprint.clone()), Utc::now(), &r)?;
    skynet_bus::publish(&log.js, &alert::subject(&r.fingerprint, "raised"), &env).await?;

    let first = fetch_one(&log.js, EVENTS_STREAM, "sentinel").await?;
    assert!(matches!(handle(&deps, first.clone()).await, Disposition::Ack));
    let after_first = alerts(&deps.db).await?;
    assert_eq!(after_first, [(r.fingerprint.clone(), "firing".to_owned(), 1)]);
    first.ack_with(AckKind::Nak(None)).await.map_err(|e| anyhow::anyhow!(e))?;
    let again = fetch_one(&log.js, EVENTS_STREAM, "sentinel").await?;
    assert_eq!(again.info().map(|i| i.delivered).ok(), Some(2), "a real redelivery");
    assert!(matches!(handle(&deps, again.clone()).await, Disposition::Ack));
    again.ack().await.map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(alerts(&deps.db).await?, after_first, "the redelivery changed nothing");

    // Claimed by another source: dead-lettered, the table untouched.
    let forged = Envelope::new(
        alert::RAISED,
        "ev-2".into(),
        "skynet/api",
        Some(r.fingerprint.clone()),
        Utc::now(),
        &raised("e2"),
    )?;
    skynet_bus::publish(&log.js, &alert::subject(&raised("e2").fingerprint, "raised"), &forged).await?;
    let msg = fetch_one(&log.js, EVENTS_STREAM, "sentinel").await?;
    assert!(matches!(handle(&deps, msg).await, Disposition::DeadLetter { code: "wrong_source", .. }));
    // An alert filed under another alert's fingerprint: dead-lettered.
    let other = raised("e3");
    let env = Envelope::new(alert::RAISED, "ev-3".into(), "skynet/sentinel", None, Utc::now(), &other)?;
    skynet_bus::publish(&log.js, &alert::subject(&r.fingerprint, "raised"), &env).await?;
    let msg = fetch_one(&log.js, EVENTS_STREAM, "sentinel").await?;
    assert!(matches!(handle(&deps, msg).await, Disposition::DeadLetter { code: "wrong_subject", .. }));
    assert_eq!(alerts(&deps.db).await?, after_first);
    Ok(())
}

/// What the receiver saw: (verified, body) per request.
type Seen = Arc<Mutex<Vec<(bool, serde_json::Value)>>>;

/// A webhook receiver that verifies each request's signature with the
/// Standard Webhooks reference library, and answers 500 to the first one.
async fn receiver(secret: &'static str) -> anyhow::Result<(String, Seen)> {
    let seen: Seen = Arc::default();
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = state.clone();
            async move {
                let ok = standardwebhooks::Webhook::new(secret).and_then(|w| w.verify(&body, &headers)).is_ok();
                let value = serde_json::from_slice(&body).unwrap_or_default();
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.push((ok, value));
                if seen.len() == 1 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::NO_CONTENT }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, seen))
}

#[tokio::test]
async fn a_webhook_is_signed_and_retried_after_a_500_and_a_wrong_secret_fails_verification() -> anyhow::Result<()> {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (url, seen) = receiver(SECRET).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("sinks.json");
    let sinks_json = serde_json::json!({"sinks": [
        {"name": "ops", "type": "webhook", "url": url, "secret": SECRET},
        {"name": "other", "type": "webhook", "url": url, "secret": "whsec_c2VjcmV0LW9mLXNvbWVvbmUtZWxzZQ=="},
    ]});
    std::fs::write(&file, sinks_json.to_string())?;
    let loaded = sinks::load(&file)?;
    let r = raised("e1");
    let notice = Notice {
        id: "msg-1".into(),
        ty: "alert.raised".into(),
        timestamp: Utc::now(),
        data: serde_json::to_value(&r)?,
        severity: r.severity,
        text: r.summary.clone(),
    };
    let http = sinks::client()?;
    let backoff = std::time::Duration::from_millis(10);
    let attempts =
        sinks::deliver(&http, &loaded[0], &notice, 3, backoff).await.map_err(|f| anyhow::anyhow!(f.error))?;
    assert_eq!(attempts, 2, "one 500, then delivered");
    {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|(ok, _)| *ok), "both attempts carry a valid signature");
        assert_eq!(seen[1].1["type"], "alert.raised");
        assert_eq!(seen[1].1["data"]["fingerprint"], r.fingerprint.as_str());
    }
    // Signed with another secret: the receiver's verification fails.
    sinks::deliver(&http, &loaded[1], &notice, 1, backoff).await.map_err(|f| anyhow::anyhow!(f.error))?;
    let last_ok = seen.lock().unwrap_or_else(|e| e.into_inner()).last().map(|(ok, _)| *ok);
    assert_eq!(last_ok, Some(false));
    Ok(())
}

#[tokio::test]
async fn a_sink_that_keeps_failing_gives_up_after_its_attempts_and_says_why() -> anyhow::Result<()> {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    drop(listener);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("sinks.json");
    std::fs::write(&file, serde_json::json!({"sinks": [{"name": "chat", "type": "slack", "url": url}]}).to_string())?;
    let sink = sinks::load(&file)?.remove(0);
    let notice = Notice {
        id: "msg-2".into(),
        ty: "alert.raised".into(),
        timestamp: Utc::now(),
        data: serde_json::Value::Null,
        severity: Severity::Critical,
        text: "no executor online".into(),
    };
    let failed = sinks::deliver(&sinks::client()?, &sink, &notice, 3, std::time::Duration::from_millis(10))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("delivered to nobody?"))?;
    assert_eq!(failed.attempts, 3);
    assert!(!failed.error.contains(&url), "the URL (a credential for Slack) stays out of errors: {}", failed.error);
    Ok(())
}
