//! The read-model rows and how each event changes them. Pure: no database here.
//!
//! Rows are read from Postgres as JSON (`to_jsonb`) and the rarer ones written
//! as JSON (`json_populate_recordset`), so one statement reads or writes a whole
//! batch; that is the only reason these storage types derive serde. Jobs and
//! steps are written as binary arrays (`db.rs`) or binary `COPY` (`bulk.rs`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use skynet_contract::job::JobEvent;
use skynet_contract::{JobId, RawEnvelope};
use skynet_job::Status;
use uuid::Uuid;

/// A row of `jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    pub id: Uuid,
    pub status: String,
    pub intent: String,
    pub requested_by: Option<String>,
    pub project: Option<String>,
    pub working_dir: Option<String>,
    pub request_source: String,
    pub request_id: String,
    pub planner: Option<String>,
    pub plan_summary: Option<String>,
    pub fallback_reason: Option<String>,
    pub artifacts_expected: Option<serde_json::Value>,
    pub risk: Option<String>,
    pub requires_approval: Option<bool>,
    pub approvals_required: Option<i16>,
    pub approvers: serde_json::Value,
    pub policy_reasons: Option<serde_json::Value>,
    pub provider: Option<String>,
    pub executor: Option<String>,
    pub lease: Option<i64>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub planned_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    pub approved_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub last_seq: i64,
    pub event_count: i32,
}

/// A row of `steps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    pub job_id: Uuid,
    pub idx: i32,
    pub title: String,
    pub action: Option<String>,
    pub params: Option<serde_json::Value>,
    pub risk: Option<String>,
    pub status: String,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub output_ref: Option<String>,
    pub output_chunks: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Output of a quick step, from its result event.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

/// Rows only ever inserted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRow {
    pub seq: i64,
    pub job_id: Uuid,
    pub decision: String,
    pub actor: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArtifactRow {
    pub job_id: Uuid,
    pub name: String,
    pub bucket: String,
    pub key: String,
    pub size_bytes: i64,
    pub content_type: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectionRow {
    pub seq: i64,
    pub code: String,
    pub reason: String,
    pub job_id: Option<Uuid>,
    pub request_source: Option<String>,
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// Executor activity seen in this batch (added to the stored counts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutorDelta {
    pub id: String,
    pub jobs_started: i64,
    pub last_job: Uuid,
    pub last_seen: DateTime<Utc>,
}

/// Everything one batch changes, starting from the stored rows it touches.
#[derive(Debug, Default)]
pub struct Batch {
    pub jobs: HashMap<Uuid, JobRow>,
    pub steps: HashMap<(Uuid, i32), StepRow>,
    pub approvals: Vec<ApprovalRow>,
    pub artifacts: Vec<ArtifactRow>,
    pub rejections: Vec<RejectionRow>,
    pub executors: HashMap<String, ExecutorDelta>,
}

fn step_mut(steps: &mut HashMap<(Uuid, i32), StepRow>, job: Uuid, idx: u32) -> Option<&mut StepRow> {
    steps.get_mut(&(job, i32::try_from(idx).unwrap_or(i32::MAX)))
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Batch {
    /// Applies one event (already decoded) stored at `seq`.
    pub fn apply(&mut self, seq: u64, env: &RawEnvelope) {
        if env.ty == skynet_contract::task::TASK_REJECTED {
            if let Ok(r) = env.data_as::<skynet_contract::task::TaskRejected>() {
                self.rejections.push(RejectionRow {
                    seq: i64_of(seq),
                    code: r.code.as_str().into(),
                    reason: r.reason,
                    job_id: r.job_id.map(|j| j.0),
                    request_source: r.request_source,
                    request_id: r.request_id,
                    at: env.time,
                });
            }
            return;
        }
        let Ok((job, event)) = env.job_event() else { return };
        // The audit row keeps what the log holds; the job's rows fold only
        // events recorded by the service that owns their kind.
        if let Some(reason) = skynet_contract::owners::wrong_source(event.kind(), &env.source) {
            tracing::warn!(seq, job = %job, %reason, "event not folded into the read models");
            return;
        }
        self.apply_job(seq, env.time, job, &event);
    }

    fn apply_job(&mut self, seq: u64, at: DateTime<Utc>, job: JobId, event: &JobEvent) {
        let id = job.0;
        if let JobEvent::Requested(r) = event {
            self.jobs.entry(id).or_insert_with(|| JobRow {
                id,
                status: Status::Requested.as_str().into(),
                intent: r.intent.clone(),
                requested_by: r.requested_by.clone(),
                project: r.project.clone(),
                working_dir: r.working_dir.clone(),
                request_source: r.request_source.clone(),
                request_id: r.request_id.clone(),
                planner: None,
                plan_summary: None,
                fallback_reason: None,
                artifacts_expected: None,
                risk: None,
                requires_approval: None,
                approvals_required: None,
                approvers: serde_json::json!([]),
                policy_reasons: None,
                provider: None,
                executor: None,
                lease: None,
                error: None,
                created_at: at,
                updated_at: at,
                planned_at: None,
                decided_at: None,
                approved_at: None,
                dispatched_at: None,
                scheduled_at: None,
                started_at: None,
                finished_at: None,
                duration_ms: None,
                last_seq: 0,
                event_count: 0,
            });
        }
        let Some(row) = self.jobs.get_mut(&id) else { return };
        if i64_of(seq) <= row.last_seq {
            return; // already applied (cannot happen under the checkpoint; harmless if it does)
        }
        row.last_seq = i64_of(seq);
        row.event_count += 1;
        row.updated_at = at;
        let finish = |row: &mut JobRow, status: Status, error: Option<String>| {
            row.status = status.as_str().into();
            row.error = error.or(row.error.take());
            row.finished_at = Some(at);
        };
        match event {
            JobEvent::Requested(_) => {}
            JobEvent::Planned(p) => {
                row.status = Status::Planned.as_str().into();
                row.planner = Some(p.planner.clone());
                row.plan_summary = Some(p.plan.summary.clone());
                row.fallback_reason = p.fallback_reason.clone();
                row.artifacts_expected = Some(serde_json::json!(p.plan.artifacts));
                row.planned_at = Some(at);
                for (i, s) in p.plan.steps.iter().enumerate() {
                    let idx = i32::try_from(i).unwrap_or(i32::MAX);
                    self.steps.insert(
                        (id, idx),
                        StepRow {
                            job_id: id,
                            idx,
                            title: s.title.clone(),
                            action: s.action.clone(),
                            params: (!s.params.is_empty()).then(|| serde_json::json!(s.params)),
                            risk: Some(s.risk.as_str().into()),
                            status: "planned".into(),
                            exit_code: None,
                            duration_ms: None,
                            error: None,
                            output_ref: None,
                            output_chunks: 0,
                            started_at: None,
                            finished_at: None,
                            stdout: None,
                            stderr: None,
                        },
                    );
                }
            }
            JobEvent::PlanningFailed(f) => finish(row, Status::Failed, Some(f.reason.clone())),
            JobEvent::PolicyDecided(d) => {
                row.risk = Some(d.risk.as_str().into());
                row.requires_approval = Some(d.requires_approval);
                row.approvals_required = Some(i16::from(d.approvals_required));
                row.policy_reasons = Some(serde_json::json!(d.reasons));
                row.decided_at = Some(at);
                for (i, r) in d.step_risks.iter().enumerate() {
                    if let Some(s) = step_mut(&mut self.steps, id, u32::try_from(i).unwrap_or(u32::MAX)) {
                        s.risk = Some(r.as_str().into());
                    }
                }
                if !d.allowed {
                    finish(row, Status::Denied, Some(d.reasons.join("; ")));
                } else if d.requires_approval && !d.auto_approved {
                    row.status = Status::AwaitingApproval.as_str().into();
                } else {
                    row.status = Status::Approved.as_str().into();
                    row.approved_at = Some(at);
                }
            }
            JobEvent::Approved(a) => {
                let mut list: Vec<String> = serde_json::from_value(row.approvers.clone()).unwrap_or_default();
                list.push(a.approver.clone());
                row.approvers = serde_json::json!(list);
                if list.len() >= usize::try_from(row.approvals_required.unwrap_or(1).max(1)).unwrap_or(1) {
                    row.status = Status::Approved.as_str().into();
                    row.approved_at = Some(at);
                }
                self.approvals.push(ApprovalRow {
                    seq: i64_of(seq),
                    job_id: id,
                    decision: "approved".into(),
                    actor: a.approver.clone(),
                    comment: a.comment.clone(),
                    at,
                });
            }
            JobEvent::Denied(d) => {
                finish(row, Status::Denied, Some(d.reason.clone()));
                self.approvals.push(ApprovalRow {
                    seq: i64_of(seq),
                    job_id: id,
                    decision: "denied".into(),
                    actor: d.by.clone(),
                    comment: Some(d.reason.clone()),
                    at,
                });
            }
            JobEvent::Dispatched(d) => {
                row.status = Status::Dispatched.as_str().into();
                row.dispatched_at = Some(at);
                for s in &d.spec.steps {
                    if let Some(r) = step_mut(&mut self.steps, id, s.index) {
                        r.action = Some(s.action.clone());
                        r.params = Some(serde_json::json!(s.params));
                        r.risk = Some(s.risk.as_str().into());
                        r.status = "pending".into();
                    }
                }
            }
            JobEvent::Scheduled(s) => {
                row.status = Status::Scheduled.as_str().into();
                row.provider = Some(s.provider.clone());
                row.scheduled_at = Some(at);
            }
            JobEvent::Started(s) => {
                row.status = Status::Running.as_str().into();
                row.executor = Some(s.executor.clone());
                row.lease = Some(i64_of(s.lease));
                row.started_at.get_or_insert(at);
                let e = self.executors.entry(s.executor.clone()).or_insert(ExecutorDelta {
                    id: s.executor.clone(),
                    jobs_started: 0,
                    last_job: id,
                    last_seen: at,
                });
                e.jobs_started += 1;
                e.last_job = id;
                e.last_seen = e.last_seen.max(at);
            }
            JobEvent::StepStarted(s) => {
                if let Some(r) = step_mut(&mut self.steps, id, s.step) {
                    r.status = "running".into();
                    r.started_at = Some(at);
                }
            }
            JobEvent::StepOutput(o) => {
                if let Some(r) = step_mut(&mut self.steps, id, o.step) {
                    r.output_chunks += 1;
                }
            }
            JobEvent::StepSucceeded(s) => {
                if let Some(r) = step_mut(&mut self.steps, id, s.step) {
                    r.status = "succeeded".into();
                    r.exit_code = Some(s.exit_code);
                    r.duration_ms = Some(i64_of(s.duration_ms));
                    r.output_ref = s.output_ref.clone();
                    r.stdout = s.stdout.clone();
                    r.stderr = s.stderr.clone();
                    r.error = None;
                    r.finished_at = Some(at);
                }
            }
            JobEvent::StepFailed(f) => {
                if let Some(r) = step_mut(&mut self.steps, id, f.step) {
                    r.status = "failed".into();
                    r.exit_code = f.exit_code;
                    r.duration_ms = Some(i64_of(f.duration_ms));
                    r.output_ref = f.output_ref.clone();
                    r.stdout = f.stdout.clone();
                    r.stderr = f.stderr.clone();
                    r.error = Some(f.error.clone());
                    r.finished_at = Some(at);
                }
            }
            JobEvent::ArtifactStored(a) => self.artifacts.push(ArtifactRow {
                job_id: id,
                name: a.name.clone(),
                bucket: a.bucket.clone(),
                key: a.key.clone(),
                size_bytes: i64_of(a.size_bytes),
                content_type: a.content_type.clone(),
                sha256: a.sha256.clone(),
            }),
            JobEvent::Succeeded(s) => {
                finish(row, Status::Succeeded, None);
                row.duration_ms = Some(i64_of(s.duration_ms));
            }
            JobEvent::Failed(f) => finish(row, Status::Failed, Some(f.reason.clone())),
            JobEvent::CancelRequested(_) => row.status = Status::Cancelling.as_str().into(),
            JobEvent::Cancelled(c) => finish(row, Status::Cancelled, Some(c.reason.clone())),
            JobEvent::TimedOut(t) => {
                let scope = match t.scope {
                    skynet_contract::job::TimeoutScope::Job => "job".to_owned(),
                    skynet_contract::job::TimeoutScope::Step => format!("step {}", t.step.unwrap_or_default()),
                };
                finish(row, Status::TimedOut, Some(format!("{scope} exceeded its {} s limit", t.limit_secs)));
            }
        }
    }
}

/// Whether a job row's status is final, by the job model's own definition.
pub fn is_terminal(status: &str) -> bool {
    Status::ALL.iter().any(|s| s.is_terminal() && s.as_str() == status)
}

/// Rows of unfinished jobs as last committed. The projector is the only writer
/// of these tables, so its copy is what the database holds, and a batch need
/// not read them back. Finished jobs leave (they get no more events).
#[derive(Debug, Default)]
pub struct RowCache {
    jobs: HashMap<Uuid, JobRow>,
    steps: HashMap<Uuid, Vec<StepRow>>,
}

/// More unfinished jobs than this and the cache starts over (reads refill it).
const ROW_CACHE_LIMIT: usize = 200_000;

impl RowCache {
    /// Copies the cached rows of `jobs` into `batch`; returns the jobs not cached.
    pub fn fill(&self, batch: &mut Batch, jobs: &std::collections::HashSet<Uuid>) -> std::collections::HashSet<Uuid> {
        let mut missing = std::collections::HashSet::new();
        for id in jobs {
            match self.jobs.get(id) {
                Some(row) => {
                    batch.jobs.insert(*id, row.clone());
                    for s in self.steps.get(id).into_iter().flatten() {
                        batch.steps.insert((s.job_id, s.idx), s.clone());
                    }
                }
                None => {
                    missing.insert(*id);
                }
            }
        }
        missing
    }

    /// Remembers what a committed batch wrote.
    pub fn keep(&mut self, batch: &Batch) {
        if self.jobs.len() > ROW_CACHE_LIMIT {
            self.jobs.clear();
            self.steps.clear();
        }
        let mut steps: HashMap<Uuid, Vec<StepRow>> = HashMap::new();
        for s in batch.steps.values() {
            steps.entry(s.job_id).or_default().push(s.clone());
        }
        for (id, row) in &batch.jobs {
            if is_terminal(&row.status) {
                self.jobs.remove(id);
                self.steps.remove(id);
            } else {
                self.jobs.insert(*id, row.clone());
                self.steps.insert(*id, steps.remove(id).unwrap_or_default());
            }
        }
    }
}

/// What the bulk path of a rebuild (`crate::bulk`) needs: there the cache
/// holds rows not yet written.
impl RowCache {
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn holds(&self, job: &Uuid) -> bool {
        self.jobs.contains_key(job)
    }

    /// Holds a job's rows.
    pub fn put(&mut self, job: JobRow, steps: Vec<StepRow>) {
        self.steps.insert(job.id, steps);
        self.jobs.insert(job.id, job);
    }

    /// Lets go of a job's rows.
    pub fn remove(&mut self, job: &Uuid) {
        self.jobs.remove(job);
        self.steps.remove(job);
    }

    /// Every job's rows, emptying the cache.
    pub fn drain(&mut self) -> Vec<(JobRow, Vec<StepRow>)> {
        let mut steps = std::mem::take(&mut self.steps);
        self.jobs.drain().map(|(id, job)| (job, steps.remove(&id).unwrap_or_default())).collect()
    }
}
