//! The LLM planner inside the running system, against a real HTTP server that
//! speaks chat completions: good plans are used; garbage falls back to the rules
//! with the reason recorded in the `planned` event.

use axum::Json;
use axum::routing::post;
use serde_json::json;
use skynet_system_tests::System;
use skynet_testkit::{NatsServer, TestDb};

async fn fake_llm(content: &'static str) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

async fn system_with_llm(url: String) -> anyhow::Result<System> {
    System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.planner = skynet_cli::settings::PlannerArg::Llm;
        s.llm_base_url = url;
        s.llm_model = "fake".into();
    })
    .await
}

#[tokio::test]
async fn llm_garbage_falls_back_to_the_rules_with_the_reason_in_the_event() -> anyhow::Result<()> {
    let sys = system_with_llm(fake_llm("Sorry, I only speak prose.").await?).await?;
    let job = sys.submit("llm-garbage", json!({"intent": "check git status", "working_dir": sys.project()})).await?;
    let planned = sys.wait_for(job, "skynet.job.planned.v1").await?;
    assert_eq!(planned["data"]["planner"], "rules");
    let reason = planned["data"]["fallback_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("llm:fake failed") && reason.contains("no JSON plan"), "{reason}");
    assert_eq!(planned["data"]["plan"]["steps"][0]["action"], "git_status");
    sys.wait_for(job, "skynet.job.dispatched.v1").await?;
    sys.shutdown().await
}

#[tokio::test]
async fn a_good_llm_plan_is_used_and_a_step_without_action_fails_dispatch_by_name() -> anyhow::Result<()> {
    // §18.10 adapted: the model proposes a step nothing maps to. Policy treats it as
    // ADMIN; once approved, the dispatcher refuses to guess and names the step.
    let plan = r#"{"summary":"odd","steps":[{"title":"Do something unusual","description":"Perform an uncommon workflow","risk":"READ_ONLY","estimated_minutes":2}]}"#;
    let sys = system_with_llm(fake_llm(plan).await?).await?;
    let job = sys.submit("llm-odd", json!({"intent": "be creative", "working_dir": sys.project()})).await?;
    let planned = sys.wait_for(job, "skynet.job.planned.v1").await?;
    assert_eq!(planned["data"]["planner"], "llm:fake");
    let decided = sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    assert_eq!(decided["data"]["risk"], "ADMIN");
    let r = sys
        .request(
            "skynet.cmd.job.approve",
            json!({"job_id": job, "token": "token-bob", "confirmation": format!("execute {}", &job.to_string()[..8])}),
        )
        .await?;
    assert_eq!(r["accepted"], true, "{r}");
    let failed = sys.wait_for(job, "skynet.job.failed.v1").await?;
    assert_eq!(failed["data"]["stage"], "dispatch");
    let reason = failed["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("\"Do something unusual\"") && reason.contains("maps to no action"), "{reason}");
    sys.shutdown().await
}

#[tokio::test]
async fn the_llm_is_told_of_past_runs_and_the_planned_event_names_them() -> anyhow::Result<()> {
    // A model that records every prompt it is sent and always plans a disk check.
    let prompts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = prompts.clone();
    let plan = r#"{"summary":"disk","steps":[{"title":"Check disk space","description":"df","action":"check_disk_space","risk":"READ_ONLY","estimated_minutes":1}]}"#;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<serde_json::Value>| {
            let seen = seen.clone();
            async move {
                if let Ok(mut s) = seen.lock() {
                    s.push(body["messages"][0]["content"].as_str().unwrap_or_default().to_owned());
                }
                Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": plan}}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sys = system_with_llm(url).await?;
    let first = sys.submit("disk-1", json!({"intent": "check the disk space", "working_dir": sys.project()})).await?;
    sys.wait_for(first, "skynet.job.succeeded.v1").await?;
    // Once memory has learned the first run, the second plan is told of it.
    let db = sys.db.pool().await?;
    skynet_testkit::eventually(skynet_system_tests::WAIT, "the first run remembered", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_records WHERE kind = 'task_execution'")
            .fetch_one(&db)
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await?;
    let second = sys.submit("disk-2", json!({"intent": "check the disk space", "working_dir": sys.project()})).await?;
    let planned = sys.wait_for(second, "skynet.job.planned.v1").await?;
    let used = planned["data"]["memories"].as_array().cloned().unwrap_or_default();
    assert!(used.iter().any(|m| m["id"] == first.to_string().as_str() && m["kind"] == "task_execution"), "{planned}");
    let last = prompts.lock().map(|p| p.last().cloned().unwrap_or_default()).unwrap_or_default();
    assert!(last.contains("Relevant past jobs") && last.contains("[SUCCESS] check the disk space"), "{last}");
    sys.shutdown().await
}
