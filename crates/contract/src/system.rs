//! The system-wide pause: the emergency stop people hold over SKYNET as a whole.
//!
//! A pause is a [`PAUSED`] event, a resume a [`RESUMED`] event, both on the one
//! subject [`CONTROL_SUBJECT`] of the log, recorded by the policy service for a
//! principal of the admin role who sent [`PAUSE`] / [`RESUME`] (from the CLI,
//! the HTTP API, the Telegram bot or any NATS client). The newest event on the
//! subject is the state. While paused, the dispatcher holds approved jobs
//! (they are accepted, planned and decided, then wait); a pause that stops
//! running work also makes every executor cancel what it runs and refuse what
//! reaches it, naming the principal. The stop lives in the log, so it does not
//! depend on whichever front end asked for it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who records the switch.
pub const SOURCE: &str = "skynet/policy";
/// Type of a pause.
pub const PAUSED: &str = "skynet.system.paused.v1";
/// Type of a resume.
pub const RESUMED: &str = "skynet.system.resumed.v1";
/// The one subject both are stored on: its newest message is the state.
pub const CONTROL_SUBJECT: &str = "skynet.system.control";
/// Command: pause (request/reply, answered by the policy service).
pub const PAUSE: &str = "skynet.cmd.system.pause";
/// Command: resume.
pub const RESUME: &str = "skynet.cmd.system.resume";

/// The data of a pause or a resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SystemSwitched {
    /// The principal who switched.
    pub by: String,
    /// Why, as they said it (control characters replaced, at most 500 characters).
    #[serde(default)]
    pub reason: String,
    /// A pause that also cancels every job already dispatched (the emergency
    /// stop); without it, only new dispatching waits. Always false on a resume.
    #[serde(default)]
    pub cancel_running: bool,
}

/// The body of [`PAUSE`] and [`RESUME`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchSystem {
    /// The sender's API token: the principal must hold the admin role.
    pub token: String,
    #[serde(default)]
    pub reason: String,
    /// Chosen by the sender: the same command sent again (a lost reply) is
    /// the same event, stored once.
    pub command_id: String,
    /// Pause only: cancel every dispatched job too (default: yes, the emergency stop).
    #[serde(default = "yes")]
    pub cancel_running: bool,
}

fn yes() -> bool {
    true
}

/// The state the newest control event gives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SystemState {
    pub paused: bool,
    /// The newest switch, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<SystemSwitched>,
    /// When it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its stream sequence in the log (0: never switched).
    #[serde(default)]
    pub seq: u64,
}

impl SystemState {
    /// Whether running work must stop (an emergency stop in force).
    pub fn stops_running(&self) -> bool {
        self.paused && self.last.as_ref().is_some_and(|l| l.cancel_running)
    }

    /// Folds one control event (its CloudEvent type and data) in.
    pub fn apply(ty: &str, data: SystemSwitched, at: chrono::DateTime<chrono::Utc>, seq: u64) -> Option<SystemState> {
        let paused = match ty {
            PAUSED => true,
            RESUMED => false,
            _ => return None,
        };
        Some(SystemState { paused, last: Some(data), at: Some(at), seq })
    }
}
