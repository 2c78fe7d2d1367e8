//! Whole jobs, end to end: submitted over NATS, planned, approved, dispatched,
//! scheduled, run by an executor, finished — the predecessor's scenarios 6 and
//! 13 adapted, on the mock and local providers.

use serde_json::json;
use skynet_system_tests::System;
use skynet_testkit::{NatsServer, TestDb};

async fn with_providers(providers: &[&str]) -> anyhow::Result<System> {
    let providers: Vec<String> = providers.iter().map(|p| (*p).to_owned()).collect();
    System::start_with(NatsServer::start()?, TestDb::create().await?, move |s| {
        s.executor.providers = providers;
        s.executor.mock_latency_ms = 10;
    })
    .await
}

#[tokio::test]
async fn a_multi_step_read_only_job_runs_to_success_in_order() -> anyhow::Result<()> {
    // §18.6/§18.13: git_status then run_tests, each recorded, in order.
    let sys = with_providers(&["mock"]).await?;
    let job =
        sys.submit("e2e-1", json!({"intent": "check git status and run the tests", "working_dir": "/tmp"})).await?;
    let done = sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    assert_eq!(done["data"]["provider"], "mock");
    let types = sys.types(job).await?;
    let steps: Vec<_> = types.iter().filter(|t| t.starts_with("skynet.job.step_")).map(String::as_str).collect();
    assert_eq!(
        steps,
        [
            "skynet.job.step_started.v1",
            "skynet.job.step_output.v1",
            "skynet.job.step_succeeded.v1",
            "skynet.job.step_started.v1",
            "skynet.job.step_output.v1",
            "skynet.job.step_succeeded.v1"
        ]
    );
    let scheduled = sys.wait_for(job, "skynet.job.scheduled.v1").await?;
    assert_eq!(scheduled["data"]["provider"], "mock");
    assert!(scheduled["data"]["scores"][0]["total"].as_f64().unwrap_or_default() > 0.5, "{scheduled}");
    sys.shutdown().await
}

#[tokio::test]
async fn a_local_job_lists_a_real_directory_and_stores_its_output() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("skynet-e2e").tempdir_in("/tmp")?;
    std::fs::write(dir.path().join("marker-file.txt"), "x")?;
    let sys = with_providers(&["local"]).await?;
    let job = sys.submit("e2e-2", json!({"intent": "list files", "working_dir": dir.path()})).await?;
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    let out = sys.wait_for(job, "skynet.job.step_output.v1").await?;
    assert!(out["data"]["chunk"].as_str().unwrap_or_default().contains("marker-file.txt"), "{out}");
    let ok = sys.wait_for(job, "skynet.job.step_succeeded.v1").await?;
    let key = format!("{}/stdout", ok["data"]["output_ref"].as_str().unwrap_or_default());
    let store = sys.js.get_object_store("SKYNET_OUTPUT").await?;
    let mut obj = store.get(key.as_str()).await?;
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut obj, &mut text).await?;
    assert!(text.contains("marker-file.txt"), "{text}");
    sys.shutdown().await
}
