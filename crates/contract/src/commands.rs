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

/// Body of [`APPROVE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    pub job_id: JobId,
    /// Who approves (recorded in the `approved` event).
    pub approver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The confirmation phrase, required for ADMIN jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<String>,
}

/// Body of [`DENY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    pub job_id: JobId,
    pub by: String,
    #[serde(default = "default_deny_reason")]
    pub reason: String,
}

fn default_deny_reason() -> String {
    "denied".into()
}

/// Body of [`CANCEL`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    pub job_id: JobId,
    pub by: String,
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
    /// Stable error code when refused: `bad_request`, `not_found`, `conflict`,
    /// `confirmation_required`, `confirmation_mismatch`, `unavailable`.
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
