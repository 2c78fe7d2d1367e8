//! `ollama_chat`: one call to an OpenAI-compatible chat-completions endpoint
//! (Ollama, vLLM, OpenAI), the reply as the step's output. Offered only by an
//! executor configured with an endpoint: one without cannot run it and does
//! not say it can.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::StepOutcome;

/// The endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Chat {
    /// Base URL of the API (`…/v1`); `/chat/completions` is appended.
    pub base_url: String,
    /// Model used when the step names none.
    pub model: String,
    /// The environment variable holding the API key (none sent when unset).
    pub api_key_env: String,
    /// Largest reply kept.
    pub max_reply_bytes: usize,
}

impl Default for Chat {
    fn default() -> Self {
        Chat {
            base_url: "http://127.0.0.1:11434/v1".into(),
            model: "qwen2.5-coder:7b".into(),
            api_key_env: "SKYNET_LLM_API_KEY".into(),
            max_reply_bytes: 256 * 1024,
        }
    }
}

impl Chat {
    /// Sends the step's `messages` (checked by kind when the plan was) and
    /// returns the first choice's content.
    pub async fn run(
        &self,
        params: &BTreeMap<String, Value>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> StepOutcome {
        let Some(messages) = params.get("messages").filter(|m| m.as_array().is_some_and(|a| !a.is_empty())) else {
            return StepOutcome::error("ollama_chat needs messages".into());
        };
        let model = params.get("model").and_then(Value::as_str).unwrap_or(&self.model);
        let url = format!("{}/chat/completions", self.base_url.trim_end_matches('/'));
        let mut req =
            reqwest::Client::new().post(&url).json(&json!({"model": model, "messages": messages, "stream": false}));
        if let Ok(key) = std::env::var(&self.api_key_env)
            && !key.is_empty()
        {
            req = req.bearer_auth(key);
        }
        let call = async {
            let mut resp = req.send().await.map_err(|e| format!("cannot reach the chat endpoint {url}: {e}"))?;
            let status = resp.status();
            // Read at most a few times the reply cap: an endpoint cannot make
            // the executor hold an unbounded body.
            let most = self.max_reply_bytes.saturating_mul(4).max(64 * 1024);
            let mut raw = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading the chat reply from {url}: {e}"))? {
                if raw.len() + chunk.len() > most {
                    return Err(format!("the chat endpoint's reply is over {most} bytes; refused"));
                }
                raw.extend_from_slice(&chunk);
            }
            let body = String::from_utf8_lossy(&raw);
            if !status.is_success() {
                let excerpt: String = body.chars().take(300).collect();
                return Err(format!("the chat endpoint {url} answered {status}: {excerpt}"));
            }
            let parsed: Value =
                serde_json::from_str(&body).map_err(|e| format!("the chat endpoint's reply is not JSON: {e}"))?;
            parsed
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| "the chat endpoint's reply has no choices[0].message.content".to_owned())
        };
        tokio::select! {
            r = call => match r {
                Ok(mut reply) => {
                    if reply.len() > self.max_reply_bytes {
                        let mut cut = self.max_reply_bytes;
                        while !reply.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        reply.truncate(cut);
                        reply.push_str("\n[reply truncated]");
                    }
                    reply.push('\n');
                    StepOutcome { exit_code: Some(0), stdout: reply.into_bytes(), ..StepOutcome::default() }
                }
                Err(e) => StepOutcome::error(e),
            },
            () = tokio::time::sleep(timeout) => StepOutcome {
                timed_out: true,
                error: Some(format!("no reply from the chat endpoint within {} s", timeout.as_secs_f64())),
                ..StepOutcome::default()
            },
            () = cancel.cancelled() => StepOutcome { cancelled: true, error: Some("cancelled".into()), ..StepOutcome::default() },
        }
    }
}
