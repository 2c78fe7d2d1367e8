//! Memory through the whole system: jobs that fail teach a failure pattern,
//! the next plan for that work carries the warning (and an unrelated one does
//! not), people add and search records by command, and the tables rebuilt
//! from the log are the same.

use serde_json::json;
use skynet_system_tests::{System, WAIT, token};
use skynet_testkit::{NatsServer, TestDb};

#[tokio::test]
async fn three_failed_test_runs_warn_the_next_plan_and_the_tables_rebuild_the_same() -> anyhow::Result<()> {
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    let project = std::path::PathBuf::from(sys.project());
    std::fs::write(project.join("Makefile"), "test:\n\t@echo 'assertion failed in test_login' >&2; exit 1\n")?;
    let dir = sys.project();
    for i in 0..3 {
        let job = sys.submit(&format!("fail-{i}"), json!({"intent": "run the tests", "working_dir": dir})).await?;
        sys.wait_for(job, "skynet.job.failed.v1").await?;
    }
    // The memory service has counted the three (the same failure, one pattern).
    let db = sys.db.pool().await?;
    let (pattern, count) = skynet_testkit::eventually(WAIT, "a failure pattern seen 3 times", || async {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT pattern_id, count(*) FROM memory_failures GROUP BY pattern_id HAVING count(*) >= 3")
                .fetch_optional(&db)
                .await
                .ok()?;
        row
    })
    .await?;
    assert_eq!(count, 3);
    let patterns: i64 =
        sqlx::query_scalar("SELECT count(*) FROM memory_records WHERE kind = 'failure_pattern'").fetch_one(&db).await?;
    assert_eq!(patterns, 1, "the same failure three times is one pattern");

    let job = sys.submit("again", json!({"intent": "run the tests", "working_dir": dir})).await?;
    let planned = sys.wait_for(job, "skynet.job.planned.v1").await?;
    let warnings = planned["data"]["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{planned}");
    let warning = warnings[0].as_str().unwrap_or_default();
    assert!(warning.starts_with("3 runs of `run_tests`"), "{warning}");
    assert!(warning.contains("assertion failed in test_login") && warning.contains(&pattern), "{warning}");
    let used = planned["data"]["memories"].as_array().cloned().unwrap_or_default();
    assert!(used.iter().any(|m| m["id"] == pattern.as_str() && m["kind"] == "failure_pattern"), "{planned}");
    // The rule planner plans from the words: it asks for no past runs, and lists none.
    assert!(used.iter().all(|m| m["kind"] == "failure_pattern"), "{planned}");
    // The plan itself is what the words say.
    assert_eq!(planned["data"]["plan"]["steps"][0]["action"], "run_tests");

    // An unrelated intent in the same directory gets no warning.
    let other = sys.submit("other", json!({"intent": "check git status", "working_dir": dir})).await?;
    let planned = sys.wait_for(other, "skynet.job.planned.v1").await?;
    assert!(planned["data"].get("warnings").is_none(), "{planned}");

    // People add a fact (an event first), then find it.
    let added = sys
        .request(
            "skynet.cmd.memory.add",
            json!({"token": token("bob"), "kind": "environment_fact", "text": "web1 restarts nginx nightly at 03:00"}),
        )
        .await?;
    assert_eq!(added["ok"], true, "{added}");
    let id = added["id"].as_str().unwrap_or_default().to_owned();
    let found = skynet_testkit::eventually(WAIT, "the fact found", || async {
        let r = sys
            .request(
                "skynet.memory.query",
                json!({"op": "search", "token": token("bob"), "text": "nginx restart on web1"}),
            )
            .await
            .ok()?;
        (r["hits"][0]["id"] == id.as_str()).then_some(r)
    })
    .await?;
    assert_eq!(found["hits"][0]["kind"], "environment_fact");
    let refused = sys.request("skynet.memory.query", json!({"op": "stats", "token": "not-a-token"})).await?;
    assert_eq!((refused["ok"].as_bool(), refused["code"].as_str()), (Some(false), Some("unauthorized")));
    let learned = sys
        .request("skynet.cmd.memory.add", json!({"token": token("bob"), "kind": "failure_pattern", "text": "x"}))
        .await?;
    assert_eq!(learned["code"], "bad_request", "failure patterns come from the log: {learned}");

    // Dropping the tables and rebuilding from the log gives the same records.
    let snapshot = |db: sqlx::PgPool| async move {
        sqlx::query_as::<_, (String, String, String, serde_json::Value)>(
            "SELECT id, kind, text, content FROM memory_records ORDER BY id",
        )
        .fetch_all(&db)
        .await
    };
    skynet_testkit::eventually(WAIT, "every finished job remembered", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_records WHERE kind = 'task_execution'")
            .fetch_one(&db)
            .await
            .ok()?;
        (n == 5).then_some(())
    })
    .await?;
    let before = snapshot(db.clone()).await?;
    let nats = sys.nats.connect_as("memory").await?;
    let js = async_nats::jetstream::new(nats.clone());
    let principals = std::sync::Arc::new(skynet_bus::principals::Principals::open(&js).await?);
    let store = skynet_bus::EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?;
    let deps = skynet_memory::Deps::new(js, nats, store, db.clone(), principals);
    sqlx::query("DROP TABLE memory_records, memory_failures, memory_strategy_runs, memory_applied")
        .execute(&db)
        .await?;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE description = 'memory'").execute(&db).await?;
    let applied = skynet_memory::rebuild(&deps).await?;
    assert!(applied >= 6, "{applied} events replayed");
    assert_eq!(snapshot(db.clone()).await?, before);
    sys.shutdown().await
}

#[tokio::test]
async fn the_api_adds_searches_counts_and_forgets_as_the_calling_principal() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let url = sys.api(skynet_api::Config::default()).await?;
    let http = reqwest::Client::new();
    let bob = token("bob");
    let added = http
        .post(format!("{url}/v1/memory"))
        .bearer_auth(&bob)
        .json(&json!({"kind": "user_preference", "text": "bob wants test output in full"}))
        .send()
        .await?;
    assert_eq!(added.status(), 201);
    let id = added.json::<serde_json::Value>().await?["id"].as_str().unwrap_or_default().to_owned();
    let found = skynet_testkit::eventually(WAIT, "the preference found", || async {
        let r = http
            .get(format!("{url}/v1/memory/search?q=full%20test%20output&type=user_preference"))
            .bearer_auth(&bob)
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        (v["hits"][0]["id"] == id.as_str()).then_some(v)
    })
    .await?;
    assert_eq!(found["hits"][0]["content"]["recorded_by"], "bob", "recorded as the caller: {found}");
    let bad = http.get(format!("{url}/v1/memory/search?q=x&type=gossip")).bearer_auth(&bob).send().await?;
    assert_eq!(bad.status(), 422);
    let missing = http.delete(format!("{url}/v1/memory/mem-nope")).bearer_auth(&bob).send().await?;
    assert_eq!(missing.status(), 404);
    let gone = http.delete(format!("{url}/v1/memory/{id}")).bearer_auth(&bob).send().await?;
    assert_eq!(gone.status(), 200);
    skynet_testkit::eventually(WAIT, "the preference forgotten", || async {
        let r = http.get(format!("{url}/v1/memory/stats")).bearer_auth(&bob).send().await.ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        (v["counts"]["user_preference"] == 0).then_some(())
    })
    .await?;
    // The forgetting is in the log, with who did it.
    let forgotten = sys.read_all("SKYNET_EVENTS", &format!("skynet.memory.{id}.forgotten")).await?;
    let event: serde_json::Value = serde_json::from_slice(&forgotten[0].2)?;
    assert_eq!(event["data"]["forgotten_by"], "bob");
    sys.shutdown().await
}
