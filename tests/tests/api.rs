//! The HTTP API against the running system: every error status, the jobs
//! endpoints, live events, the predecessor's endpoints (§15, scenarios 22–26
//! adapted), and a restarted API seeing the same jobs.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use skynet_system_tests::System;
use skynet_testkit::{NatsServer, TestDb, eventually};

/// Alice's token: she submits, approves and reads (see the harness's people).
const TOKEN: &str = "token-alice";
/// Bob's: he approves what alice submits (nobody approves their own job).
const BOB: &str = "token-bob";

fn config() -> skynet_api::Config {
    // These tests poll as alice; only the 429 case is about the rate limit.
    skynet_api::Config { rate_per_minute: 1_000_000, ..skynet_api::Config::default() }
}

async fn mock_system() -> anyhow::Result<System> {
    System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["mock".into()];
        s.executor.mock_latency_ms = 5;
    })
    .await
}

struct Api {
    url: String,
    http: reqwest::Client,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        self.post_as(TOKEN, path, body).await
    }
    async fn post_as(&self, token: &str, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        let r = self.http.post(format!("{}{path}", self.url)).bearer_auth(token).json(&body).send().await?;
        Ok((r.status(), r.json().await.unwrap_or(Value::Null)))
    }
    async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        let r = self.http.get(format!("{}{path}", self.url)).bearer_auth(TOKEN).send().await?;
        Ok((r.status(), r.json().await.unwrap_or(Value::Null)))
    }
    async fn job_status(&self, job: &str) -> Option<String> {
        let (code, v) = self.get(&format!("/v1/jobs/{job}")).await.ok()?;
        (code == StatusCode::OK).then(|| v["job"]["status"].as_str().unwrap_or("").to_owned())
    }
    async fn wait_status(&self, job: &str, want: &str) -> anyhow::Result<()> {
        eventually(Duration::from_secs(20), &format!("job {job} {want}"), || async {
            (self.job_status(job).await.as_deref() == Some(want)).then_some(())
        })
        .await
    }
}

#[tokio::test]
async fn tasks_jobs_history_output_and_commands_over_http() -> anyhow::Result<()> {
    let sys = mock_system().await?;
    let api = Api { url: sys.api(config()).await?, http: reqwest::Client::new() };

    // Idempotent submission.
    let project = sys.project();
    let submit = |key: &'static str, intent: &'static str| {
        let (api, project) = (&api, &project);
        async move {
            let r = api
                .http
                .post(format!("{}/v1/tasks", api.url))
                .bearer_auth(TOKEN)
                .header("Idempotency-Key", key)
                .json(&json!({"intent": intent, "working_dir": project, "project": "web"}))
                .send()
                .await?;
            anyhow::Ok((r.status(), r.json::<Value>().await?))
        }
    };
    let (code, first) = submit("k-1", "check git status and run the tests").await?;
    assert_eq!(code, StatusCode::ACCEPTED, "{first}");
    let (_, again) = submit("k-1", "check git status and run the tests").await?;
    assert_eq!(first["job_id"], again["job_id"], "same Idempotency-Key, same job");
    let job = first["job_id"].as_str().unwrap_or_default().to_owned();
    api.wait_status(&job, "succeeded").await?;

    let (code, detail) = api.get(&format!("/v1/jobs/{job}")).await?;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(detail["job"]["requested_by"], "alice");
    assert_eq!(detail["job"]["provider"], "mock");
    assert_eq!(detail["steps"].as_array().map(Vec::len), Some(2));
    assert_eq!(detail["steps"][1]["action"], "run_tests");
    assert_eq!(detail["steps"][1]["status"], "succeeded");

    let (code, history) = api.get(&format!("/v1/jobs/{job}/events")).await?;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(history[0]["type"], "skynet.job.requested.v1");
    assert_eq!(
        history.as_array().and_then(|h| h.last()).map(|e| e["type"].clone()),
        Some(json!("skynet.job.succeeded.v1"))
    );

    let (code, out) = api.get(&format!("/v1/jobs/{job}/steps/1/output")).await?;
    assert_eq!(code, StatusCode::OK, "{out}");
    assert!(out["stdout"].as_str().unwrap_or("").contains("24 passed"), "{out}");
    let text = api
        .http
        .get(format!("{}/v1/jobs/{job}/steps/1/output?stream=stdout", api.url))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .text()
        .await?;
    assert!(text.contains("24 passed"));

    // A WRITE job waits; approve over HTTP; then approving again is 409.
    let (_, w) = submit("k-2", "build the project").await?;
    let wjob = w["job_id"].as_str().unwrap_or_default().to_owned();
    api.wait_status(&wjob, "awaiting_approval").await?;
    // Alice requested it: she may not approve it; bob may, and is recorded.
    let (code, own) = api.post(&format!("/v1/jobs/{wjob}/approve"), json!({})).await?;
    assert_eq!((code, own["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{own}");
    let (code, ok) = api.post_as(BOB, &format!("/v1/jobs/{wjob}/approve"), json!({})).await?;
    assert_eq!(code, StatusCode::OK, "{ok}");
    api.wait_status(&wjob, "succeeded").await?;
    let approved = sys.wait_for(uuid::Uuid::parse_str(&wjob)?, "skynet.job.approved.v1").await?;
    assert_eq!(approved["data"]["approver"], "bob", "the principal of the token, not a body field");
    let (code, problem) = api.post_as("token-carol", &format!("/v1/jobs/{wjob}/approve"), json!({})).await?;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(problem["code"], "conflict");
    let (code, _) = api.post(&format!("/v1/jobs/{wjob}/cancel"), json!({})).await?;
    assert_eq!(code, StatusCode::CONFLICT, "a finished job cannot be cancelled");

    // Filters and cursor pagination.
    for _ in 0..4 {
        api.post("/v1/tasks", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    }
    eventually(Duration::from_secs(20), "six jobs listed", || async {
        let (_, v) = api.get("/v1/jobs?limit=100").await.ok()?;
        (v["jobs"].as_array()?.len() >= 6).then_some(())
    })
    .await?;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?limit=2&cursor={c}"),
            None => "/v1/jobs?limit=2".into(),
        };
        let (code, page) = api.get(&path).await?;
        assert_eq!(code, StatusCode::OK, "{page}");
        seen.extend(page["jobs"].as_array().into_iter().flatten().map(|j| j["id"].as_str().unwrap_or("").to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (6, 6), "every job once across pages");
    let (_, alice) = api.get("/v1/jobs?requester=alice&project=web").await?;
    assert_eq!(alice["jobs"].as_array().map(Vec::len), Some(2), "the requester is the principal");
    let (_, none) = api.get("/v1/jobs?state=cancelled").await?;
    assert_eq!(none["jobs"], json!([]));

    // A restarted API (a new process over the same read models) sees the same
    // jobs — once they are over, so that nothing moves between the two reads.
    let before = eventually(Duration::from_secs(20), "every job over", || async {
        let (_, page) = api.get("/v1/jobs?limit=100").await.ok()?;
        let over = |j: &Value| matches!(j["status"].as_str(), Some("succeeded" | "failed" | "denied" | "cancelled"));
        page["jobs"].as_array()?.iter().all(over).then_some(page)
    })
    .await?;
    let again = Api { url: sys.api(config()).await?, http: reqwest::Client::new() };
    let (_, after) = again.get("/v1/jobs?limit=100").await?;
    assert_eq!(before, after);
    sys.shutdown().await
}

#[tokio::test]
async fn every_error_status_is_problem_json() -> anyhow::Result<()> {
    let sys = mock_system().await?;
    let mut cfg = config();
    cfg.body_limit = 4096;
    let url = sys.api(cfg).await?;
    let http = reqwest::Client::new();
    let problem = |r: reqwest::Response| async move {
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(ct, "application/problem+json", "{status}: {body}");
        assert_eq!(body["status"], status.as_u16());
        (status, body["code"].as_str().unwrap_or("").to_owned())
    };
    let post = |path: &str| http.post(format!("{url}{path}")).bearer_auth(TOKEN);
    let get = |path: &str| http.get(format!("{url}{path}")).bearer_auth(TOKEN);
    // 400 malformed JSON, 422 invalid fields, 413 too large, 401 no token, 404 unknown job.
    let cases = vec![
        (post("/v1/tasks").header("content-type", "application/json").body("{not json"), 400, "bad_request"),
        (post("/v1/tasks").json(&json!({"intent": 42})), 422, "invalid"),
        (post("/v1/tasks").json(&json!({"intent": "x", "bogus": true})), 422, "invalid"),
        (post("/v1/tasks").json(&json!({"intent": "   "})), 422, "invalid"),
        (post("/v1/tasks").json(&json!({"intent": "x".repeat(10_000)})), 413, "too_large"),
        (http.post(format!("{url}/v1/tasks")).json(&json!({"intent": "x"})), 401, "unauthorized"),
        (http.post(format!("{url}/v1/tasks")).bearer_auth("wrong").json(&json!({"intent": "x"})), 401, "unauthorized"),
        (get(&format!("/v1/jobs/{}", uuid::Uuid::new_v4())), 404, "not_found"),
        (get("/v1/jobs/not-a-uuid"), 404, "not_found"),
        (post(&format!("/v1/jobs/{}/approve", uuid::Uuid::new_v4())), 404, "not_found"),
        (get("/v1/jobs?limit=0"), 422, "invalid"),
        (get("/v1/nowhere"), 404, "not_found"),
        (http.get(format!("{url}/v1/jobs")), 401, "unauthorized"),
        (http.get(format!("{url}/v1/jobs")).bearer_auth("token-nobody"), 401, "unauthorized"),
    ];
    for (req, status, code) in cases {
        let r = req.send().await?;
        let (got, got_code) = problem(r).await;
        assert_eq!((got.as_u16(), got_code.as_str()), (status, code), "case {status} {code}");
    }
    // 409: approving a finished job.
    let job = sys.submit("err-409", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    let (got, code) = problem(post(&format!("/v1/jobs/{job}/approve")).send().await?).await;
    assert_eq!((got.as_u16(), code.as_str()), (409, "conflict"));
    // 422: ADMIN approval without the phrase.
    let admin = sys.submit("err-422", json!({"intent": "deploy", "working_dir": sys.project()})).await?;
    sys.wait_for(admin, "skynet.job.policy_decided.v1").await?;
    let by_bob = http.post(format!("{url}/v1/jobs/{admin}/approve")).bearer_auth(BOB);
    let (got, _) = problem(by_bob.send().await?).await;
    assert_eq!(got.as_u16(), 422);
    // ...and its requester may not approve it at all.
    let (got, code) = problem(post(&format!("/v1/jobs/{admin}/approve")).send().await?).await;
    assert_eq!((got.as_u16(), code.as_str()), (403, "forbidden"));

    // 429 per principal; before authentication per address, so a fresh random
    // token on every request is limited like no token at all.
    let mut cfg = config();
    cfg.rate_per_minute = 3;
    let limited = sys.api(cfg).await?;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(http.get(format!("{limited}/v1/jobs")).bearer_auth(TOKEN).send().await?.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    let r = http.get(format!("{limited}/v1/jobs")).bearer_auth(TOKEN).send().await?;
    assert!(r.headers().contains_key("retry-after"));
    let mut random = Vec::new();
    for _ in 0..5 {
        let t = uuid::Uuid::new_v4().to_string();
        random.push(http.get(format!("{limited}/v1/jobs")).bearer_auth(t).send().await?.status().as_u16());
    }
    assert_eq!(random, [401, 401, 401, 429, 429], "random tokens share their address's quota");
    let (code, _) =
        Api { url: limited.clone(), http: http.clone() }.post_as(BOB, "/v1/policy/check", json!({})).await?;
    assert_ne!(code, StatusCode::TOO_MANY_REQUESTS, "another principal has its own quota");
    sys.shutdown().await?;

    // 503 when a service does not answer: an API whose NATS has no services.
    let lonely = NatsServer::start()?;
    let db = TestDb::create().await?;
    skynet_bus::bootstrap(&lonely.connect().await?).await?;
    let client = lonely.connect_as("api").await?;
    let js = async_nats::jetstream::new(client.clone());
    let store = skynet_bus::EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?;
    let mut cfg = config();
    cfg.service_timeout_ms = 300;
    cfg.open_reads = true;
    let principals = std::sync::Arc::new(skynet_bus::principals::Principals::open(&js).await?);
    let deps = skynet_api::Deps { nats: client, js, store, db: db.pool().await?, principals: principals.clone() };
    let admin_js = async_nats::jetstream::new(lonely.connect().await?);
    let p = skynet_contract::principal::Principal {
        name: "alice".into(),
        roles: vec![skynet_contract::principal::PrincipalRole::Admin],
    };
    skynet_bus::principals::Principals::open(&admin_js).await?.put(TOKEN, &p).await?;
    let app = skynet_api::router(cfg, deps);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    let r = http.post(format!("{url}/v1/policy/check")).json(&json!({"action": "git_status"})).send().await?;
    let (got, code) = problem(r).await;
    assert_eq!((got.as_u16(), code.as_str()), (503, "unavailable"));
    let r = http.post(format!("{url}/v1/jobs/{}/cancel", uuid::Uuid::new_v4())).bearer_auth(TOKEN).send().await?;
    assert_eq!(r.status().as_u16(), 503);
    Ok(())
}

#[tokio::test]
async fn live_events_arrive_as_server_sent_events_filtered_by_type() -> anyhow::Result<()> {
    let sys = mock_system().await?;
    let url = sys.api(config()).await?;
    let resp = reqwest::Client::new()
        .get(format!("{url}/v1/events?type=skynet.job.succeeded.v1"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    let mut resp = resp;
    let job = sys.submit("sse-1", json!({"intent": "check git status", "working_dir": sys.project()})).await?;
    let mut text = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = resp.chunk().await? {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains(&job.to_string()) {
                return anyhow::Ok(true);
            }
        }
        Ok(false)
    })
    .await??;
    assert!(found);
    assert!(text.contains("event: skynet.job.succeeded.v1"), "{text}");
    assert!(!text.contains("skynet.job.requested.v1"), "filtered by type: {text}");
    sys.shutdown().await
}

#[tokio::test]
async fn the_predecessors_endpoints_answer_as_specified() -> anyhow::Result<()> {
    let sys = mock_system().await?;
    let api = Api { url: sys.api(config()).await?, http: reqwest::Client::new() };

    let (code, root) = api.get("/v1").await?;
    assert_eq!((code, root["status"].as_str()), (StatusCode::OK, Some("online")));
    let (code, health) = eventually(Duration::from_secs(20), "healthy", || async {
        let (c, h) = api.get("/v1/health").await.ok()?;
        (h["status"] == "ok").then_some((c, h))
    })
    .await?;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(health["components"]["policy_engine"], "ok");

    // §2.6 policy check (case-insensitive now).
    for (action, risk) in [("git_status", "low"), ("GIT_STATUS", "low"), ("file_write", "med"), ("deploy_prod", "high")]
    {
        let (code, v) = api.post("/v1/policy/check", json!({"action": action})).await?;
        assert_eq!((code, v["risk_level"].as_str()), (StatusCode::OK, Some(risk)), "{action}");
    }

    // /v1/plan consults the policy: a WRITE step needs approval.
    let (code, plan) = api
        .post("/v1/plan", json!({"request_id": uuid::Uuid::new_v4(), "user_message": "run the tests and build"}))
        .await?;
    assert_eq!(code, StatusCode::OK, "{plan}");
    assert_eq!(plan["decision"]["risk_level"], "med");
    assert_eq!(plan["decision"]["mode"], "approval_required");
    assert_eq!(plan["execution_plan"][0]["agent"], "tester");
    assert_eq!(plan["execution_plan"][1]["estimated_time_min"], 5);

    let (code, rep) = api.post("/v1/report", json!({"request_id": uuid::Uuid::new_v4(), "step_reports": [{"step": 1, "status": "completed"}], "overall_status": "failed"})).await?;
    assert_eq!((code, rep["next_action"].as_str()), (StatusCode::OK, Some("Review error logs and retry failed steps")));
    let (code, _) = api.post("/v1/report", json!({"request_id": uuid::Uuid::new_v4(), "step_reports": [{"step": 1, "status": "exploded"}], "overall_status": "x"})).await?;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);

    // §18.22 /v1/execute: the spec runs as a governed job on mock.
    let (code, ex) = api
        .post(
            "/v1/execute",
            json!({"execution_spec": {"steps": [{"action": "list_directory", "params": {}}]}, "timeout": 30}),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{ex}");
    assert_eq!((ex["status"].as_str(), ex["provider"].as_str()), (Some("success"), Some("mock")), "{ex}");
    assert_eq!(ex["results"][0]["action"], "list_directory");
    assert_eq!(ex["steps_completed"], 1);
    let (code, _) = api.post("/v1/execute", json!({"execution_spec": {"steps": []}, "timeout": 30})).await?;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let (code, _) = api.post("/v1/execute", json!({"execution_spec": {"steps": ["git_status"]}, "timeout": 0})).await?;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);

    // §18.26 diagnose and §18.25 provider health.
    let (code, d) =
        api.post("/v1/scheduler/diagnose", json!({"execution_spec": {"steps": [{"action": "run_tests"}]}})).await?;
    assert_eq!(
        (code, d["selected_provider"].as_str(), d["fallback_used"].as_bool()),
        (StatusCode::OK, Some("mock"), Some(false)),
        "{d}"
    );
    assert_eq!(d["required_capabilities"], json!(["run_tests"]));
    assert_eq!(d["scores"][0]["provider"], "mock");
    let (_, pre) =
        api.post("/v1/scheduler/diagnose", json!({"execution_spec": {"provider": "ssh", "steps": []}})).await?;
    assert_eq!(pre["preselected_provider"], "ssh");
    let (code, ph) = api.get("/v1/providers/health").await?;
    assert_eq!((code, ph["status"].as_str()), (StatusCode::OK, Some("healthy")), "{ph}");
    assert_eq!(ph["healthy_count"], 1);
    sys.shutdown().await
}

#[tokio::test]
async fn every_route_of_the_openapi_document_needs_a_token_and_its_role() -> anyhow::Result<()> {
    use skynet_contract::principal::PrincipalRole;
    let sys = mock_system().await?;
    sys.principal("nobody", "token-nobody", &[]).await?;
    sys.principal("reader", "token-reader", &[PrincipalRole::Read]).await?;
    let url = sys.api(config()).await?;
    let http = reqwest::Client::new();
    // Every route the document lists: a route added to the API without its
    // guard entry would be found here.
    let doc: Value = serde_json::from_str(include_str!("../../services/api/openapi.json"))?;
    let job = uuid::Uuid::new_v4().to_string();
    let mut checked = Vec::new();
    for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
        for method in ops.as_object().into_iter().flatten().map(|(m, _)| m.to_uppercase()) {
            let concrete = path.replace("{id}", &job).replace("{n}", "0");
            let public = matches!(path.as_str(), "/v1" | "/v1/health");
            let read =
                method == "GET" || ["/v1/plan", "/v1/policy/check", "/v1/scheduler/diagnose"].contains(&path.as_str());
            let send = |token: Option<&str>| {
                let mut r = http.request(method.parse().unwrap_or(reqwest::Method::GET), format!("{url}{concrete}"));
                if let Some(t) = token {
                    r = r.bearer_auth(t);
                }
                // A body the handler would accept or refuse on its own: the guard answers first.
                r.json(&json!({})).timeout(Duration::from_secs(5)).send()
            };
            let status = |r: Result<reqwest::Response, reqwest::Error>| r.map(|r| r.status().as_u16()).unwrap_or(0);
            let anonymous = status(send(None).await);
            let nobody = status(send(Some("token-nobody")).await);
            let reader = status(send(Some("token-reader")).await);
            if public {
                assert!(![401, 403].contains(&anonymous), "{method} {path} is public: {anonymous}");
                continue;
            }
            assert_eq!(anonymous, 401, "{method} {path} without a token");
            assert_eq!(nobody, 403, "{method} {path} with a token holding no role");
            if read {
                assert!(![401, 403].contains(&reader), "{method} {path} is a read: {reader}");
            } else {
                assert_eq!(reader, 403, "{method} {path} mutates: a reader may not");
            }
            checked.push(format!("{method} {path}"));
        }
    }
    for route in [
        "POST /v1/tasks",
        "POST /v1/execute",
        "POST /v1/report",
        "POST /v1/jobs/{id}/approve",
        "POST /v1/jobs/{id}/deny",
        "POST /v1/jobs/{id}/cancel",
    ] {
        assert!(checked.iter().any(|c| c == route), "{route} was checked: {checked:?}");
    }
    sys.shutdown().await
}

#[tokio::test]
async fn live_event_streams_are_capped() -> anyhow::Result<()> {
    let sys = mock_system().await?;
    let url = sys.api(skynet_api::Config { max_sse: 1, ..config() }).await?;
    let http = reqwest::Client::new();
    let open = || http.get(format!("{url}/v1/events")).bearer_auth(TOKEN).send();
    let first = open().await?;
    assert_eq!(first.status(), StatusCode::OK);
    let second = open().await?;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ct = second.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(ct, "application/problem+json");
    // Closing the first frees its place.
    drop(first);
    eventually(Duration::from_secs(10), "a place for a new stream", || async {
        (open().await.ok()?.status() == StatusCode::OK).then_some(())
    })
    .await?;
    sys.shutdown().await
}
