//! The job aggregate's events: every fact SKYNET records about a job, in the
//! order a job normally meets them.
//!
//! Each variant of [`JobEvent`] has a versioned CloudEvent type
//! (`skynet.job.<kind>.v1`) and a subject token (`skynet.job.<id>.<kind>`). The
//! table in [`job_events!`] is the single list; the enum, the type names, the
//! decoder and the schema list are all generated from it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::DecodeError;
use crate::ids::JobId;
use crate::plan::{ExecSpec, Plan, Risk};

/// A job was opened from an accepted task request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requested {
    pub intent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constraints: BTreeMap<String, serde_json::Value>,
    /// A plan supplied with the request, checked by the planner instead of planning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// `source` of the submitted CloudEvent (with `request_id`, derives the job id).
    pub request_source: String,
    /// `id` of the submitted CloudEvent.
    pub request_id: String,
}

/// The planner produced a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Planned {
    pub plan: Plan,
    /// Which backend produced it (`rules`, `llm:<model>`).
    pub planner: String,
    /// Set when the configured backend failed and the rules planned instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// The memories the planner was given (ids and scores): what memory
    /// contributed is in the event, never a silent change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memories: Vec<crate::memory::MemoryUsed>,
    /// Warnings drawn from memory ("the last 3 runs of run_tests here failed with …").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The planner could not produce a plan. Terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanningFailed {
    pub reason: String,
}

/// The policy service classified the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDecided {
    /// `false` when any step is blocked: the job ends denied.
    pub allowed: bool,
    /// Highest risk over the steps.
    pub risk: Risk,
    /// Risk of each step, in plan order.
    pub step_risks: Vec<Risk>,
    /// Whether a person must approve before dispatch.
    pub requires_approval: bool,
    /// How many distinct approvers are needed (0 when auto-approved).
    pub approvals_required: u8,
    /// Whether approval was given by policy (READ_ONLY auto-approval).
    pub auto_approved: bool,
    /// Every reason behind the decision, in order.
    pub reasons: Vec<String>,
    /// Indexes of blocked steps.
    #[serde(default)]
    pub blocked_steps: Vec<u32>,
    /// Seconds a person has to approve before the job is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_secs: Option<u64>,
}

/// One approver approved. The job is approved once enough distinct approvers have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approved {
    pub approver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A person (or the policy) denied the job. Terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Denied {
    pub by: String,
    pub reason: String,
}

/// The dispatcher turned the approved plan into an execution spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dispatched {
    pub spec: ExecSpec,
}

/// Score of one provider for one job (weights in the scheduler's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderScore {
    pub provider: String,
    pub total: f64,
    pub health: f64,
    pub load: f64,
    pub capability: f64,
    pub success: f64,
    pub latency: f64,
    /// Why this provider cannot run the job, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
}

/// The scheduler chose a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scheduled {
    pub provider: String,
    /// Every candidate's score, best first.
    pub scores: Vec<ProviderScore>,
}

/// An executor took the job and holds its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Started {
    pub executor: String,
    /// Fencing token: a result recorded under an older lease is refused.
    pub lease: u64,
}

/// A step began on an executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepStarted {
    pub step: u32,
    pub executor: String,
    pub lease: u64,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// A bounded chunk of a running step's output, for live watching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepOutput {
    pub step: u32,
    pub stream: OutputStream,
    /// Chunk number within the step, from 0.
    pub seq: u32,
    pub chunk: String,
}

/// A step finished with success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSucceeded {
    pub step: u32,
    pub exit_code: i32,
    pub duration_ms: u64,
    /// Where the full output is stored (object-store key), if stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_ref: Option<String>,
    /// The whole stdout, when it was small and the step quick (then it is
    /// neither streamed nor put in the object store: this event is its record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// The whole stderr, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    pub lease: u64,
}

/// A step finished with failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFailed {
    pub step: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub error: String,
    pub duration_ms: u64,
    /// The step was marked continue-on-error: the job goes on.
    #[serde(default)]
    pub continue_on_error: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_ref: Option<String>,
    /// The whole stdout, when small and quick (see [`StepSucceeded::stdout`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    pub lease: u64,
}

/// Every step ran and the job succeeded. Terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Succeeded {
    /// Steps that failed but were marked continue-on-error.
    #[serde(default)]
    pub tolerated_failures: Vec<u32>,
    /// The provider that ran the job (a scheduler signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Time from the executor taking the job to its end.
    #[serde(default)]
    pub duration_ms: u64,
}

/// The stage a job failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Planning,
    Policy,
    Dispatch,
    Scheduling,
    Execution,
    /// The job's log holds an event that does not decode, was recorded by a
    /// service that does not own its kind, or does not follow the job's state:
    /// it was skipped, and the job ends here instead of running on a log that
    /// cannot be trusted.
    Integrity,
}

/// The job failed. Terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Failed {
    pub stage: Stage,
    pub reason: String,
    /// The step that failed, for execution failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// The provider that ran the job, for execution failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// Someone asked to cancel a running job; the executor stops it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequested {
    pub by: String,
    pub reason: String,
}

/// The job was cancelled. Terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancelled {
    pub by: String,
    pub reason: String,
}

/// What ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutScope {
    Job,
    Step,
}

/// The job ran out of time. Terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimedOut {
    pub scope: TimeoutScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    pub limit_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// A file the plan named as an artifact was stored in the object store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactStored {
    /// Path as the plan named it (relative to the working directory).
    pub name: String,
    /// Object-store bucket and key.
    pub bucket: String,
    pub key: String,
    pub size_bytes: u64,
    pub content_type: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub lease: u64,
}

macro_rules! job_events {
    ($( $variant:ident($data:ty) = $kind:literal ),+ $(,)?) => {
        /// Every event of the job aggregate.
        #[derive(Debug, Clone, PartialEq)]
        pub enum JobEvent {
            $( $variant($data), )+
        }

        /// The kind of a [`JobEvent`], without its data.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum JobEventKind {
            $( $variant, )+
        }

        impl JobEventKind {
            /// Every kind, in lifecycle order.
            pub const ALL: &'static [JobEventKind] = &[$( JobEventKind::$variant, )+];

            /// The subject token: `skynet.job.<id>.<token>`.
            pub fn token(self) -> &'static str {
                match self { $( JobEventKind::$variant => $kind, )+ }
            }

            /// The versioned CloudEvent type.
            pub fn cloud_type(self) -> &'static str {
                match self { $( JobEventKind::$variant => concat!("skynet.job.", $kind, ".v1"), )+ }
            }

            /// The kind for a CloudEvent type, if it is a known job event.
            pub fn from_cloud_type(ty: &str) -> Option<JobEventKind> {
                match ty { $( concat!("skynet.job.", $kind, ".v1") => Some(JobEventKind::$variant), )+ _ => None }
            }
        }

        impl JobEvent {
            /// This event's kind.
            pub fn kind(&self) -> JobEventKind {
                match self { $( JobEvent::$variant(_) => JobEventKind::$variant, )+ }
            }

            /// The event's data as JSON.
            pub fn data_json(&self) -> serde_json::Value {
                // Serialising these plain structs cannot fail: no maps with
                // non-string keys, no custom serialisers.
                match self { $( JobEvent::$variant(d) => serde_json::to_value(d).unwrap_or_default(), )+ }
            }

            /// Decodes the data of a CloudEvent of type `ty`. Borrowed: the
            /// fields are read out of the tree, which is not copied first (a
            /// clone per event was most of decoding's allocations).
            pub fn decode(ty: &str, data: &serde_json::Value) -> Result<JobEvent, DecodeError> {
                let kind = JobEventKind::from_cloud_type(ty)
                    .ok_or_else(|| DecodeError::UnknownType(ty.to_owned()))?;
                match kind {
                    $( JobEventKind::$variant => <$data as serde::Deserialize>::deserialize(data)
                        .map(JobEvent::$variant)
                        .map_err(|e| DecodeError::Data { ty: ty.to_owned(), source: e }), )+
                }
            }

            /// [`JobEvent::decode`] from the data's JSON text, without a tree
            /// in between (see [`crate::raw`]).
            pub fn decode_json(ty: &str, data: &str) -> Result<JobEvent, DecodeError> {
                let kind = JobEventKind::from_cloud_type(ty)
                    .ok_or_else(|| DecodeError::UnknownType(ty.to_owned()))?;
                match kind {
                    $( JobEventKind::$variant => serde_json::from_str::<$data>(data)
                        .map(JobEvent::$variant)
                        .map_err(|e| DecodeError::Data { ty: ty.to_owned(), source: e }), )+
                }
            }

            /// JSON Schemas of every job event's data, keyed by CloudEvent type.
            pub fn schemas() -> Vec<(&'static str, schemars::Schema)> {
                vec![$( (concat!("skynet.job.", $kind, ".v1"), schemars::schema_for!($data)), )+]
            }
        }
    };
}

job_events! {
    Requested(Requested) = "requested",
    Planned(Planned) = "planned",
    PlanningFailed(PlanningFailed) = "planning_failed",
    PolicyDecided(PolicyDecided) = "policy_decided",
    Approved(Approved) = "approved",
    Denied(Denied) = "denied",
    Dispatched(Dispatched) = "dispatched",
    Scheduled(Scheduled) = "scheduled",
    Started(Started) = "started",
    StepStarted(StepStarted) = "step_started",
    StepOutput(StepOutput) = "step_output",
    StepSucceeded(StepSucceeded) = "step_succeeded",
    StepFailed(StepFailed) = "step_failed",
    ArtifactStored(ArtifactStored) = "artifact_stored",
    Succeeded(Succeeded) = "succeeded",
    Failed(Failed) = "failed",
    CancelRequested(CancelRequested) = "cancel_requested",
    Cancelled(Cancelled) = "cancelled",
    TimedOut(TimedOut) = "timed_out",
}

impl JobEvent {
    /// The subject this event is stored under.
    pub fn subject(&self, job: JobId) -> String {
        crate::subjects::job_event(job, self.kind().token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_its_type_name() {
        for k in JobEventKind::ALL {
            assert_eq!(JobEventKind::from_cloud_type(k.cloud_type()), Some(*k));
            assert!(k.cloud_type().ends_with(".v1"));
            assert!(!k.token().contains('.'));
        }
        assert_eq!(JobEventKind::from_cloud_type("skynet.job.planned.v9"), None);
    }

    #[test]
    fn decode_rejects_bad_data_with_the_type() {
        let err = JobEvent::decode("skynet.job.denied.v1", &serde_json::json!({"by": 1})).expect_err("bad data");
        assert!(err.to_string().contains("skynet.job.denied.v1"), "{err}");
    }
}
