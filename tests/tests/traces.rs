//! One job, one trace: a submission carrying a W3C `traceparent` yields spans
//! of every service that handled the job, all in the submitter's trace,
//! exported over OTLP/HTTP to a real receiver started here; and every event of
//! the job carries the trace context (its CloudEvents extension). Its own test
//! binary: the exporter belongs to the process's global subscriber.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use skynet_system_tests::{INTAKE, SOURCE, System, job_id, task, token};
use skynet_testkit::eventually;

/// Spans received: (trace id, name, attribute `service`).
type Spans = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

async fn collector() -> anyhow::Result<(String, Spans)> {
    let spans: Spans = Arc::default();
    let state = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let spans = state.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let mut got = spans.lock().unwrap_or_else(|e| e.into_inner());
                for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for s in ss["spans"].as_array().into_iter().flatten() {
                            let service =
                                s["attributes"].as_array().into_iter().flatten().find(|a| a["key"] == "service");
                            got.push((
                                s["traceId"].as_str().unwrap_or_default().to_lowercase(),
                                s["name"].as_str().unwrap_or_default().to_owned(),
                                service.and_then(|a| a["value"]["stringValue"].as_str()).map(str::to_owned),
                            ));
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, spans))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_is_one_trace_whose_spans_name_each_service() -> anyhow::Result<()> {
    let (endpoint, spans) = collector().await?;
    let _telemetry = skynet_cli::telemetry::init("warn", Some(&endpoint))?;
    let sys = System::start().await?;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {}", token("alice")).as_str());
    headers.insert("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01").as_str());
    let data = json!({"intent": "list files", "working_dir": sys.project()});
    sys.client.publish_with_headers(INTAKE, headers, task("traced-1", data).into()).await?;
    sys.client.flush().await?;
    let job = job_id(SOURCE, "traced-1");
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;

    // Every event of the job carries the submitter's trace.
    for e in sys.job_events(job).await? {
        let tp = e["traceparent"].as_str().unwrap_or_default();
        assert!(tp.starts_with(&format!("00-{TRACE}-")), "{} carries {tp:?}", e["type"]);
    }
    // The spans of every service that handled it, in that one trace.
    let expected: BTreeSet<&str> = ["intake", "planner", "policy", "dispatcher", "scheduler", "executor"].into();
    let seen = eventually(Duration::from_secs(30), "every service's span exported", || async {
        let got = spans.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let services: BTreeSet<String> =
            got.iter().filter(|(t, _, _)| t == TRACE).filter_map(|(_, _, s)| s.clone()).collect();
        // The handlers' own spans are exported with the batch they ended in,
        // which may come after their children's: waited for too.
        let names: BTreeSet<&str> = got.iter().filter(|(t, _, _)| t == TRACE).map(|(_, n, _)| n.as_str()).collect();
        let named = names.contains("planner requested") && names.contains("executor scheduled");
        (expected.iter().all(|s| services.contains(*s)) && named).then_some(())
    })
    .await;
    if let Err(e) = seen {
        let got = spans.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let names: BTreeSet<&str> = got.iter().filter(|(t, _, _)| t == TRACE).map(|(_, n, _)| n.as_str()).collect();
        anyhow::bail!("{e}: spans of the trace: {names:?}");
    }

    // A job a person approves: the approval (a command, outside any traced
    // handling) continues the job's trace, and so does everything after it.
    const TRACE2: &str = "5bf92f3577b34da6a3ce929d0e0e4737";
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {}", token("alice")).as_str());
    headers.insert("traceparent", format!("00-{TRACE2}-00f067aa0ba902b8-01").as_str());
    let data = json!({"intent": "zip the project", "working_dir": sys.project()});
    sys.client.publish_with_headers(INTAKE, headers, task("traced-2", data).into()).await?;
    sys.client.flush().await?;
    let zip = job_id(SOURCE, "traced-2");
    sys.wait_for(zip, "skynet.job.policy_decided.v1").await?;
    let approved = sys.request("skynet.cmd.job.approve", json!({"job_id": zip, "token": token("bob")})).await?;
    assert_eq!(approved["accepted"], true, "{approved}");
    sys.wait_for(zip, "skynet.job.succeeded.v1").await?;
    for e in sys.job_events(zip).await? {
        let tp = e["traceparent"].as_str().unwrap_or_default();
        assert!(tp.starts_with(&format!("00-{TRACE2}-")), "{} carries {tp:?}", e["type"]);
    }
    eventually(Duration::from_secs(30), "the spans after the approval in the job's trace", || async {
        let got = spans.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let services: BTreeSet<String> =
            got.iter().filter(|(t, _, _)| t == TRACE2).filter_map(|(_, _, s)| s.clone()).collect();
        ["dispatcher", "scheduler", "executor"].iter().all(|s| services.contains(*s)).then_some(())
    })
    .await?;
    sys.shutdown().await
}
