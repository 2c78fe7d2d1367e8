//! The initiative service's contract: what it decided on its own, and the kill
//! switch people hold over it.
//!
//! Every evaluation that proposes work — or would have, but a limit or the
//! strategy's own rules held it back — is a [`DECIDED`] event on
//! `skynet.initiative.<strategy>.decided`, with the facts it looked at. A
//! proposal goes through the front door: a task submission like anyone's, with
//! [`SOURCE`] as its CloudEvent `source`, so planning, policy, approval and the
//! audit apply unchanged. Pausing and resuming are [`PAUSED`] / [`RESUMED`]
//! events on the same ledger (`skynet.initiative.>`), which is one aggregate:
//! every writer appends with the ledger's last sequence as its expectation, so
//! two initiative processes can never both take the last slot of a limit.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::JobId;
use crate::plan::Plan;

/// CloudEvent `source` of the initiative service, and of the tasks it submits.
pub const SOURCE: &str = "skynet/initiative";
/// CloudEvent type of one evaluation's outcome for one strategy.
pub const DECIDED: &str = "skynet.initiative.decided.v1";
/// CloudEvent type: a person paused the initiative (the kill switch).
pub const PAUSED: &str = "skynet.initiative.paused.v1";
/// CloudEvent type: a person resumed it.
pub const RESUMED: &str = "skynet.initiative.resumed.v1";
/// Command (request/reply, [`SwitchInitiative`]): pause.
pub const PAUSE: &str = "skynet.cmd.initiative.pause";
/// Command (request/reply, [`SwitchInitiative`]): resume.
pub const RESUME: &str = "skynet.cmd.initiative.resume";
/// Request/reply: the initiative's state ([`InitiativeStatus`]).
pub const STATUS: &str = "skynet.initiative.status";
/// Every stored event of the ledger (the optimistic-concurrency filter).
pub const LEDGER: &str = "skynet.initiative.>";
/// Where pauses are stored.
pub const PAUSED_SUBJECT: &str = "skynet.initiative.control.paused";
/// Where resumes are stored.
pub const RESUMED_SUBJECT: &str = "skynet.initiative.control.resumed";

/// Where `strategy`'s decisions are stored.
pub fn decided_subject(strategy: Strategy) -> String {
    format!("skynet.initiative.{}.decided", strategy.as_str())
}

/// What the initiative can propose. Each has its trigger and its plan of
/// catalog actions (the service's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Idle long enough and a day since the last: look the system over.
    Maintenance,
    /// Failures are waiting to be looked at.
    Recovery,
    /// Idle, an opportunity, two days since the last: an optimisation review.
    Optimization,
}

impl Strategy {
    /// In the order they are evaluated.
    pub const ALL: [Strategy; 3] = [Strategy::Maintenance, Strategy::Recovery, Strategy::Optimization];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Maintenance => "maintenance",
            Strategy::Recovery => "recovery",
            Strategy::Optimization => "optimization",
        }
    }
}

/// How an evaluation of one strategy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its conditions held and it was within every limit: a task was submitted.
    Submitted,
    /// Its conditions held, but a limit (per hour, per day, at once) held it back.
    Limited,
}

/// A failure the initiative saw (a memory failure pattern of the last 24 h).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SeenFailure {
    pub job_id: JobId,
    /// The catalog action that failed.
    pub action: String,
    /// The normalised error message.
    pub message: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// What the initiative knew when it decided: from the read models, the memory
/// tables, the executors' heartbeats, the sentinel's alerts and its own ledger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Facts {
    /// Jobs running (or being cancelled) now.
    pub active_jobs: u64,
    /// Jobs opened and not yet running or finished.
    pub pending_jobs: u64,
    /// Seconds since the last job activity (or since the service started, when
    /// no job ever ran).
    pub idle_secs: u64,
    /// Failures of people's jobs (never the initiative's own) since the later
    /// of 24 h ago and the last recovery task, newest first, at most 10.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_errors: Vec<SeenFailure>,
    /// Failed runs / all runs of the last 24 h (memory's task executions); 0 when none.
    pub failure_rate_24h: f64,
    pub executors_online: u64,
    /// Executors running as many jobs as they can.
    pub executors_busy: u64,
    /// Reusable success strategies known to memory.
    pub success_strategies: u64,
    /// Alerts firing now (summaries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts_firing: Vec<String>,
    /// Hours since each strategy last submitted a task, for those that did in
    /// the ledger's window.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hours_since_last: BTreeMap<Strategy, f64>,
}

/// The limits and where the ledger stood against them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    /// Tasks submitted in the last hour / the last 24 h.
    pub last_hour: u32,
    pub last_day: u32,
    /// Initiative jobs not finished.
    pub running: u32,
    /// The limits themselves.
    pub per_hour: u32,
    pub per_day: u32,
    pub concurrent: u32,
}

/// `data` of [`DECIDED`]. Unknown fields are allowed: the ledger is read by
/// every initiative process, an older one included, and a decision it cannot
/// read would not count against its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decided {
    pub strategy: Strategy,
    pub outcome: Outcome,
    /// Why the strategy triggered ("idle 312 s, 25.0 h since the last maintenance").
    pub reason: String,
    /// For [`Outcome::Limited`]: the limit that held it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    pub facts: Facts,
    pub counts: Counts,
    /// For [`Outcome::Submitted`]: the job the submission opens (derived from
    /// [`SOURCE`] and this event's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// For [`Outcome::Submitted`]: what was submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// `data` of [`PAUSED`] and [`RESUMED`] (unknown fields allowed, as in [`Decided`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Switched {
    /// The principal who flipped the switch.
    pub by: String,
    pub reason: String,
}

/// Request of [`PAUSE`] and [`RESUME`]: needs a token of the `approve` role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchInitiative {
    pub token: String,
    #[serde(default)]
    pub reason: String,
    /// The client's id for this command: a retry with the same id records
    /// nothing twice.
    pub command_id: String,
}

/// One strategy in [`InitiativeStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StrategyStatus {
    pub strategy: Strategy,
    pub enabled: bool,
    /// The last task it submitted (in the ledger's window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_submitted: Option<DateTime<Utc>>,
    /// Its last decision of any outcome: when, how, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<(DateTime<Utc>, Outcome, String)>,
    /// What an evaluation now would do, in words ("would submit: …", "waits:
    /// idle 40 s of 300 s").
    pub now: String,
}

/// Reply of [`STATUS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InitiativeStatus {
    pub paused: bool,
    /// Who paused or resumed last, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched: Option<(DateTime<Utc>, Switched)>,
    pub counts: Counts,
    pub strategies: Vec<StrategyStatus>,
    /// The facts the answer used (none when they could not be gathered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
    /// Seconds between evaluations.
    pub interval_secs: u64,
    /// Why the facts are missing, when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
