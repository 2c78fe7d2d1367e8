//! The LLM planner: any server speaking the OpenAI-compatible chat-completions
//! API (OpenAI, Gemini's OpenAI endpoint, Ollama, vLLM, llama.cpp).
//!
//! It asks for a JSON object against our plan shape, parses the answer
//! resiliently (whole text, fenced block, first `{` to last `}`), and validates
//! every step against the action catalog. Requests have a timeout and bounded
//! retries with exponential backoff (`backon`) on 429, 5xx and transport errors.
//! The API key is read from the environment and only ever placed in the
//! `Authorization` header: never logged, never in an event.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Deserialize;
use skynet_contract::memory::{KnownFailure, PastJob};
use skynet_contract::{Plan, PlanStep, Risk};
use skynet_rules::catalog;

use crate::config::LlmConfig;

/// Why the LLM produced no usable plan.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("LLM request timed out after {0:?}")]
    Timeout(Duration),
    #[error("LLM endpoint answered HTTP {status}")]
    Status { status: u16 },
    #[error("LLM endpoint unreachable: {0}")]
    Transport(String),
    #[error("LLM answer is not a chat completion: {0}")]
    Protocol(String),
    #[error("no JSON plan found in the LLM answer (starts: {0:?})")]
    Unparseable(String),
    #[error("LLM plan is invalid: {0}")]
    Invalid(String),
}

impl LlmError {
    fn is_transient(&self) -> bool {
        match self {
            LlmError::Timeout(_) | LlmError::Transport(_) => true,
            LlmError::Status { status } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// A configured LLM backend.
#[derive(Clone)]
pub struct LlmPlanner {
    http: reqwest::Client,
    config: LlmConfig,
    /// Read once at start from `config.api_key_env`.
    api_key: Option<String>,
}

impl std::fmt::Debug for LlmPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately omits the key.
        f.debug_struct("LlmPlanner")
            .field("base_url", &self.config.base_url)
            .field("model", &self.config.model)
            .finish()
    }
}

impl LlmPlanner {
    /// A planner whose key is read from the variable `config.api_key_env`.
    pub fn new(config: LlmConfig) -> LlmPlanner {
        let api_key = std::env::var(&config.api_key_env).ok().filter(|k| !k.is_empty());
        Self::with_key(config, api_key)
    }

    /// A planner with an explicit key (or none, for local servers).
    pub fn with_key(config: LlmConfig, api_key: Option<String>) -> LlmPlanner {
        LlmPlanner { http: reqwest::Client::new(), config, api_key }
    }

    /// The name recorded in `planned` events.
    pub fn name(&self) -> String {
        format!("llm:{}", self.config.model)
    }

    /// Asks the model for a plan and validates it.
    pub async fn plan(&self, intent: &str, working_dir: Option<&str>, memories: &[PastJob]) -> Result<Plan, LlmError> {
        self.plan_knowing(intent, working_dir, memories, &[]).await
    }

    /// Plans with past jobs and the failures memory knows of in this directory in the prompt.
    pub async fn plan_knowing(
        &self,
        intent: &str,
        working_dir: Option<&str>,
        memories: &[PastJob],
        failures: &[KnownFailure],
    ) -> Result<Plan, LlmError> {
        let body = self.request_body(intent, working_dir, memories, failures);
        let attempt = || async { self.complete(&body).await };
        let text = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(self.config.retry_min_delay_ms))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(self.config.max_retries)
                    .with_jitter(),
            )
            .when(LlmError::is_transient)
            .await?;
        parse_plan(&text)
    }

    async fn complete(&self, body: &serde_json::Value) -> Result<String, LlmError> {
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let mut req = self.http.post(url).json(body).timeout(timeout);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp =
            req.send().await.map_err(|e| if e.is_timeout() { LlmError::Timeout(timeout) } else { transport(&e) })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(LlmError::Status { status: status.as_u16() });
        }
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| if e.is_timeout() { LlmError::Timeout(timeout) } else { LlmError::Protocol(e.to_string()) })?;
        v.pointer("/choices/0/message/content")
            .and_then(|c| c.as_str())
            .map(str::to_owned)
            .ok_or_else(|| LlmError::Protocol("no choices[0].message.content".into()))
    }

    fn request_body(
        &self,
        intent: &str,
        working_dir: Option<&str>,
        memories: &[PastJob],
        failures: &[KnownFailure],
    ) -> serde_json::Value {
        let actions: Vec<String> = catalog::ACTIONS
            .iter()
            .map(|a| format!("{}({})", a.name, a.all_params().map(|p| p.name).collect::<Vec<_>>().join(", ")))
            .collect();
        let mut system = format!(
            "You are SKYNET's planner. Turn the user's request into a JSON object, and output only that object:\n\
             {{\"summary\": string, \"steps\": [{{\"title\": string, \"description\": string, \"action\": string, \
             \"params\": object, \"risk\": \"READ_ONLY\"|\"WRITE\"|\"ADMIN\", \"estimated_minutes\": integer}}], \
             \"artifacts\": [string]}}\n\
             Actions, with the only parameters each takes: {}.\n\
             READ_ONLY only inspects (git status, tests, listing files); WRITE changes files or state (installs, builds); \
             ADMIN deploys, pushes, deletes or touches production. Make steps atomic and ordered; use only listed actions \
             and parameters (tests, lint, build and install run the project's own commands).",
            actions.join("; ")
        );
        if !memories.is_empty() {
            system.push_str("\nRelevant past jobs (learn from failures, repeat what worked):");
            for (i, m) in memories.iter().enumerate() {
                let outcome = if m.succeeded { "SUCCESS" } else { "FAILED" };
                system.push_str(&format!("\n{}. [{outcome}] {}", i + 1, m.intent));
                if let Some(e) = &m.error {
                    system.push_str(&format!(" — error: {e}"));
                }
            }
        }
        if !failures.is_empty() {
            system.push_str("\nKnown failures in this directory (plan around them, or say why not):");
            for f in failures {
                system.push_str(&format!("\n- {} failed {} time(s): {}", f.action, f.count, f.message));
            }
        }
        let user = format!("Request: {intent}\nWorking directory: {}", working_dir.unwrap_or("(not given)"));
        serde_json::json!({
            "model": self.config.model,
            "temperature": self.config.temperature,
            "response_format": {"type": "json_object"},
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        })
    }
}

fn transport(e: &reqwest::Error) -> LlmError {
    // reqwest errors name the URL, never headers, so the key cannot leak here.
    LlmError::Transport(e.to_string())
}

/// The model's plan, as loosely as models write it.
#[derive(Deserialize)]
struct RawPlan {
    #[serde(default)]
    summary: String,
    #[serde(default, alias = "tasks")]
    steps: Vec<RawStep>,
    #[serde(default)]
    artifacts: Vec<String>,
}

#[derive(Deserialize)]
struct RawStep {
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, serde_json::Value>,
    #[serde(default, alias = "risk_level")]
    risk: Option<String>,
    #[serde(default)]
    estimated_minutes: Option<u32>,
}

/// Extracts and validates a plan from model output.
pub fn parse_plan(text: &str) -> Result<Plan, LlmError> {
    let raw = extract_json(text).ok_or_else(|| LlmError::Unparseable(text.chars().take(200).collect()))?;
    let raw: RawPlan = serde_json::from_value(raw).map_err(|e| LlmError::Invalid(e.to_string()))?;
    if raw.steps.is_empty() {
        return Err(LlmError::Invalid("the plan has no steps".into()));
    }
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (i, s) in raw.steps.into_iter().enumerate() {
        let title = if s.title.trim().is_empty() { format!("Step {}", i + 1) } else { s.title };
        let action = match s.action.map(|a| a.trim().to_ascii_lowercase()).filter(|a| !a.is_empty()) {
            Some(a) => match catalog::action(&a) {
                None => return Err(LlmError::Invalid(format!("step {i} ({title:?}) uses unknown action {a:?}"))),
                Some(entry) => {
                    // A model fed a hostile intent must not smuggle in a command.
                    catalog::check_params(entry, &s.params)
                        .map_err(|e| LlmError::Invalid(format!("step {i} ({title:?}): {e}")))?;
                    Some(a)
                }
            },
            None => None,
        };
        let risk_text = s.risk.unwrap_or_else(|| "WRITE".into());
        let risk = Risk::parse(&risk_text)
            .filter(|r| *r != Risk::Blocked)
            .ok_or_else(|| LlmError::Invalid(format!("step {i} ({title:?}) has risk {risk_text:?}")))?;
        steps.push(PlanStep {
            title,
            description: s.description,
            action,
            params: s.params,
            risk,
            estimated_minutes: s.estimated_minutes.unwrap_or(5),
            continue_on_error: false,
        });
    }
    Ok(Plan { summary: raw.summary, steps, artifacts: raw.artifacts })
}

/// Whole text, then a fenced block, then first `{` to last `}`.
fn extract_json(text: &str) -> Option<serde_json::Value> {
    let object = |s: &str| serde_json::from_str::<serde_json::Value>(s.trim()).ok().filter(|v| v.is_object());
    if let Some(v) = object(text) {
        return Some(v);
    }
    if let Some(start) = text.find("```") {
        let after = &text[start + 3..];
        let body_start = after.find('\n').map_or(0, |n| n + 1);
        if let Some(end) = after[body_start..].find("```")
            && let Some(v) = object(&after[body_start..body_start + end])
        {
            return Some(v);
        }
    }
    let (first, last) = (text.find('{')?, text.rfind('}')?);
    (first < last).then(|| object(&text[first..=last])).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"{"summary":"s","steps":[{"title":"Status","description":"d","action":"git_status","risk_level":"read_only","estimated_minutes":1}]}"#;

    #[test]
    fn parses_whole_fenced_and_embedded_json() {
        for text in [
            PLAN.to_string(),
            format!("Here you go:\n```json\n{PLAN}\n```\nEnjoy"),
            format!("```\n{PLAN}\n```"),
            format!("Sure! {PLAN} Hope that helps."),
        ] {
            let p = parse_plan(&text).expect("parses");
            assert_eq!(p.steps[0].action.as_deref(), Some("git_status"));
            assert_eq!(p.steps[0].risk, Risk::ReadOnly);
        }
    }

    #[test]
    fn rejects_garbage_unknown_actions_bad_risks_and_empty_plans() {
        assert!(matches!(parse_plan("I cannot help with that"), Err(LlmError::Unparseable(_))));
        let unknown = PLAN.replace("git_status", "rm_rf_everything");
        assert!(matches!(parse_plan(&unknown), Err(LlmError::Invalid(m)) if m.contains("rm_rf_everything")));
        assert!(matches!(parse_plan(&PLAN.replace("read_only", "LOW")), Err(LlmError::Invalid(_))));
        assert!(matches!(parse_plan(r#"{"summary":"x","steps":[]}"#), Err(LlmError::Invalid(_))));
    }
}
