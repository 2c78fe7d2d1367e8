//! What SKYNET knows about one job, rebuilt by folding its events.

use skynet_contract::job::{PolicyDecided, Requested};
use skynet_contract::{ExecSpec, JobId, Plan};

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Opened from a task request; waiting for a plan.
    Requested,
    /// Planned; waiting for the policy decision.
    Planned,
    /// The policy requires a person's approval.
    AwaitingApproval,
    /// Approved (by people or by policy); waiting for dispatch.
    Approved,
    /// Has an execution spec; waiting for a provider.
    Dispatched,
    /// Has a provider; waiting for an executor.
    Scheduled,
    /// An executor holds the job's lease and runs its steps.
    Running,
    /// Running, and a cancel was requested: the executor is stopping it.
    Cancelling,
    /// Terminal: every step succeeded (or failed tolerated).
    Succeeded,
    /// Terminal: planning, dispatch, scheduling or a step failed.
    Failed,
    /// Terminal: the policy or a person denied the job.
    Denied,
    /// Terminal: cancelled before or while running.
    Cancelled,
    /// Terminal: the job or a step ran out of time.
    TimedOut,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 13] = [
        Status::Requested,
        Status::Planned,
        Status::AwaitingApproval,
        Status::Approved,
        Status::Dispatched,
        Status::Scheduled,
        Status::Running,
        Status::Cancelling,
        Status::Succeeded,
        Status::Failed,
        Status::Denied,
        Status::Cancelled,
        Status::TimedOut,
    ];

    /// A terminal status admits no further event.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Denied | Status::Cancelled | Status::TimedOut)
    }

    /// The stable lower-case name used in read models and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Planned => "planned",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Approved => "approved",
            Status::Dispatched => "dispatched",
            Status::Scheduled => "scheduled",
            Status::Running => "running",
            Status::Cancelling => "cancelling",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Denied => "denied",
            Status::Cancelled => "cancelled",
            Status::TimedOut => "timed_out",
        }
    }
}

/// Progress of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// One step's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepState {
    pub status: StepStatus,
    pub continue_on_error: bool,
    /// Output chunks recorded so far (for bounded streaming).
    pub output_chunks: u32,
}

/// A job, as rebuilt from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub status: Status,
    pub request: Requested,
    pub plan: Option<Plan>,
    pub policy: Option<PolicyDecided>,
    /// Distinct approvers so far, in order.
    pub approvers: Vec<String>,
    pub spec: Option<ExecSpec>,
    pub provider: Option<String>,
    /// Executor holding the lease and the lease's fencing token.
    pub lease: Option<(String, u64)>,
    pub steps: Vec<StepState>,
    /// Number of events applied: the aggregate's version.
    pub version: u64,
}

impl Job {
    /// Whether every step has finished and none failed untolerated.
    pub fn all_steps_done(&self) -> bool {
        self.steps
            .iter()
            .all(|s| s.status == StepStatus::Succeeded || (s.status == StepStatus::Failed && s.continue_on_error))
    }

    /// The current lease's fencing token.
    pub fn lease_token(&self) -> Option<u64> {
        self.lease.as_ref().map(|(_, t)| *t)
    }
}
