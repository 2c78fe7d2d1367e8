//! `skynet initiative pause|resume|status`: the kill switch over the
//! initiative service (a pause is an event in its ledger, by a principal of
//! the approve role) and what it did, holds and would do next.

use clap::{Args, Subcommand};
use skynet_contract::commands::CommandReply;
use skynet_contract::initiative::{self, InitiativeStatus, SwitchInitiative};

use super::ClientArgs;
use crate::render::Style;

/// `skynet initiative`.
#[derive(Debug, Args)]
pub struct InitiativeArgs {
    #[command(subcommand)]
    pub what: InitiativeCmd,
}

#[derive(Debug, Subcommand)]
pub enum InitiativeCmd {
    /// Stop it submitting anything new, at once (approve role).
    Pause {
        #[arg(long, default_value = "paused by request")]
        reason: String,
    },
    /// Let it submit again (approve role).
    Resume {
        #[arg(long, default_value = "resumed by request")]
        reason: String,
    },
    /// Strategies, their last decisions, the counts against the limits, and
    /// what would trigger next.
    Status,
}

const START: &str = "enable it: SKYNET_INITIATIVE=true with `skynet up`, or `skynet run initiative`";

pub async fn run(args: InitiativeArgs, c: &ClientArgs) -> anyhow::Result<i32> {
    let client = c.connect().await?;
    let (subject, reason) = match args.what {
        InitiativeCmd::Status => return status(&client, c).await,
        InitiativeCmd::Pause { reason } => (initiative::PAUSE, reason),
        InitiativeCmd::Resume { reason } => (initiative::RESUME, reason),
    };
    let token = c.required_token()?;
    // One id for this command: a retry records nothing twice.
    let command_id = uuid::Uuid::new_v4().to_string();
    let body = serde_json::to_vec(&SwitchInitiative { token, reason, command_id })?;
    let reply: CommandReply = c.ask(&client, subject, body, "initiative", START).await?;
    super::command_reply(&reply, c)
}

async fn status(client: &async_nats::Client, c: &ClientArgs) -> anyhow::Result<i32> {
    let status: InitiativeStatus = c.ask(client, initiative::STATUS, Vec::new(), "initiative", START).await?;
    if c.json {
        super::emit(serde_json::to_string_pretty(&status)?);
    } else {
        super::emit(render(&status, c.style()).trim_end());
    }
    Ok(if status.error.is_some() { 1 } else { 0 })
}

/// The human view.
pub fn render(s: &InitiativeStatus, style: Style) -> String {
    let mut out = String::new();
    let state = match (&s.switched, s.paused) {
        (Some((at, w)), true) => {
            style.warn(&format!("PAUSED by {} at {} ({})", w.by, at.format("%Y-%m-%d %H:%M:%S"), w.reason))
        }
        (Some((at, w)), false) => {
            style.ok(&format!("running (resumed by {} at {})", w.by, at.format("%Y-%m-%d %H:%M:%S")))
        }
        (None, _) => style.ok("running"),
    };
    out.push_str(&format!("initiative: {state}, evaluating every {} s\n", s.interval_secs));
    let c = &s.counts;
    out.push_str(&format!(
        "limits: {}/{} in the last hour, {}/{} in 24 h, {}/{} running\n",
        c.last_hour, c.per_hour, c.last_day, c.per_day, c.running, c.concurrent
    ));
    if let Some(e) = &s.error {
        out.push_str(&style.bad(&format!("cannot evaluate now: {e}\n")));
    }
    for st in &s.strategies {
        let name = format!("{:<13}", st.strategy.as_str());
        out.push_str(&format!("{}  {}\n", if st.enabled { name } else { style.dim(&name) }, st.now));
        if let Some((at, outcome, why)) = &st.last_decision {
            let outcome = match outcome {
                initiative::Outcome::Submitted => "submitted",
                initiative::Outcome::Limited => "held by a limit",
            };
            out.push_str(&format!("    last: {outcome} at {} ({why})\n", at.format("%Y-%m-%d %H:%M:%S")));
        }
    }
    if let Some(f) = &s.facts {
        out.push_str(&format!(
            "facts: {} active, {} pending, idle {} s, {} failures waiting, failure rate {:.0} %, executors {}/{} busy, {} alerts firing\n",
            f.active_jobs,
            f.pending_jobs,
            f.idle_secs,
            f.pending_errors.len(),
            f.failure_rate_24h * 100.0,
            f.executors_busy,
            f.executors_online,
            f.alerts_firing.len()
        ));
    }
    out
}
