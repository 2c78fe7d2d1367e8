//! The mock provider: its determinism, and an executor's heartbeat listing.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use skynet_contract::executor::Health;
use skynet_executor::ProvidersConfig;
use skynet_executor::providers::mock::Mock;

#[tokio::test]
async fn mock_jobs_take_their_latency_and_fail_deterministically() -> anyhow::Result<()> {
    let env = env().await?;
    let stop = start_executor(
        &env,
        "x-mock",
        ProvidersConfig { mock: Some(Mock { latency_ms: 50, failure_rate: 0.5 }), ..ProvidersConfig::default() },
    )
    .await?;
    let mut outcomes = Vec::new();
    for i in 0..8 {
        let job =
            scheduled(&env, &format!("mock-{i}"), vec![step("git_status", json!({}))], "/tmp", "mock", vec![]).await?;
        outcomes.push((job, wait_end(&env, job).await?));
    }
    let failed = outcomes.iter().filter(|(_, t)| t.ends_with("failed.v1")).count();
    assert!(failed > 0 && failed < 8, "about half fail: {failed}");
    for (job, end) in &outcomes {
        let ok =
            wait_for(&env, *job, if end.ends_with("succeeded.v1") { "step_succeeded" } else { "step_failed" }).await?;
        assert!(ok["duration_ms"].as_u64().unwrap_or(0) >= 50, "{ok}");
    }
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn an_executor_is_listed_with_providers_capacity_and_load_and_goes_offline_when_stopped() -> anyhow::Result<()> {
    use futures::StreamExt;
    let env = env().await?;
    let kv = env.js.get_key_value("SKYNET_EXECUTORS").await?;
    let stop =
        start_executor(&env, "x-listed", ProvidersConfig { mock: Some(Mock::default()), ..ProvidersConfig::default() })
            .await?;
    let status = skynet_testkit::eventually(Duration::from_secs(10), "the heartbeat", || async {
        let v = kv.get("x-listed").await.ok()??;
        serde_json::from_slice::<skynet_contract::executor::ExecutorStatus>(&v).ok()
    })
    .await?;
    assert_eq!(status.capacity, 4);
    assert_eq!(status.running, 0);
    assert_eq!(status.providers["mock"].health, Health::Healthy);
    assert_eq!(status.providers["mock"].capabilities, ["*"]);
    stop.cancel();
    skynet_testkit::eventually(Duration::from_secs(10), "the executor to go offline", || async {
        let keys: Vec<String> = kv.keys().await.ok()?.filter_map(|k| async move { k.ok() }).collect().await;
        (!keys.contains(&"x-listed".to_owned())).then_some(())
    })
    .await?;
    Ok(())
}
