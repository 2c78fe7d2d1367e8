//! Commands: requests to change a job that any client (API, CLI, Telegram, a
//! script) can send over NATS request/reply. A command is not a fact; the facts
//! it causes are job events. Every command gets a [`CommandReply`].
//!
//! Commands are plain JSON on their subject, validated against the schemas in
//! `schemas/` (`skynet.cmd.*.json`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::JobId;

/// Approve a job awaiting approval.
pub const APPROVE: &str = "skynet.cmd.job.approve";
/// Deny a job awaiting approval.
pub const DENY: &str = "skynet.cmd.job.deny";
/// Cancel a job that has not finished.
pub const CANCEL: &str = "skynet.cmd.job.cancel";
/// Single-action policy check (the predecessor's `/v1/policy/check`).
pub const POLICY_CHECK: &str = "skynet.policy.check";

/// Body of [`APPROVE`]. The approver recorded is the principal holding `token`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    pub job_id: JobId,
    /// The approver's API token (`skynet principal add`).
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// For ADMIN jobs: the confirmation phrase and the job's short id
    /// (`execute 1a2b3c4d`), as the approval request shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<String>,
}

/// Body of [`DENY`]. The denier recorded is the principal holding `token`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    pub job_id: JobId,
    pub token: String,
    #[serde(default = "default_deny_reason")]
    pub reason: String,
}

fn default_deny_reason() -> String {
    "denied".into()
}

/// Body of [`CANCEL`]. The canceller recorded is the principal holding
/// `token`: an approver may cancel any job, a submitter their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    pub job_id: JobId,
    pub token: String,
    #[serde(default = "default_cancel_reason")]
    pub reason: String,
}

fn default_cancel_reason() -> String {
    "cancelled by request".into()
}

/// The answer to every command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandReply {
    /// Whether the command took effect (its events are in the log).
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// The job's status after the command, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Stable error code when refused: `bad_request`, `unauthorized` (no or an
    /// unknown token), `forbidden` (the principal lacks the role, or approves
    /// its own job), `not_found`, `conflict`, `confirmation_required`,
    /// `confirmation_mismatch`, `unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What happened, in words.
    pub message: String,
}

/// Body of [`POLICY_CHECK`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyCheck {
    pub action: String,
    /// `laptop`, `ec2` or `docker`; accepted and ignored, as before.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// Answer of [`POLICY_CHECK`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyCheckReply {
    pub allowed: bool,
    pub reason: String,
    pub requires_approval: bool,
    /// `low`, `med` or `high`.
    pub risk_level: String,
}
