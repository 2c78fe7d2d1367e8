//! Task submission: the one input SKYNET accepts from the outside world, and the
//! record of a submission it refused.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::JobId;

/// The CloudEvent type of a task submission. The bare name
/// [`TASK_REQUESTED_ALIAS`] is accepted as the same version.
pub const TASK_REQUESTED: &str = "skynet.task.requested.v1";
/// The unversioned spelling, accepted as v1 for hand-written clients.
pub const TASK_REQUESTED_ALIAS: &str = "skynet.task.requested";
/// The CloudEvent type recording a refused submission.
pub const TASK_REJECTED: &str = "skynet.task.rejected.v1";
/// The largest submission the intake accepts, in bytes (payload plus headers).
pub const MAX_SUBMISSION_BYTES: usize = 1024 * 1024;

/// `data` of a `skynet.task.requested.v1` submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRequested {
    /// What the person wants, in plain language. Must not be empty.
    pub intent: String,
    /// Directory the job's steps run in; must lie inside a sandbox root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Project the job belongs to, for grouping and filtering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Who asked, as the submitter claims it. A client's claim is recorded as
    /// `<claim> (unverified)`; a submission with an `Authorization: Bearer
    /// <token>` header is requested by the token's principal instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Free-form constraints for the planner (time budget, allowed targets, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constraints: BTreeMap<String, serde_json::Value>,
    /// A plan the submitter already has (every step with a catalog action). The
    /// planner checks it instead of planning; policy and approval apply as usual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::plan::Plan>,
}

/// Request/reply subject of plan previews (a plan without a job).
pub const PLAN_PREVIEW: &str = "skynet.planner.preview";

/// Request of [`PLAN_PREVIEW`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanPreview {
    pub intent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// Reply of [`PLAN_PREVIEW`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanPreviewReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::plan::Plan>,
    pub planner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Why there is no plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// CloudEvent type of an execution report sent by an outside agent (`/v1/report`).
pub const REPORT_RECEIVED: &str = "skynet.report.received.v1";

/// `data` of [`REPORT_RECEIVED`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReportReceived {
    pub request_id: String,
    pub step_reports: Vec<serde_json::Value>,
    pub overall_status: String,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Why a submission was refused. The variants are stable codes; the detail says
/// what exactly was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// Payload over [`MAX_SUBMISSION_BYTES`].
    TooLarge,
    /// Payload is not JSON (structured mode) or not decodable.
    NotJson,
    /// JSON, but not a valid CloudEvent 1.0.
    NotCloudEvent,
    /// A CloudEvent of a type or version the intake does not accept.
    UnknownType,
    /// The data does not match the schema (missing, empty or unknown fields).
    InvalidData,
    /// The requester is over its rate limit.
    RateLimited,
    /// A client claimed a `source` reserved for SKYNET's own services (`skynet/...`).
    ReservedSource,
    /// The submission carried an `Authorization` token no principal holds.
    Unauthorized,
}

impl RejectionCode {
    /// The stable code string, as carried in the dead-letter headers.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionCode::TooLarge => "too_large",
            RejectionCode::NotJson => "not_json",
            RejectionCode::NotCloudEvent => "not_cloudevent",
            RejectionCode::UnknownType => "unknown_type",
            RejectionCode::InvalidData => "invalid_data",
            RejectionCode::RateLimited => "rate_limited",
            RejectionCode::ReservedSource => "reserved_source",
            RejectionCode::Unauthorized => "unauthorized",
        }
    }
}

/// `data` of a `skynet.task.rejected.v1` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRejected {
    /// Stable reason code.
    pub code: RejectionCode,
    /// Human-readable reason.
    pub reason: String,
    /// The job the request would have opened, when the request was identifiable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// The submitted CloudEvent's `source`, when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_source: Option<String>,
    /// The submitted CloudEvent's `id`, when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Stream sequence of the original message in the dead-letter stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_seq: Option<u64>,
}
