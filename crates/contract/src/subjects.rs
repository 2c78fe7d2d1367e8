//! The subject layout. Every subject any service publishes or consumes is built
//! here; `nats/README.md` lists them with their publishers and consumers.
//!
//! ```text
//! skynet.intake.task                 task submissions of SKYNET's own services (stream SKYNET_INTAKE)
//! skynet.intake.client               task submissions of clients (their skynet.intake.task, imported)
//! skynet.job.<job_id>.<event>        the job aggregates' events  (stream SKYNET_EVENTS)
//! skynet.task.rejected               rejected submissions        (stream SKYNET_EVENTS)
//! skynet.dlq.<origin>                dead letters with reasons   (stream SKYNET_DLQ)
//! ```

use crate::ids::JobId;

/// Where anyone submits a task request (structured or binary CloudEvent).
pub const INTAKE_TASK: &str = "skynet.intake.task";
/// Where submissions of the CLIENTS account arrive: a client publishes on
/// `skynet.intake.task` in its own account, and the server's import maps it here,
/// so the intake knows a submission came from outside SKYNET.
pub const INTAKE_CLIENT: &str = "skynet.intake.client";
/// Every job event of every job.
pub const JOB_ALL: &str = "skynet.job.>";
/// Where rejections of submitted tasks are recorded.
pub const TASK_REJECTED: &str = "skynet.task.rejected";

/// Where an outside agent's execution report for `request_id` is recorded.
pub fn report(request_id: &str) -> String {
    let token: String =
        request_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("skynet.report.{token}")
}
/// Dead letters from the intake.
pub const DLQ_INTAKE: &str = "skynet.dlq.intake";
/// Prefix of every dead-letter subject.
pub const DLQ_PREFIX: &str = "skynet.dlq";

/// The subject of one event of one job.
pub fn job_event(job: JobId, event: &str) -> String {
    format!("skynet.job.{job}.{event}")
}

/// All events of one job: the filter for replay and the scope of the job's
/// optimistic-concurrency check.
pub fn job_stream(job: JobId) -> String {
    format!("skynet.job.{job}.>")
}

/// One kind of event across all jobs, for a service's filtered consumer.
pub fn job_events_of_kind(event: &str) -> String {
    format!("skynet.job.*.{event}")
}

/// The job id in a job-event subject, if the subject is one.
pub fn job_id_of(subject: &str) -> Option<JobId> {
    let mut parts = subject.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("skynet"), Some("job"), Some(id)) => id.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_subjects_round_trip() {
        let id = JobId::for_request("s", "1");
        assert_eq!(job_id_of(&job_event(id, "planned")), Some(id));
        assert_eq!(job_id_of("skynet.intake.task"), None);
        assert_eq!(job_id_of("skynet.job.not-a-uuid.planned"), None);
    }
}
