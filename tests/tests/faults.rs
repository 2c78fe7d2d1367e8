//! Faults change nothing: poison never stops the pipeline (a NUL in an intent
//! is refused with its reason; a NUL that reaches the log is projected as
//! U+FFFD, and every later event too; output that is not text survives byte
//! for byte; an event Postgres cannot hold is quarantined and dead-lettered
//! while the later ones project), a failing service is restarted while the others run on, and
//! the services carry on after the nats-server is killed and restarted.

use serde_json::json;
use skynet_cli::chaos::proxy::Proxy;
use skynet_system_tests::{System, WAIT};
use skynet_testkit::{NatsServer, TestDb, eventually};

async fn projected_status(sys: &System, job: uuid::Uuid) -> Option<String> {
    let pool = sys.db.pool().await.ok()?;
    sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1").bind(job).fetch_optional(&pool).await.ok()?
}

#[tokio::test]
async fn a_nul_is_refused_at_the_door_and_survives_in_the_log_without_stopping_the_read_models() -> anyhow::Result<()> {
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    // At the door: refused, with the reason, into the dead letters.
    sys.client
        .publish(
            skynet_system_tests::INTAKE,
            skynet_system_tests::task("nul-1", json!({"intent": "list\u{0}files"})).into(),
        )
        .await?;
    let reason = eventually(WAIT, "the NUL intent refused", || async {
        let letters = sys.read_all("SKYNET_DLQ", "skynet.dlq.intake").await.ok()?;
        letters.iter().find_map(|(_, h, _)| {
            let r = h.as_ref()?.get("Skynet-Dlq-Reason")?.to_string();
            r.contains("U+0000").then_some(r)
        })
    })
    .await?;
    assert!(reason.contains("intent"), "{reason}");

    // Past the door: a binary file's bytes ride on the step's result event.
    let project = std::path::PathBuf::from(sys.project());
    std::fs::write(project.join("blob.bin"), b"head\x00tail")?;
    let binary =
        sys.submit("nul-2", json!({"intent": "read the file ./blob.bin", "working_dir": sys.project()})).await?;
    let step = sys.wait_for(binary, "skynet.job.step_succeeded.v1").await?;
    assert_eq!(step["data"]["stdout"], "head\u{0}tail", "the log keeps the byte");
    // The projector writes it (as U+FFFD) and goes on with the next job.
    let after = sys.submit("nul-3", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    for job in [binary, after] {
        eventually(WAIT, &format!("job {job} projected as succeeded"), || async {
            (projected_status(&sys, job).await.as_deref() == Some("succeeded")).then_some(())
        })
        .await?;
    }
    let pool = sys.db.pool().await?;
    let stdout: Option<String> = sqlx::query_scalar("SELECT stdout FROM steps WHERE job_id = $1")
        .bind(binary)
        .fetch_optional(&pool)
        .await?
        .flatten();
    assert_eq!(stdout.as_deref(), Some("head\u{FFFD}tail"));
    sys.shutdown().await
}

#[tokio::test]
async fn an_event_the_read_models_cannot_hold_is_quarantined_and_later_events_project() -> anyhow::Result<()> {
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    // Two poisoned events put in the log by a credential that may write it (a
    // buggy or compromised service): one that does not decode at all, and one
    // that decodes but Postgres refuses (a subject too large for its index).
    let admin = async_nats::jetstream::new(sys.nats.connect().await?);
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    #[allow(clippy::disallowed_methods)] // written around the event store on purpose: poison
    admin.publish(format!("skynet.job.{a}.step_output"), "{not json".into()).await?.await?;
    let huge: String = (0..625).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
    let env = skynet_contract::Envelope {
        id: uuid::Uuid::new_v4().to_string(),
        source: "skynet/executor".into(),
        ty: "skynet.job.step_output.v1".into(),
        subject: Some(huge),
        time: chrono::Utc::now(),
        data: json!({"step": 0, "stream": "stdout", "seq": 0, "chunk": "x"}),
        traceparent: None,
    };
    let (headers, payload) = skynet_bus::codec::encode(&env);
    #[allow(clippy::disallowed_methods)]
    admin.publish_with_headers(format!("skynet.job.{b}.step_output"), headers, payload).await?.await?;

    // The pipeline and the read models go on.
    let after = sys.submit("poison-after", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    eventually(WAIT, "the later job projected as succeeded", || async {
        (projected_status(&sys, after).await.as_deref() == Some("succeeded")).then_some(())
    })
    .await?;
    // Both are in quarantine with their reasons, and dead-lettered. The audit
    // projection writes apart from the read models, so it may still be behind
    // the job's success: wait for it rather than read a moment too soon.
    let pool = sys.db.pool().await?;
    let kept = eventually(WAIT, "both poisons quarantined", || async {
        let kept: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as("SELECT nats_subject, reason, payload FROM projection_quarantine ORDER BY seq")
                .fetch_all(&pool)
                .await
                .ok()?;
        (kept.len() >= 2).then_some(kept)
    })
    .await?;
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0].0, format!("skynet.job.{a}.step_output"));
    assert!(kept[0].1.starts_with("undecodable"), "{}", kept[0].1);
    assert_eq!(kept[0].2, b"{not json", "the raw bytes are kept");
    assert!(kept[1].1.contains("refused") && kept[1].1.contains("index row"), "{}", kept[1].1);
    let letters = eventually(WAIT, "two dead letters from the projector", || async {
        let l = sys.read_all("SKYNET_DLQ", "skynet.dlq.projector").await.ok()?;
        (l.len() == 2).then_some(l)
    })
    .await?;
    let code = letters[0].1.as_ref().and_then(|h| h.get("Skynet-Dlq-Code")).map(ToString::to_string);
    assert_eq!(code.as_deref(), Some("unprojectable"));
    // Neither is in the audit table; everything else is, up to the checkpoint
    // (both projections' checkpoints meet once the system is idle).
    let (audited, last) = eventually(WAIT, "the audit table holds every other event", || async {
        let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(&pool).await.ok()?;
        let last = skynet_projector::checkpoint(&pool).await.ok()?;
        (u64::try_from(audited).ok()? + 2 == last).then_some((audited, last))
    })
    .await?;
    assert!(audited > 0 && last > 2, "{audited} audited up to {last}");

    // `skynet rebuild` meets the same two: its bulk path (no index on the
    // subject until the end) cannot take them apart, so it starts over event
    // by event and quarantines them as the live projector did.
    let js = async_nats::jetstream::new(sys.nats.connect_as("projector").await?);
    let progress = skynet_projector::Progress::default();
    skynet_projector::rebuild_shadow(skynet_projector::Config::default(), js, &pool, &progress).await?;
    assert!(progress.restarted(), "the bulk path gave up on the poisoned log");
    let requarantined: Vec<String> =
        sqlx::query_scalar("SELECT nats_subject FROM projection_quarantine ORDER BY seq").fetch_all(&pool).await?;
    assert_eq!(requarantined, kept.iter().map(|k| k.0.clone()).collect::<Vec<_>>());
    let rebuilt: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE seq <= $1")
        .bind(i64::try_from(last)?)
        .fetch_one(&pool)
        .await?;
    assert_eq!(rebuilt, audited, "every other event audited again");
    sys.shutdown().await
}

#[tokio::test]
async fn a_failing_service_is_restarted_while_the_others_run_on() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let pool = sys.db.pool().await?;
    // Take a read model's table away: every batch the projector writes fails.
    sqlx::query("ALTER TABLE jobs RENAME TO jobs_away").execute(&pool).await?;
    let job = sys.submit("restart-1", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    // The rest of the system runs on: the job completes in the log.
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    // Put it back: the restarted projector catches up from its checkpoint.
    sqlx::query("ALTER TABLE jobs_away RENAME TO jobs").execute(&pool).await?;
    eventually(std::time::Duration::from_secs(60), "the read model to catch up", || async {
        (projected_status(&sys, job).await.as_deref() == Some("succeeded")).then_some(())
    })
    .await?;
    sys.shutdown().await
}

#[tokio::test]
async fn output_that_is_not_text_survives_byte_for_byte() -> anyhow::Result<()> {
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    let bytes: Vec<u8> = vec![0xff, 0xfe, 0x00, b'x', 0x80, b'\n'];
    let project = std::path::PathBuf::from(sys.project());
    std::fs::write(project.join("raw.bin"), &bytes)?;
    let job = sys.submit("bytes-1", json!({"intent": "read the file ./raw.bin", "working_dir": sys.project()})).await?;
    let step = sys.wait_for(job, "skynet.job.step_succeeded.v1").await?;
    assert!(step["data"].get("stdout").is_none(), "not carried as (lossy) text: {step}");
    let key = format!("{}/stdout", step["data"]["output_ref"].as_str().unwrap_or_default());
    // Stored output is read by the API (and operators), not by clients.
    let js = async_nats::jetstream::new(sys.nats.connect_as("api").await?);
    let mut object = js.get_object_store("SKYNET_OUTPUT").await?.get(key.as_str()).await?;
    let mut stored = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut stored).await?;
    assert_eq!(stored, bytes);
    sys.shutdown().await
}

#[tokio::test]
async fn the_services_carry_on_after_the_nats_server_is_killed_and_restarted() -> anyhow::Result<()> {
    let mut sys = System::start().await?;
    let before = sys.submit("restart-nats-1", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    sys.wait_for(before, "skynet.job.succeeded.v1").await?;
    sys.nats.restart()?;
    // Every service reconnects and resumes its consumer on its own: a request
    // answered, then a whole job through intake, planner, policy, dispatcher,
    // scheduler and executor.
    eventually(WAIT, "the policy service to answer again", || async {
        let body = br#"{"action":"git_status"}"#.as_slice().into();
        sys.client.request("skynet.policy.check", body).await.ok().map(|_| ())
    })
    .await?;
    let after = sys.submit("restart-nats-2", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    sys.wait_for(after, "skynet.job.succeeded.v1").await?;
    eventually(WAIT, "both jobs in the read models", || async {
        let done = [before, after].len();
        let mut n = 0;
        for job in [before, after] {
            n += usize::from(projected_status(&sys, job).await.as_deref() == Some("succeeded"));
        }
        (n == done).then_some(())
    })
    .await?;
    sys.shutdown().await
}

#[tokio::test]
async fn a_postgres_outage_answers_503_then_200_and_the_read_models_catch_up() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let direct = db.pool().await?;
    let url = url::Url::parse(&db.url)?;
    let upstream = format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await?;
    let proxied = proxy.url_for(&db.url)?;
    let through = proxied.clone();
    let sys = System::start_with(NatsServer::start()?, db, |s| s.database_url = Some(through)).await?;
    // The API, on the same proxied database.
    let api_nats = sys.nats.connect_as("api").await?;
    let js = async_nats::jetstream::new(api_nats.clone());
    let deps = skynet_api::Deps {
        nats: api_nats,
        store: skynet_bus::EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?,
        principals: std::sync::Arc::new(skynet_bus::principals::Principals::open(&js).await?),
        js,
        db: sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_secs(1))
            .connect_lazy(&proxied)?,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}/v1/jobs", listener.local_addr()?);
    let app = skynet_api::router(skynet_api::Config::default(), deps);
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    let http = reqwest::Client::new();
    let status = || async {
        let r = http.get(&api).bearer_auth(skynet_system_tests::token("alice")).send().await;
        r.map(|r| r.status().as_u16()).unwrap_or(0)
    };
    let before = sys.submit("pg-1", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    eventually(WAIT, "the first job projected", || async {
        let s: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(before)
            .fetch_optional(&direct)
            .await
            .ok()?;
        (s.as_deref() == Some("succeeded")).then_some(())
    })
    .await?;
    assert_eq!(status().await, 200);

    proxy.cut();
    eventually(WAIT, "the API to answer 503", || async { (status().await == 503).then_some(()) }).await?;
    // NATS carries on: a job runs to its end while the read models cannot.
    let during = sys.submit("pg-2", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    sys.wait_for(during, "skynet.job.succeeded.v1").await?;
    proxy.restore();

    eventually(std::time::Duration::from_secs(60), "the API to answer 200 again", || async {
        (status().await == 200).then_some(())
    })
    .await?;
    eventually(std::time::Duration::from_secs(60), "the read models to catch up", || async {
        let s: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(during)
            .fetch_optional(&direct)
            .await
            .ok()?;
        (s.as_deref() == Some("succeeded")).then_some(())
    })
    .await?;
    sys.shutdown().await
}
