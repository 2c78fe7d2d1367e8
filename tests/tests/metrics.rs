//! `/metrics` after a few jobs: the counters and histograms a person running a
//! job system expects, with the right counts (its own test binary: the
//! exporter is the process's global recorder).

use std::time::Duration;

use serde_json::json;
use skynet_system_tests::{System, token};
use skynet_testkit::eventually;

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name && labels.iter().all(|want| rest.contains(want))
        })
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_jobs_stages_steps_consumers_and_executors() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let config = skynet_api::Config { metrics: skynet_cli::metrics::render(), ..Default::default() };
    let base = sys.api(config).await?;
    let http = reqwest::Client::new();
    let scrape = || async {
        let r = http.get(format!("{base}/metrics")).bearer_auth(token("alice")).send().await.ok()?;
        r.status().is_success().then_some(())?;
        r.text().await.ok()
    };
    // No token: refused like any read.
    assert_eq!(http.get(format!("{base}/metrics")).send().await?.status(), 401);
    // The sentinel is watching once its gauges are in.
    eventually(Duration::from_secs(30), "the sentinel's gauges", || async {
        let text = scrape().await?;
        (sample(&text, "skynet_executors_up", &[])? >= 1.0).then_some(())
    })
    .await?;

    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(sys.submit(&format!("m-{i}"), json!({"intent": "list files", "working_dir": sys.project()})).await?);
    }
    let nonsense = sys.submit("m-x", json!({"intent": "bake a cake", "working_dir": sys.project()})).await?;
    for job in &jobs {
        sys.wait_for(*job, "skynet.job.succeeded.v1").await?;
    }
    sys.wait_for(nonsense, "skynet.job.planning_failed.v1").await?;
    // No tracing layer in this process: every event still carries its job's
    // trace context, one trace per job, started at the intake.
    let events = sys.job_events(jobs[0]).await?;
    let traces: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["traceparent"].as_str()?.get(3..35)).collect();
    assert_eq!(traces.len(), 1, "{events:?}");
    assert!(events.iter().all(|e| e["traceparent"].is_string()), "{events:?}");

    let text = eventually(Duration::from_secs(30), "the counts", || async {
        let text = scrape().await?;
        let done = sample(&text, "skynet_jobs_finished_total", &["outcome=\"succeeded\""])? == 3.0
            && sample(&text, "skynet_jobs_finished_total", &["outcome=\"planning_failed\""])? == 1.0
            && sample(&text, "skynet_job_duration_seconds_count", &["outcome=\"succeeded\""])? == 3.0;
        done.then_some(text)
    })
    .await?;
    assert_eq!(sample(&text, "skynet_jobs_submitted_total", &[]), Some(4.0), "{text}");
    // Three jobs were planned, decided and started; each ran one step.
    for stage in ["requested_to_planned", "planned_to_decided", "approved_to_started"] {
        let label = format!("stage=\"{stage}\"");
        assert_eq!(sample(&text, "skynet_stage_duration_seconds_count", &[&label]), Some(3.0), "{stage}: {text}");
    }
    assert_eq!(sample(&text, "skynet_step_duration_seconds_count", &["outcome=\"succeeded\""]), Some(3.0), "{text}");
    assert!(
        sample(&text, "skynet_stage_duration_seconds_bucket", &["stage=\"requested_to_planned\"", "le=\"+Inf\""])
            == Some(3.0),
        "histograms with buckets: {text}"
    );
    // Every job passed the planner's consumer; none was dead-lettered.
    assert!(
        sample(&text, "skynet_consumer_messages_total", &["consumer=\"planner\"", "outcome=\"ack\""]) >= Some(4.0),
        "{text}"
    );
    assert_eq!(sample(&text, "skynet_consumer_messages_total", &["outcome=\"dead_letter\""]), None, "{text}");
    assert!(sample(&text, "skynet_executor_slots_free", &[]) >= Some(1.0), "{text}");
    assert_eq!(sample(&text, "skynet_dependency_up", &["dependency=\"postgres\""]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "skynet_alerts_firing", &["severity=\"critical\""]), Some(0.0), "{text}");
    sys.shutdown().await
}
