//! Planner configuration.

use serde::Deserialize;

/// Which backend plans.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The offline, deterministic rule planner.
    Rules,
    /// An OpenAI-compatible LLM, falling back to the rules on any failure.
    Llm,
}

/// Settings of the planner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub backend: Backend,
    pub llm: LlmConfig,
    /// How long to wait for the memory service's similar-jobs answer.
    pub memory_timeout_ms: u64,
    /// Jobs planned at once.
    pub concurrency: usize,
}

/// The LLM endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Base URL of the chat-completions API (`.../v1`).
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key (the key itself is
    /// never in configuration).
    pub api_key_env: String,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Retries after the first attempt, on 429, 5xx and transport errors.
    pub max_retries: usize,
    /// First backoff delay; doubles per retry.
    pub retry_min_delay_ms: u64,
    pub temperature: f32,
}

impl Default for Config {
    fn default() -> Self {
        Config { backend: Backend::Rules, llm: LlmConfig::default(), memory_timeout_ms: 250, concurrency: 32 }
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: "http://127.0.0.1:11434/v1".into(),
            model: "qwen2.5-coder:7b".into(),
            api_key_env: "SKYNET_LLM_API_KEY".into(),
            timeout_ms: 20_000,
            max_retries: 2,
            retry_min_delay_ms: 200,
            temperature: 0.2,
        }
    }
}
