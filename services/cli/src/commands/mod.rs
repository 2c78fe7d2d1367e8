//! The client subcommands: they publish submissions and commands on NATS and
//! read the log and the read models; they never call a service directly.

pub mod alerts;
pub mod control;
pub mod initiative;
pub mod jobs;
pub mod memory;
pub mod principal;
pub mod status;
pub mod system;
pub mod task;
pub mod watch;

use std::io::IsTerminal;

use anyhow::Context;
use clap::Args;
use skynet_bus::auth::{self, Credential};

use crate::render::Style;

/// Where the running system is, and how to print.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// NATS of the running system (`skynet up` listens on 4333).
    #[arg(long, env = "SKYNET_NATS_URL", default_value = "nats://127.0.0.1:4333", global = true)]
    pub nats_url: String,
    /// NATS credential of the `client` role (nkey seed or `.creds` file).
    /// Unset: `<data-dir>/nats-creds/client.nk` when it exists (what `skynet up`
    /// generates), else none.
    #[arg(long, env = "SKYNET_NATS_CREDS", global = true)]
    pub nats_creds: Option<std::path::PathBuf>,
    /// Your API token: who you are to SKYNET (`skynet principal add`). Default:
    /// the first admin token `skynet up` wrote to `<data-dir>/api-token`.
    #[arg(long, env = "SKYNET_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Where `skynet up` keeps its state (to find the client credential).
    #[arg(long, env = "SKYNET_DATA_DIR", default_value = ".data", global = true)]
    pub data_dir: std::path::PathBuf,
    /// Read-model database (for `jobs` and `job`).
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// No colors (also when `NO_COLOR` is set or output is not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,
}

impl ClientArgs {
    pub fn style(&self) -> Style {
        Style {
            color: !self.no_color
                && !self.json
                && std::env::var_os("NO_COLOR").is_none()
                && std::io::stdout().is_terminal(),
        }
    }

    /// The credential the CLI connects with (role `client`).
    pub fn credential(&self) -> Credential {
        let generated = self.data_dir.join("nats-creds").join(format!("{}.nk", auth::CLIENT));
        match &self.nats_creds {
            Some(file) => Credential::from_file(file),
            None if generated.exists() => Credential::SeedFile(generated),
            None => Credential::None,
        }
    }

    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        auth::connect(&self.nats_url, &self.credential(), auth::CLIENT, "skynet-cli").await.with_context(|| {
            format!(
                "cannot reach SKYNET's NATS at {} — is `skynet up` running? (set SKYNET_NATS_URL, and \
                 SKYNET_NATS_CREDS to the client credential)",
                self.nats_url
            )
        })
    }

    /// The API token: `--token`, else `<data-dir>/api-token` if there is one.
    pub fn api_token(&self) -> Option<String> {
        self.token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| std::fs::read_to_string(self.data_dir.join("api-token")).ok().map(|t| t.trim().to_owned()))
    }

    /// The API token, or an error saying where it was looked for.
    pub fn required_token(&self) -> anyhow::Result<String> {
        self.api_token().with_context(|| {
            format!("no --token (SKYNET_TOKEN) and none in {}", self.data_dir.join("api-token").display())
        })
    }

    /// Asks `service` (its `skynet run` name) on `subject`, waiting up to 10 s;
    /// `start` says how to start it when nobody answers.
    pub async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        client: &async_nats::Client,
        subject: &'static str,
        body: Vec<u8>,
        service: &str,
        start: &str,
    ) -> anyhow::Result<T> {
        let reply = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(subject, body.into()))
            .await
            .with_context(|| format!("the {service} service did not answer within 10 s"))?
            .with_context(|| format!("no {service} service is running ({start})"))?;
        serde_json::from_slice(&reply.payload)
            .with_context(|| format!("an unreadable answer from the {service} service"))
    }

    pub async fn db(&self) -> anyhow::Result<sqlx::PgPool> {
        crate::infra::connect_db(self.database_url.as_deref()).await
    }
}

/// Shows a command's reply (the message, or why it was refused); the exit code.
pub fn command_reply(reply: &skynet_contract::commands::CommandReply, c: &ClientArgs) -> anyhow::Result<i32> {
    if c.json {
        emit(serde_json::to_string_pretty(reply)?);
    } else if reply.accepted {
        emit(c.style().ok(&reply.message));
    } else {
        eprintln!("{} ({}): {}", c.style().bad("refused"), reply.code.as_deref().unwrap_or("?"), reply.message);
    }
    Ok(if reply.accepted { 0 } else { 1 })
}

/// Prints a line on stdout. Returns false once stdout is gone (`skynet watch |
/// head`): callers stop or carry on quietly instead of panicking like `println!`.
pub fn emit(line: impl std::fmt::Display) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}
