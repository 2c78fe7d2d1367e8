//! The LLM planner against a real HTTP server, started by the test, that speaks
//! the chat-completions protocol: good JSON, fenced JSON, garbage, a 429 then
//! success, and a hang.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use skynet_planner::LlmConfig;
use skynet_planner::llm::{LlmError, LlmPlanner};

const PLAN: &str = r#"{"summary":"check and test","steps":[
  {"title":"Status","description":"git status","action":"git_status","risk":"READ_ONLY","estimated_minutes":1},
  {"title":"Tests","description":"run the tests","action":"run_tests","risk_level":"read_only","estimated_minutes":3}]}"#;

#[derive(Clone, Copy)]
enum Behaviour {
    Good,
    Fenced,
    Garbage,
    TooManyThenGood,
    Hang,
}

#[derive(Clone)]
struct Fake {
    behaviour: Behaviour,
    calls: Arc<AtomicUsize>,
    auth: Arc<std::sync::Mutex<Vec<String>>>,
}

fn completion(content: &str) -> Response {
    Json(serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "fake",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]
    }))
    .into_response()
}

async fn chat(State(f): State<Fake>, headers: HeaderMap, Json(body): Json<serde_json::Value>) -> Response {
    let n = f.calls.fetch_add(1, Ordering::SeqCst);
    if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        f.auth.lock().expect("lock").push(a.to_owned());
    }
    // The request is a chat completion asking for JSON.
    assert_eq!(body["response_format"]["type"], "json_object");
    assert_eq!(body["messages"][1]["role"], "user");
    match f.behaviour {
        Behaviour::Good => completion(PLAN),
        Behaviour::Fenced => completion(&format!("Here is the plan:\n```json\n{PLAN}\n```")),
        Behaviour::Garbage => completion("I'm sorry, I can't do JSON today."),
        Behaviour::TooManyThenGood if n == 0 => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
        Behaviour::TooManyThenGood => completion(PLAN),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            completion(PLAN)
        }
    }
}

async fn serve(behaviour: Behaviour) -> anyhow::Result<(SocketAddr, Fake)> {
    let fake = Fake { behaviour, calls: Arc::default(), auth: Arc::default() };
    let app = axum::Router::new().route("/v1/chat/completions", post(chat)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, fake))
}

fn planner(addr: SocketAddr, key_env: &str) -> LlmPlanner {
    LlmPlanner::new(LlmConfig {
        base_url: format!("http://{addr}/v1"),
        model: "fake-model".into(),
        api_key_env: key_env.into(),
        timeout_ms: 500,
        max_retries: 2,
        retry_min_delay_ms: 10,
        temperature: 0.0,
    })
}

#[tokio::test]
async fn good_and_fenced_json_become_validated_plans() -> anyhow::Result<()> {
    for b in [Behaviour::Good, Behaviour::Fenced] {
        let (addr, fake) = serve(b).await?;
        let plan = planner(addr, "SKYNET_TEST_NO_KEY").plan("check status and test", Some("/tmp"), &[]).await?;
        let actions: Vec<_> = plan.steps.iter().filter_map(|s| s.action.as_deref()).collect();
        assert_eq!(actions, ["git_status", "run_tests"]);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }
    Ok(())
}

#[tokio::test]
async fn garbage_is_an_error_not_a_plan() -> anyhow::Result<()> {
    let (addr, _) = serve(Behaviour::Garbage).await?;
    let err = planner(addr, "SKYNET_TEST_NO_KEY").plan("x", None, &[]).await.expect_err("garbage");
    assert!(matches!(err, LlmError::Unparseable(_)), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_429_is_retried_with_backoff_and_then_succeeds() -> anyhow::Result<()> {
    let (addr, fake) = serve(Behaviour::TooManyThenGood).await?;
    let plan = planner(addr, "SKYNET_TEST_NO_KEY").plan("x", None, &[]).await?;
    assert_eq!(plan.steps.len(), 2);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2, "one 429, one success");
    Ok(())
}

#[tokio::test]
async fn a_hanging_server_times_out_after_bounded_retries() -> anyhow::Result<()> {
    let (addr, fake) = serve(Behaviour::Hang).await?;
    let started = std::time::Instant::now();
    let err = planner(addr, "SKYNET_TEST_NO_KEY").plan("x", None, &[]).await.expect_err("hang");
    assert!(matches!(err, LlmError::Timeout(_)), "{err}");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 3, "first attempt plus two retries");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token_and_never_shown() -> anyhow::Result<()> {
    let (addr, fake) = serve(Behaviour::Good).await?;
    let cfg = LlmConfig { base_url: format!("http://{addr}/v1"), ..LlmConfig::default() };
    let p = LlmPlanner::with_key(cfg, Some("sk-test-secret".into()));
    assert!(!format!("{p:?}").contains("sk-test-secret"), "Debug never shows the key");
    p.plan("x", None, &[]).await?;
    assert_eq!(fake.auth.lock().expect("lock").as_slice(), ["Bearer sk-test-secret"]);
    Ok(())
}
