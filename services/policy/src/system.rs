//! The emergency stop: `skynet.cmd.system.pause` / `.resume`, from a principal
//! of the admin role, recorded as `skynet.system.paused|resumed` on
//! `skynet.system.control` in the log. The policy answers them because it
//! already verifies every person's command; it does not enforce the pause
//! itself (the dispatcher holds approved jobs, executors stop running ones).

use chrono::Utc;
use skynet_contract::Envelope;
use skynet_contract::commands::CommandReply;
use skynet_contract::ids::event_id;
use skynet_contract::principal::PrincipalRole;
use skynet_contract::system::{self, SwitchSystem, SystemSwitched};
use tracing::{info, warn};

use crate::commands::CommandDeps;

/// The longest reason kept with a switch.
const MAX_REASON: usize = 500;

fn refused(code: &str, message: impl Into<String>) -> CommandReply {
    CommandReply { accepted: false, job_id: None, status: None, code: Some(code.into()), message: message.into() }
}

/// Records a pause (`pause`) or a resume by the token's principal.
pub async fn switch(deps: &CommandDeps, pause: bool, payload: &[u8]) -> CommandReply {
    let cmd = match serde_json::from_slice::<SwitchSystem>(payload) {
        Ok(c) => c,
        Err(e) => return refused("bad_request", format!("not a pause or resume: {e}")),
    };
    if cmd.command_id.is_empty() || cmd.command_id.len() > 200 {
        return refused("bad_request", "command_id: 1 to 200 bytes");
    }
    let word = if pause { "pause" } else { "resume" };
    let by = match deps.principals.verify(&cmd.token).await {
        Ok(Some(p)) if p.has(PrincipalRole::Admin) => p.name,
        Ok(Some(p)) => return refused("forbidden", format!("cannot {word}: {} does not hold the admin role", p.name)),
        Ok(None) => return refused("unauthorized", format!("cannot {word}: unknown token")),
        Err(e) => return refused("unavailable", format!("cannot {word} now: {e}")),
    };
    let reason: String = cmd.reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_REASON).collect();
    let cancel_running = pause && cmd.cancel_running;
    let (ty, status) = if pause { (system::PAUSED, "paused") } else { (system::RESUMED, "resumed") };
    let data = SystemSwitched { by: by.clone(), reason: reason.clone(), cancel_running };
    // A retry of the same command (a lost reply) is the same event, stored once.
    let id = event_id(&["system.switch", status, &by, &cmd.command_id]);
    let env = match Envelope::new(ty, id, system::SOURCE, Some("system".into()), Utc::now(), &data) {
        Ok(env) => env,
        Err(e) => return refused("internal", e.to_string()),
    };
    let js = async_nats::jetstream::new(deps.nats.clone());
    match skynet_bus::publish(&js, system::CONTROL_SUBJECT, &env).await {
        Ok(seq) => {
            info!(service = "policy", seq, by = %by, cancel_running, %reason, "system {status}");
            let what = match (pause, cancel_running) {
                (true, true) => "dispatching paused; executors cancel every job they run or are handed until a resume",
                (true, false) => "dispatching paused; dispatched jobs run on",
                (false, _) => "dispatching resumed",
            };
            CommandReply {
                accepted: true,
                job_id: None,
                status: Some(status.into()),
                code: None,
                message: format!("system {status} by {by}: {what}"),
            }
        }
        Err(e) => {
            warn!(service = "policy", error = %e, "could not record a system switch");
            refused("unavailable", format!("cannot record the {word} now: {e}"))
        }
    }
}
