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
    /// For a server SKYNET did not start: a directory with one credential per
    /// role (`<role>.nk` nkey seed or `<role>.creds`); each service connects
    /// with its own. (`skynet up` generates them into `<data-dir>/nats-creds`.)
    #[arg(long, env = "SKYNET_NATS_CREDS_DIR")]
    pub nats_creds_dir: Option<PathBuf>,
    /// For a server SKYNET did not start: one credential file (nkey seed or
    /// `.creds`) for every connection of this process, e.g. the executor's for
    /// `skynet run executor`.
    #[arg(long, env = "SKYNET_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
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
    /// How long the planner waits for memory's similar past jobs before
    /// planning without them, in milliseconds.
    #[arg(long, env = "SKYNET_PLANNER_MEMORY_TIMEOUT_MS", default_value_t = 250)]
    pub planner_memory_timeout_ms: u64,
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
    #[command(flatten)]
    pub executor: ExecutorSettings,
    #[command(flatten)]
    pub sentinel: SentinelSettings,
    #[command(flatten)]
    pub initiative: InitiativeSettings,
    #[command(flatten)]
    pub telegram: TelegramSettings,
    /// Also serve Prometheus metrics at `http://<addr>/metrics` (the API serves
    /// them at `/metrics` too, with a token of the read role).
    #[arg(long, env = "SKYNET_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where the HTTP API listens.
    #[arg(long, env = "SKYNET_API_LISTEN", default_value = "127.0.0.1:8080")]
    pub api_listen: std::net::SocketAddr,
    /// The first admin principal's API token. Unset: a random token is
    /// generated at first start and written to `<data-dir>/api-token`.
    #[arg(long, env = "SKYNET_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Whether the API's reads (jobs, history, step output) work without a
    /// token holding the `read` role.
    #[arg(long, env = "SKYNET_API_OPEN_READS", default_value_t = false, action = clap::ArgAction::Set)]
    pub api_open_reads: bool,
}

/// Sentinel settings (for `skynet up` and `skynet run sentinel`).
#[derive(Debug, Clone, Args)]
pub struct SentinelSettings {
    /// JSON file of alert sinks (signed webhooks, Slack); unset: alerts are
    /// recorded and shown, sent nowhere.
    #[arg(long = "alert-sinks", env = "SKYNET_ALERT_SINKS")]
    pub sinks: Option<PathBuf>,
    /// The same alert is not sent again within this many seconds.
    #[arg(long = "alert-cooldown-secs", env = "SKYNET_ALERT_COOLDOWN_SECS", default_value_t = 300)]
    pub cooldown_secs: u64,
    /// A job waiting for approval this long raises a reminder.
    #[arg(long = "approval-reminder-secs", env = "SKYNET_APPROVAL_REMINDER_SECS", default_value_t = 120)]
    pub approval_reminder_secs: u64,
    /// Jobs dispatched or scheduled this long without starting raise an alert.
    #[arg(long = "job-start-limit-secs", env = "SKYNET_JOB_START_LIMIT_SECS", default_value_t = 60)]
    pub start_limit_secs: u64,
    /// Milliseconds between the sentinel's looks.
    #[arg(long = "sentinel-interval-ms", env = "SKYNET_SENTINEL_INTERVAL_MS", default_value_t = 2000)]
    pub interval_ms: u64,
}

impl Default for SentinelSettings {
    fn default() -> Self {
        SentinelSettings {
            sinks: None,
            cooldown_secs: 300,
            approval_reminder_secs: 120,
            start_limit_secs: 60,
            interval_ms: 2000,
        }
    }
}

impl SentinelSettings {
    /// The sentinel's configuration (the sink file read and checked now).
    pub fn config(&self) -> anyhow::Result<skynet_sentinel::Config> {
        // At most a year: anything longer is a mistake, and chrono's range ends.
        let secs = |n: u64| chrono::Duration::seconds(i64::try_from(n.min(366 * 86_400)).unwrap_or(0));
        let sinks = match &self.sinks {
            Some(path) => skynet_sentinel::sinks::load(path)?,
            None => Vec::new(),
        };
        Ok(skynet_sentinel::Config {
            interval: std::time::Duration::from_millis(self.interval_ms.max(100)),
            cooldown: secs(self.cooldown_secs),
            approval_reminder: secs(self.approval_reminder_secs),
            start_limit: secs(self.start_limit_secs),
            sinks,
            ..skynet_sentinel::Config::default()
        })
    }
}

/// Initiative settings (for `skynet up` and `skynet run initiative`).
#[derive(Debug, Clone, Default, Args)]
pub struct InitiativeSettings {
    /// Whether `skynet up` runs the initiative service (off by default: it
    /// submits work on its own). `skynet run initiative` runs it regardless.
    #[arg(long = "initiative", env = "SKYNET_INITIATIVE", default_value_t = false, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Its strategies and limits (TOML). Unset: the built-in `config/initiative.toml`.
    #[arg(long = "initiative-file", env = "SKYNET_INITIATIVE_FILE")]
    pub file: Option<PathBuf>,
}

impl InitiativeSettings {
    /// The initiative's configuration (the file read and checked now).
    pub fn config(&self) -> anyhow::Result<skynet_initiative::Config> {
        Ok(match &self.file {
            Some(path) => skynet_initiative::Config::load(path)?,
            None => skynet_initiative::Config::default(),
        })
    }
}

/// Telegram bot settings (for `skynet up` and `skynet run telegram`).
#[derive(Clone, Default, Args)]
pub struct TelegramSettings {
    /// The bot's token from @BotFather; `skynet up` runs the bot when it is set.
    #[arg(long = "telegram-bot-token", env = "TELEGRAM_BOT_TOKEN", hide_env_values = true)]
    pub bot_token: Option<String>,
    /// The Bot API's base URL (a self-hosted Bot API server; default Telegram's).
    #[arg(long = "telegram-api-url", env = "TELEGRAM_API_URL")]
    pub api_url: Option<String>,
    /// Who may use the bot: `<telegram user id>=<SKYNET API token>`, comma-separated.
    #[arg(long = "telegram-users", env = "TELEGRAM_USERS", default_value = "", hide_env_values = true)]
    pub users: String,
}

impl std::fmt::Debug for TelegramSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramSettings").field("api_url", &self.api_url).finish_non_exhaustive()
    }
}

impl TelegramSettings {
    /// The bot's configuration (the allow-list parsed now).
    pub fn config(&self) -> anyhow::Result<skynet_telegram::Config> {
        let token = self.bot_token.as_deref().unwrap_or_default();
        Ok(skynet_telegram::Config::new(token, self.api_url.as_deref(), &self.users)?)
    }
}

/// Executor settings (for `skynet up` and `skynet run executor`).
#[derive(Debug, Clone, Args)]
pub struct ExecutorSettings {
    /// Executor id (default: executor-<host>-<random>).
    #[arg(long = "executor-id", env = "SKYNET_EXECUTOR_ID")]
    pub id: Option<String>,
    /// Providers this executor offers: any of mock, local, ssh, docker, openclaw.
    #[arg(long = "providers", env = "SKYNET_EXECUTOR_PROVIDERS", value_delimiter = ',', default_value = "local")]
    pub providers: Vec<String>,
    /// Jobs run at once.
    #[arg(long = "capacity", env = "SKYNET_EXECUTOR_CAPACITY", default_value_t = 8)]
    pub capacity: usize,
    /// Mock provider: time each step takes.
    #[arg(long = "mock-latency-ms", env = "SKYNET_MOCK_LATENCY_MS", default_value_t = 100)]
    pub mock_latency_ms: u64,
    /// Mock provider: share of steps that fail.
    #[arg(long = "mock-failure-rate", env = "SKYNET_MOCK_FAILURE_RATE", default_value_t = 0.0)]
    pub mock_failure_rate: f64,
    #[arg(long = "ssh-host", env = "SKYNET_SSH_HOST", default_value = "localhost")]
    pub ssh_host: String,
    #[arg(long = "ssh-port", env = "SKYNET_SSH_PORT", default_value_t = 22)]
    pub ssh_port: u16,
    #[arg(long = "ssh-user", env = "SKYNET_SSH_USERNAME", default_value = "ubuntu")]
    pub ssh_user: String,
    #[arg(long = "ssh-key", env = "SKYNET_SSH_KEY_PATH")]
    pub ssh_key: Option<String>,
    /// The known_hosts file holding the ssh host's pinned key.
    #[arg(long = "ssh-known-hosts", env = "SKYNET_SSH_KNOWN_HOSTS")]
    pub ssh_known_hosts: Option<String>,
    /// Trust an unknown ssh host key on first use (`accept-new`); the default
    /// refuses any key not already in the known_hosts file.
    #[arg(long = "ssh-accept-new-host-keys", env = "SKYNET_SSH_ACCEPT_NEW_HOST_KEYS", default_value_t = false, action = clap::ArgAction::Set)]
    pub ssh_accept_new: bool,
    #[arg(long = "docker-image", env = "SKYNET_DOCKER_IMAGE", default_value = "ubuntu:22.04")]
    pub docker_image: String,
    /// `docker run --network` for steps (e.g. `none`); unset: the engine's default.
    #[arg(long = "docker-network", env = "SKYNET_DOCKER_NETWORK")]
    pub docker_network: Option<String>,
    #[arg(long = "openclaw-url", env = "OPENCLAW_GATEWAY_URL", default_value = "http://127.0.0.1:8766")]
    pub openclaw_url: String,
    /// Base URL (`…/v1`) of the OpenAI-compatible endpoint `ollama_chat` steps
    /// call (Ollama: `http://127.0.0.1:11434/v1`). Unset: this executor does
    /// not offer `ollama_chat`.
    #[arg(long = "chat-base-url", env = "SKYNET_CHAT_BASE_URL")]
    pub chat_base_url: Option<String>,
    /// Model for `ollama_chat` steps that name none.
    #[arg(long = "chat-model", env = "SKYNET_CHAT_MODEL", default_value = "qwen2.5-coder:7b")]
    pub chat_model: String,
    /// Name of the environment variable holding the chat endpoint's API key.
    #[arg(long = "chat-api-key-env", env = "SKYNET_CHAT_API_KEY_ENV", default_value = "SKYNET_LLM_API_KEY")]
    pub chat_api_key_env: String,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        ExecutorSettings {
            id: None,
            providers: vec!["local".into()],
            capacity: 8,
            mock_latency_ms: 100,
            mock_failure_rate: 0.0,
            ssh_host: "localhost".into(),
            ssh_port: 22,
            ssh_user: "ubuntu".into(),
            ssh_key: None,
            ssh_known_hosts: None,
            ssh_accept_new: false,
            docker_image: "ubuntu:22.04".into(),
            docker_network: None,
            openclaw_url: "http://127.0.0.1:8766".into(),
            chat_base_url: None,
            chat_model: "qwen2.5-coder:7b".into(),
            chat_api_key_env: "SKYNET_LLM_API_KEY".into(),
        }
    }
}

impl ExecutorSettings {
    /// The executor's configuration; local runs inside the policy's sandbox roots.
    pub fn config(&self, rules: &skynet_rules::PolicyRules) -> anyhow::Result<skynet_executor::Config> {
        use skynet_executor::providers::{
            chat::Chat, docker::Docker, local::Local, mock::Mock, openclaw::OpenClaw, ssh::HostKeys, ssh::Ssh,
        };
        let mut p = skynet_executor::ProvidersConfig::default();
        for name in &self.providers {
            match name.trim() {
                "mock" => {
                    p.mock = Some(Mock { latency_ms: self.mock_latency_ms, failure_rate: self.mock_failure_rate })
                }
                "local" => {
                    p.local = Some(Local {
                        allowed_roots: rules.sandbox.allowed_roots.clone(),
                        denied_paths: rules.sandbox.denied_paths.clone(),
                        chat: self.chat_base_url.clone().map(|base_url| Chat {
                            base_url,
                            model: self.chat_model.clone(),
                            api_key_env: self.chat_api_key_env.clone(),
                            ..Chat::default()
                        }),
                        ..Local::default()
                    })
                }
                "ssh" => {
                    p.ssh = Some(Ssh {
                        host: self.ssh_host.clone(),
                        port: self.ssh_port,
                        user: self.ssh_user.clone(),
                        key_path: self.ssh_key.clone(),
                        known_hosts: self.ssh_known_hosts.clone(),
                        host_keys: if self.ssh_accept_new { HostKeys::AcceptNew } else { HostKeys::Pinned },
                        ..Ssh::default()
                    })
                }
                "docker" => {
                    p.docker = Some(Docker {
                        image: self.docker_image.clone(),
                        network: self.docker_network.clone(),
                        ..Docker::default()
                    })
                }
                "openclaw" | "chathan" => {
                    p.openclaw = Some(OpenClaw { url: self.openclaw_url.clone(), ..OpenClaw::default() })
                }
                "" => {}
                other => anyhow::bail!("unknown provider {other:?}: choose from mock, local, ssh, docker, openclaw"),
            }
        }
        let mut c = skynet_executor::Config { providers: p, capacity: self.capacity.max(1), ..Default::default() };
        if let Some(id) = &self.id {
            c.id = id.clone();
        }
        Ok(c)
    }
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
            nats_creds_dir: None,
            nats_creds: None,
            durability: DurabilityArg::Durable,
            database_url,
            data_dir: PathBuf::from(".data"),
            policy_file: None,
            planner: PlannerArg::Rules,
            planner_memory_timeout_ms: 250,
            llm_base_url: "http://127.0.0.1:11434/v1".into(),
            llm_model: "qwen2.5-coder:7b".into(),
            llm_api_key_env: "SKYNET_LLM_API_KEY".into(),
            approval_timeout_secs: None,
            executor: ExecutorSettings::default(),
            sentinel: SentinelSettings::default(),
            initiative: InitiativeSettings::default(),
            telegram: TelegramSettings::default(),
            metrics_listen: None,
            api_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_token: None,
            api_open_reads: false,
        }
    }

    /// How to authenticate to the configured server (`nats_url`).
    pub fn nats_auth(&self) -> crate::infra::NatsAuth {
        use crate::infra::NatsAuth;
        match (&self.nats_creds_dir, &self.nats_creds) {
            (Some(dir), _) => NatsAuth::Dir(dir.clone()),
            (None, Some(file)) => NatsAuth::Single(skynet_bus::auth::Credential::from_file(file)),
            (None, None) => NatsAuth::None,
        }
    }

    /// The API token: configured, else the one in `<data-dir>/api-token`, else a
    /// new random one written there (mode 0600) for the CLI to find.
    pub fn api_token(&self) -> anyhow::Result<String> {
        if let Some(t) = self.api_token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(t.clone());
        }
        let path = self.data_dir.join("api-token");
        if let Ok(t) = std::fs::read_to_string(&path)
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_owned());
        }
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        std::fs::create_dir_all(&self.data_dir)?;
        std::fs::write(&path, &token)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(token)
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
        // SKYNET's own state (credentials, the API token, the log's store) and
        // tools are never a step's business, whatever the roots say.
        rules.deny([self.data_dir.clone(), PathBuf::from(".tools")]);
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
        skynet_planner::Config { backend, llm, memory_timeout_ms: self.planner_memory_timeout_ms, ..Default::default() }
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
