//! `skynet approve|deny|cancel <id>`: commands over NATS request/reply; the
//! reply says whether it took effect, and the exit code follows it.

use clap::Args;
use skynet_contract::JobId;
use skynet_contract::commands::{self, CommandReply};

use super::ClientArgs;

/// `skynet approve|deny|cancel`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    pub id: String,
    /// Why (deny, cancel) or a comment (approve).
    #[arg(long)]
    pub reason: Option<String>,
    /// For ADMIN jobs: the confirmation phrase and the job's short id, as the
    /// approval request shows it (`--confirm "execute 1a2b3c4d"`).
    #[arg(long)]
    pub confirm: Option<String>,
}

/// Which command.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    Approve,
    Deny,
    Cancel,
}

pub async fn run(verb: Verb, args: ControlArgs, c: &ClientArgs) -> anyhow::Result<i32> {
    let job: JobId = args.id.parse().map_err(|_| anyhow::anyhow!("{:?} is not a job id (a UUID)", args.id))?;
    // Who acts is the principal of the token.
    let token = c.required_token()?;
    let (subject, body) = match verb {
        Verb::Approve => (
            commands::APPROVE,
            serde_json::to_vec(&commands::Approve {
                job_id: job,
                token,
                comment: args.reason,
                confirmation: args.confirm,
            })?,
        ),
        Verb::Deny => (
            commands::DENY,
            serde_json::to_vec(&commands::Deny {
                job_id: job,
                token,
                reason: args.reason.unwrap_or_else(|| "denied".into()),
            })?,
        ),
        Verb::Cancel => (
            commands::CANCEL,
            serde_json::to_vec(&commands::Cancel {
                job_id: job,
                token,
                reason: args.reason.unwrap_or_else(|| "cancelled by request".into()),
            })?,
        ),
    };
    let client = c.connect().await?;
    let reply: CommandReply =
        c.ask(&client, subject, body, "policy", "start `skynet up` or `skynet run policy`").await?;
    if c.json {
        super::emit(serde_json::to_string(&reply)?);
    } else if reply.accepted {
        super::emit(format!("{} ({})", c.style().ok(&reply.message), reply.status.unwrap_or_default()));
    } else {
        eprintln!("{}: {}", c.style().bad("refused"), reply.message);
        if reply.code.as_deref() == Some("confirmation_required") {
            eprintln!("ADMIN jobs need the confirmation phrase: skynet approve {job} --confirm <phrase>");
        }
    }
    Ok(if reply.accepted { 0 } else { 1 })
}
