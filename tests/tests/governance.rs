//! Governance walked around the way an attacker would, without touching NATS
//! permissions: a free command smuggled into an auto-approved action through
//! every surface that carries a plan, and paths that lead out of the sandbox
//! (`..`, symbolic links, a link swapped in after the policy decided, SKYNET's
//! own data). Each is refused, and the marker or secret it aimed at is untouched.

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};
use skynet_system_tests::{INTAKE, System, WAIT, job_id, task};
use skynet_testkit::{NatsServer, TestDb};

/// A `run_tests` step whose "command" would create `marker`.
fn smuggled_step(marker: &std::path::Path) -> Value {
    json!({"title": "Run the tests", "description": "", "action": "run_tests", "risk": "READ_ONLY",
           "estimated_minutes": 1, "params": {"command": ["sh", "-c", format!("touch {}", marker.display())]}})
}

fn marker() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("skynet-marker-{}", uuid::Uuid::new_v4().simple()))
}

async fn local_system() -> anyhow::Result<System> {
    System::start_with(NatsServer::start()?, TestDb::create().await?, |s| s.executor.providers = vec!["local".into()])
        .await
}

#[tokio::test]
async fn a_command_in_a_supplied_plan_is_refused_over_nats_and_http() -> anyhow::Result<()> {
    let sys = local_system().await?;
    // Plain NATS submission with a `plan`.
    let m1 = marker();
    let plan = json!({"summary": "tests", "steps": [smuggled_step(&m1)]});
    let body = task("smuggle-1", json!({"intent": "run the tests", "working_dir": sys.project(), "plan": plan}));
    sys.client.publish(INTAKE, body.into()).await?;
    let job = job_id(skynet_system_tests::SOURCE, "smuggle-1");
    let failed = sys.wait_for(job, "skynet.job.planning_failed.v1").await?;
    let reason = failed["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("step 0") && reason.contains("no parameter \"command\""), "{reason}");

    // `POST /v1/execute`, the predecessor's direct-execution endpoint.
    let m2 = marker();
    let url = sys.api(skynet_api::Config::default()).await?;
    let spec = json!({"working_dir": sys.project(), "steps": [{"action": "run_tests",
        "params": {"command": format!("touch {}", m2.display())}}]});
    let r: Value = reqwest::Client::new()
        .post(format!("{url}/v1/execute"))
        .bearer_auth(skynet_system_tests::token("alice"))
        .json(&json!({"execution_spec": spec, "timeout": 20}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(r["status"], "planning_failed", "{r}");

    // Both refusals are final (terminal events), so nothing can run later.
    assert!(!m1.exists() && !m2.exists(), "a smuggled command ran");
    sys.shutdown().await
}

#[tokio::test]
async fn a_command_in_an_llm_plan_is_refused_and_the_rules_plan_instead() -> anyhow::Result<()> {
    let m = marker();
    let content = json!({"summary": "tests", "steps": [smuggled_step(&m)]}).to_string();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let content = content.clone();
            async move { Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let llm = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.planner = skynet_cli::settings::PlannerArg::Llm;
        s.llm_base_url = llm;
        s.llm_model = "hostile".into();
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    let job = sys.submit("llm-smuggle", json!({"intent": "run the tests", "working_dir": sys.project()})).await?;
    let planned = sys.wait_for(job, "skynet.job.planned.v1").await?;
    assert_eq!(planned["data"]["planner"], "rules", "the model's plan was refused");
    let reason = planned["data"]["fallback_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no parameter \"command\""), "{reason}");
    // The rules' plan runs the project's own test command instead.
    let done = sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    assert_eq!(done["source"], "skynet/executor");
    let dispatched = sys.wait_for(job, "skynet.job.dispatched.v1").await?;
    assert_eq!(dispatched["data"]["spec"]["steps"][0]["params"]["project_command"], json!(["make", "test"]));
    assert!(!m.exists(), "the model's command ran");
    sys.shutdown().await
}

/// Why the job was refused (the policy's denial or the dispatcher's failure),
/// and every event's text.
async fn refusal(sys: &System, job: uuid::Uuid) -> anyhow::Result<(String, String)> {
    let reason = skynet_testkit::eventually(WAIT, &format!("job {job} refused"), || async {
        let events = sys.job_events(job).await.ok()?;
        events.iter().find_map(|e| match e["type"].as_str()? {
            "skynet.job.failed.v1" => Some(e["data"]["reason"].to_string()),
            "skynet.job.policy_decided.v1" if e["data"]["allowed"] == false => Some(e["data"]["reasons"].to_string()),
            _ => None,
        })
    })
    .await?;
    Ok((reason, serde_json::to_string(&sys.job_events(job).await?)?))
}

#[tokio::test]
async fn paths_out_of_the_sandbox_and_skynets_own_data_are_refused() -> anyhow::Result<()> {
    // SKYNET's data directory (credentials, API token) sits inside an allowed
    // root (/tmp) here, as `.data` inside `.` does for `./dev up`.
    let data = tempfile::tempdir()?;
    std::fs::write(data.path().join("api-token"), "SECRET-TOKEN")?;
    let outside = tempfile::tempdir_in("/var/tmp")?;
    std::fs::write(outside.path().join("secret"), "SECRET-OUTSIDE")?;
    let data_dir = data.path().to_owned();
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
        s.data_dir = data_dir;
    })
    .await?;
    let project = std::path::PathBuf::from(sys.project());
    std::os::unix::fs::symlink(outside.path().join("secret"), project.join("link"))?;
    std::os::unix::fs::symlink(outside.path(), project.join("linkdir"))?;
    let data_name = data.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = data.path().parent().map(|p| p.display().to_string()).unwrap_or_default();
    let cases = [
        ("read the file ../../var/tmp/x", sys.project(), "outside"),
        ("read the file ./link", sys.project(), "symbolic link"),
        ("read the file linkdir/secret", sys.project(), "outside"),
        ("read the file /var/tmp/secret", sys.project(), "outside"),
        ("read the file api-token", data.path().display().to_string(), "denied"),
        (&*format!("read the file {data_name}/api-token"), parent, "denied"),
    ];
    for (i, (intent, dir, want)) in cases.iter().enumerate() {
        let job = sys.submit(&format!("path-{i}"), json!({"intent": intent, "working_dir": dir})).await?;
        let (reason, all) = refusal(&sys, job).await?;
        assert!(reason.contains(want), "{intent}: {reason}");
        assert!(!all.contains("SECRET"), "{intent} leaked: {all}");
    }
    sys.shutdown().await
}

#[tokio::test]
async fn a_file_swapped_for_a_link_after_the_policy_decided_is_not_read() -> anyhow::Result<()> {
    let outside = tempfile::tempdir_in("/var/tmp")?;
    std::fs::write(outside.path().join("secret"), "SECRET-SWAPPED")?;
    let sys = local_system().await?;
    let project = std::path::PathBuf::from(sys.project());
    std::fs::write(project.join("notes.txt"), "harmless")?;
    // Step 0 holds the job long enough to swap the file under step 1, with
    // room for a loaded machine between seeing it start and the swap.
    let plan = json!({"summary": "wait then read", "steps": [
        {"title": "wait", "description": "", "action": "execute_command", "risk": "ADMIN", "estimated_minutes": 1,
         "params": {"command": ["sleep", "6"]}},
        {"title": "read", "description": "", "action": "file_read", "risk": "READ_ONLY", "estimated_minutes": 1,
         "params": {"file": "notes.txt"}}]});
    let job = sys
        .submit("swap-1", json!({"intent": "wait then read notes", "working_dir": sys.project(), "plan": plan}))
        .await?;
    sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    let r = sys
        .request(
            "skynet.cmd.job.approve",
            json!({"job_id": job, "token": "token-bob", "confirmation": format!("execute {}", &job.to_string()[..8])}),
        )
        .await?;
    assert_eq!(r["accepted"], true, "{r}");
    let dispatched = sys.wait_for(job, "skynet.job.dispatched.v1").await?;
    let checked = dispatched["data"]["spec"]["steps"][1]["params"]["file"].as_str().unwrap_or_default().to_owned();
    assert!(checked.ends_with("/notes.txt"), "the dispatcher checked the canonical file: {checked}");
    sys.wait_for(job, "skynet.job.step_started.v1").await?;
    std::fs::remove_file(project.join("notes.txt"))?;
    std::os::unix::fs::symlink(outside.path().join("secret"), project.join("notes.txt"))?;

    let step = sys.wait_for(job, "skynet.job.step_failed.v1").await?;
    assert_eq!(step["data"]["step"], 1);
    let error = step["data"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("symbolic link"), "{error}");
    let all = serde_json::to_string(&sys.job_events(job).await?)?;
    assert!(!all.contains("SECRET"), "the swapped link was followed: {all}");
    sys.shutdown().await
}

#[tokio::test]
async fn one_principal_is_one_approver_however_it_is_named_and_never_for_its_own_job() -> anyhow::Result<()> {
    use skynet_contract::principal::PrincipalRole as R;
    // ADMIN jobs need two distinct approvers here.
    let rules = skynet_rules::policy::DEFAULT_RULES.replace("admin_approvers = 1", "admin_approvers = 2");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, rules)?;
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| s.policy_file = Some(path)).await?;
    // Dave holds three tokens, added as "dave", "Dave" and "dave " (one principal).
    for (spelling, token) in [("dave", "dave-1"), ("Dave", "dave-2"), ("dave ", "dave-3")] {
        let name = skynet_contract::principal::normalize_name(spelling).map_err(|e| anyhow::anyhow!(e))?;
        sys.principal(&name, token, &[R::Approve, R::Submit]).await?;
    }
    // Erin asks for an ADMIN job with her own token.
    sys.principal("erin", "erin-token", &[R::Approve, R::Submit]).await?;
    let job = sys
        .submit_as(
            "erin-token",
            "two-approvers",
            json!({"intent": "deploy to production", "working_dir": sys.project()}),
        )
        .await?;
    sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    let confirm = format!("execute {}", &job.to_string()[..8]);
    let approve = |token: &str| {
        sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": token, "confirmation": confirm}))
    };
    let own = approve("erin-token").await?;
    assert_eq!((own["accepted"].as_bool(), own["code"].as_str()), (Some(false), Some("forbidden")), "{own}");
    assert_eq!(approve("dave-1").await?["accepted"], true);
    for token in ["dave-2", "dave-3"] {
        let again = approve(token).await?;
        assert_eq!(again["accepted"], false, "dave counted twice: {again}");
    }
    let forged_body = sys
        .request("skynet.cmd.job.approve", json!({"job_id": job, "token": "no-such-token", "approver": "carol"}))
        .await?;
    assert_eq!(forged_body["code"], "bad_request", "a name in the body is not accepted at all: {forged_body}");
    // Still one approval of two: the job waits. A second principal completes it.
    assert_eq!(sys.approvers(job).await?, [json!("dave")]);
    assert_eq!(approve(&skynet_system_tests::token("bob")).await?["accepted"], true);
    let dispatched = sys.wait_for(job, "skynet.job.dispatched.v1").await?;
    assert_eq!(dispatched["data"]["spec"]["steps"][0]["action"], "docker_compose_up");
    assert_eq!(sys.approvers(job).await?, [json!("dave"), json!("bob")], "the principals of the tokens");
    sys.shutdown().await
}

#[tokio::test]
async fn a_job_nobody_authenticated_asked_for_is_approved_by_nobody() -> anyhow::Result<()> {
    let sys = System::start().await?;
    // No token: the requester is only a claim ("carol"), and it could be anyone —
    // the approver included. A WRITE job of it cannot be approved.
    let job = sys
        .submit_anonymous(
            "anon-1",
            json!({"intent": "build the project", "requested_by": "carol", "working_dir": sys.project()}),
        )
        .await?;
    let opened = sys.wait_for(job, "skynet.job.requested.v1").await?;
    assert_eq!(opened["data"]["requested_by"], "carol (unverified)");
    sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    let reply = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob"})).await?;
    assert_eq!((reply["accepted"].as_bool(), reply["code"].as_str()), (Some(false), Some("forbidden")), "{reply}");
    assert!(reply["message"].as_str().unwrap_or_default().contains("submit it with a token"), "{reply}");
    // Submitted with a token, the same request is approved by someone else.
    let signed = sys.submit("anon-2", json!({"intent": "build the project", "working_dir": sys.project()})).await?;
    sys.wait_for(signed, "skynet.job.policy_decided.v1").await?;
    let reply = sys.request("skynet.cmd.job.approve", json!({"job_id": signed, "token": "token-bob"})).await?;
    assert_eq!(reply["accepted"], true, "{reply}");
    sys.shutdown().await
}
