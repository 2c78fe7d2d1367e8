//! Settings read from the environment (and flags). Every variable is listed in
//! the README.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use skynet_bus::server::Durability;

/// Where the system's infrastructure is.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// NATS server URL. Unset: start our own nats-server (>= 2.11) on
    /// `--nats-port` with its store under `--data-dir`.
    #[arg(long, env = "SKYNET_NATS_URL")]
    pub nats_url: Option<String>,
    /// Port of the nats-server SKYNET starts itself (never 4222, where an old
    /// system server may listen).
    #[arg(long, env = "SKYNET_NATS_PORT", default_value_t = 4333)]
    pub nats_port: u16,
    /// Durability of the nats-server SKYNET starts itself.
    #[arg(long, env = "SKYNET_DURABILITY", value_enum, default_value_t = DurabilityArg::Durable)]
    pub durability: DurabilityArg,
    /// Postgres URL for the read models. Unset: the local server on
    /// 127.0.0.1:5432, database `skynet` (created when missing).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where SKYNET keeps the state of the servers it starts.
    #[arg(long, env = "SKYNET_DATA_DIR", default_value = ".data")]
    pub data_dir: PathBuf,
    /// Policy rules file (TOML). Unset: the built-in `config/policy.toml`.
    #[arg(long, env = "SKYNET_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// Planner backend.
    #[arg(long, env = "SKYNET_PLANNER", value_enum, default_value_t = PlannerArg::Rules)]
    pub planner: PlannerArg,
    /// Base URL of an OpenAI-compatible chat-completions API (for `--planner llm`).
    #[arg(long, env = "SKYNET_LLM_BASE_URL", default_value = "http://127.0.0.1:11434/v1")]
    pub llm_base_url: String,
    /// Model name for the LLM planner.
    #[arg(long, env = "SKYNET_LLM_MODEL", default_value = "qwen2.5-coder:7b")]
    pub llm_model: String,
    /// Name of the environment variable that holds the LLM API key.
    #[arg(long, env = "SKYNET_LLM_API_KEY_ENV", default_value = "SKYNET_LLM_API_KEY")]
    pub llm_api_key_env: String,
    /// Seconds a person has to approve before the job is cancelled (overrides the rules file).
    #[arg(long, env = "SKYNET_APPROVAL_TIMEOUT_SECS")]
    pub approval_timeout_secs: Option<u64>,
}

/// `--planner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlannerArg {
    /// Offline rule-based planner.
    Rules,
    /// OpenAI-compatible LLM, falling back to the rules.
    Llm,
}

impl Settings {
    /// Settings for a system on the given NATS and Postgres, everything else default.
    pub fn new(nats_url: Option<String>, database_url: Option<String>) -> Settings {
        Settings {
            nats_url,
            nats_port: 4333,
            durability: DurabilityArg::Durable,
            database_url,
            data_dir: PathBuf::from(".data"),
            policy_file: None,
            planner: PlannerArg::Rules,
            llm_base_url: "http://127.0.0.1:11434/v1".into(),
            llm_model: "qwen2.5-coder:7b".into(),
            llm_api_key_env: "SKYNET_LLM_API_KEY".into(),
            approval_timeout_secs: None,
        }
    }

    /// The policy rules: the file if given, else the built-in defaults.
    pub fn policy_rules(&self) -> Result<skynet_rules::PolicyRules, skynet_rules::RulesError> {
        let mut rules = match &self.policy_file {
            Some(path) => skynet_rules::PolicyRules::load(path)?,
            None => skynet_rules::PolicyRules::defaults(),
        };
        if let Some(secs) = self.approval_timeout_secs.filter(|s| *s > 0) {
            rules.approval.timeout_secs = secs;
        }
        Ok(rules)
    }

    /// The planner's configuration.
    pub fn planner_config(&self) -> skynet_planner::Config {
        let backend = match self.planner {
            PlannerArg::Rules => skynet_planner::Backend::Rules,
            PlannerArg::Llm => skynet_planner::Backend::Llm,
        };
        let llm = skynet_planner::LlmConfig {
            base_url: self.llm_base_url.clone(),
            model: self.llm_model.clone(),
            api_key_env: self.llm_api_key_env.clone(),
            ..Default::default()
        };
        skynet_planner::Config { backend, llm, ..Default::default() }
    }
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// fsync before every acknowledgement (`sync_interval: always`).
    Durable,
    /// The server's default: fsync every 2 minutes.
    Fast,
}

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Durable => Durability::Durable,
            DurabilityArg::Fast => Durability::Fast,
        }
    }
}
