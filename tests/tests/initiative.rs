//! The initiative in the running system: on an idle system it submits a
//! maintenance task through the front door, which is planned, auto-approved
//! as READ_ONLY and succeeds; a strategy configured to propose a WRITE step is
//! denied by policy — not queued for a person — and nothing of it runs.

use serde_json::Value;
use skynet_system_tests::{System, WAIT};
use skynet_testkit::{NatsServer, TestDb, eventually};

/// A system with the initiative enabled: maintenance only, due at once,
/// evaluated every second, proposing `steps` (TOML) in `dir`.
async fn system(config: &tempfile::TempDir, dir: &str, steps: &str) -> anyhow::Result<System> {
    let file = config.path().join("initiative.toml");
    let off = r#"enabled = false
intent = "off"
steps = [{ action = "check_memory", title = "Check memory" }]"#;
    let text = format!(
        r#"interval_secs = 1
[limits]
per_hour = 5
per_day = 20
concurrent = 2
[maintenance]
enabled = true
min_idle_secs = 0
interval_hours = 24
working_dir = {dir:?}
intent = "System maintenance, read-only"
steps = [{steps}]
[recovery]
max_active_jobs = 2
min_error_age_secs = 60
max_errors = 3
{off}
[optimization]
min_idle_secs = 300
interval_hours = 48
baseline_opportunity = true
{off}
"#
    );
    std::fs::write(&file, text)?;
    System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.initiative.enabled = true;
        s.initiative.file = Some(file);
        s.executor.providers = vec!["local".into()];
    })
    .await
}

/// The first decision the initiative recorded, and its job.
async fn first_decision(sys: &System) -> anyhow::Result<(Value, uuid::Uuid)> {
    let decision = eventually(WAIT, "an initiative decision", || async {
        let stored = sys.read_all("SKYNET_EVENTS", skynet_contract::initiative::LEDGER).await.ok()?;
        stored.into_iter().find_map(|(_, _, p)| serde_json::from_slice::<Value>(&p).ok())
    })
    .await?;
    let job = decision["data"]["job_id"].as_str().and_then(|j| j.parse().ok());
    Ok((decision.clone(), job.ok_or_else(|| anyhow::anyhow!("no job in {decision}"))?))
}

#[tokio::test]
async fn an_idle_system_runs_a_read_only_maintenance_task_of_its_own() -> anyhow::Result<()> {
    let project = tempfile::tempdir()?;
    let config = tempfile::tempdir()?;
    let dir = project.path().display().to_string();
    std::fs::create_dir(project.path().join("docs"))?;
    std::fs::write(project.path().join("docs/README.md"), "a project")?;
    // A relative directory is the job's (not the services' working directory).
    let steps = r#"{ action = "check_disk_space", title = "Check disk space" }, { action = "list_directory", title = "List", params = { directory = "docs" } }"#;
    let sys = system(&config, &dir, steps).await?;
    let (decision, job) = first_decision(&sys).await?;
    assert_eq!(decision["source"], "skynet/initiative");
    assert_eq!(
        (decision["data"]["strategy"].as_str(), decision["data"]["outcome"].as_str()),
        (Some("maintenance"), Some("submitted"))
    );

    let requested = sys.wait_for(job, "skynet.job.requested.v1").await?;
    assert_eq!(requested["data"]["request_source"], "skynet/initiative");
    assert_eq!(requested["data"]["request_id"], decision["id"], "the decision is the submission");
    assert_eq!(requested["data"]["constraints"]["initiative"]["strategy"], "maintenance");
    let decided = sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    assert_eq!(
        (decided["data"]["risk"].as_str(), decided["data"]["auto_approved"].as_bool()),
        (Some("READ_ONLY"), Some(true))
    );
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    let listed = sys.step_stdout(job, 1).await?;
    assert!(listed.contains("README.md"), "the project's docs listed: {listed}");

    // Due again only in 24 h: one decision, one job, however many evaluations ran.
    let decisions = sys.read_all("SKYNET_EVENTS", skynet_contract::initiative::LEDGER).await?;
    assert_eq!(decisions.len(), 1);
    // The decision is in the audit, like every event of the log.
    let pool = sys.db.pool().await?;
    eventually(WAIT, "the decision in the audit", || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE type = 'skynet.initiative.decided.v1'")
                .fetch_one(&pool)
                .await
                .ok()?;
        (n == 1).then_some(())
    })
    .await?;
    sys.shutdown().await
}

#[tokio::test]
async fn a_strategy_proposing_a_write_is_denied_by_policy_and_nothing_runs() -> anyhow::Result<()> {
    let project = tempfile::tempdir()?;
    let config = tempfile::tempdir()?;
    let dir = project.path().display().to_string();
    let steps = r#"{ action = "check_memory", title = "Check memory" }, { action = "create_directory", title = "Make a directory", params = { directory = "made-by-initiative" } }"#;
    let sys = system(&config, &dir, steps).await?;
    let (_, job) = first_decision(&sys).await?;
    let decided = sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    assert_eq!(decided["data"]["allowed"], false, "{decided}");
    assert_eq!(decided["data"]["requires_approval"], false, "denied, not queued for a person: {decided}");
    let reasons = decided["data"]["reasons"].to_string();
    assert!(reasons.contains("initiative"), "{reasons}");
    let pool = sys.db.pool().await?;
    eventually(WAIT, "the job denied in the read model", || async {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1").bind(job).fetch_optional(&pool).await.ok()?;
        (status.as_deref() == Some("denied")).then_some(())
    })
    .await?;
    let types = sys.types(job).await?;
    assert!(!types.iter().any(|t| t.contains("dispatched") || t.contains("step_started")), "{types:?}");
    assert!(!project.path().join("made-by-initiative").exists(), "the write ran");

    // The kill switch over HTTP: an approver pauses (recorded under their
    // name), anyone with read sees it, nobody without a token flips it.
    let url = sys.api(skynet_api::Config::default()).await?;
    let http = reqwest::Client::new();
    let anonymous = http.post(format!("{url}/v1/initiative/pause")).send().await?;
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    let paused = http
        .post(format!("{url}/v1/initiative/pause"))
        .bearer_auth(skynet_system_tests::token("alice"))
        .json(&serde_json::json!({"reason": "release freeze"}))
        .send()
        .await?;
    assert_eq!(paused.status(), reqwest::StatusCode::OK, "{:?}", paused.text().await);
    let status: Value = http
        .get(format!("{url}/v1/initiative"))
        .bearer_auth(skynet_system_tests::token("bob"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (&status["paused"], &status["switched"][1]["by"]),
        (&Value::Bool(true), &Value::from("alice")),
        "{status}"
    );
    sys.shutdown().await
}
