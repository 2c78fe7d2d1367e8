//! `skynet pause|resume`: the emergency stop from a terminal. A pause is an
//! event in the log by a principal of the admin role (the policy service
//! records it): dispatching waits, and unless `--keep-running`, every
//! dispatched job is cancelled by the executors. The same stop as the
//! Telegram bot's `/emergency_stop` and `POST /v1/system/pause`.

use clap::Args;
use skynet_contract::commands::CommandReply;
use skynet_contract::system::{self, SwitchSystem};

use super::ClientArgs;

/// `skynet pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    #[arg(long, default_value = "emergency stop")]
    pub reason: String,
    /// Only hold new dispatching; let jobs already dispatched finish.
    #[arg(long)]
    pub keep_running: bool,
}

/// `skynet resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[arg(long, default_value = "resumed")]
    pub reason: String,
}

const START: &str = "the policy service answers it: start it (`skynet up` or `skynet run policy`)";

/// Pauses (`Some(args)`) or resumes.
pub async fn run(pause: Option<PauseArgs>, resume_reason: Option<String>, c: &ClientArgs) -> anyhow::Result<i32> {
    let client = c.connect().await?;
    let token = c.required_token()?;
    // One id for this command: a retry records nothing twice.
    let command_id = uuid::Uuid::new_v4().to_string();
    let (subject, body) = match pause {
        Some(p) => {
            (system::PAUSE, SwitchSystem { token, reason: p.reason, command_id, cancel_running: !p.keep_running })
        }
        None => (
            system::RESUME,
            SwitchSystem { token, reason: resume_reason.unwrap_or_default(), command_id, cancel_running: false },
        ),
    };
    let reply: CommandReply = c.ask(&client, subject, serde_json::to_vec(&body)?, "policy", START).await?;
    super::command_reply(&reply, c)
}
