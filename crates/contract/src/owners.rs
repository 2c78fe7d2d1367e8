//! Who may record what: the service that owns each job event kind.
//!
//! An event is the truth only if it was written by the service whose job it is
//! to decide it. The broker enforces this with per-service permissions
//! (`nats/roles.json`, checked against this table by a test), and every consumer
//! checks it again on the CloudEvent `source` (defence in depth: a replayed old
//! log, or a role granted too much by an operator, must not be folded).

use crate::job::JobEventKind;

/// The CloudEvent `source` of everything service `name` records.
pub fn source_of(service: &str) -> String {
    format!("skynet/{service}")
}

/// The services that may record `kind`, by service name (`source` is
/// `skynet/<name>`).
///
/// `failed` has several owners because each stage fails a job in its own way
/// (a step that maps to nothing, no capable executor, a step that failed) and
/// because any service that loads a job whose log does not replay ends it as
/// failed rather than leaving it stuck: failing is the one safe direction.
pub fn owners(kind: JobEventKind) -> &'static [&'static str] {
    use JobEventKind as K;
    match kind {
        K::Requested => &["intake"],
        K::Planned | K::PlanningFailed => &["planner"],
        K::PolicyDecided | K::Approved | K::Denied | K::CancelRequested => &["policy"],
        K::Dispatched => &["dispatcher"],
        K::Scheduled => &["scheduler"],
        K::Started
        | K::StepStarted
        | K::StepOutput
        | K::StepSucceeded
        | K::StepFailed
        | K::ArtifactStored
        | K::Succeeded
        | K::TimedOut => &["executor"],
        // A job that has not started is cancelled by the policy service (the
        // command, the approval timeout); a running one by its executor.
        K::Cancelled => &["policy", "executor"],
        K::Failed => &["planner", "policy", "dispatcher", "scheduler", "executor"],
    }
}

/// Whether an event of `kind` with CloudEvent `source` was written by an owner.
pub fn is_owner(kind: JobEventKind, source: &str) -> bool {
    source.strip_prefix("skynet/").is_some_and(|s| owners(kind).contains(&s))
}

/// Why an event's `source` is not acceptable for its kind.
pub fn wrong_source(kind: JobEventKind, source: &str) -> Option<String> {
    (!is_owner(kind, source)).then(|| {
        let owners: Vec<String> = owners(kind).iter().map(|s| source_of(s)).collect();
        format!(
            "{} events are recorded only by {}; this one claims source {source:?}",
            kind.token(),
            owners.join(" or ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_an_owner_and_sources_are_exact() {
        for k in JobEventKind::ALL {
            assert!(!owners(*k).is_empty(), "{k:?}");
            assert!(is_owner(*k, &source_of(owners(*k)[0])));
        }
        assert!(!is_owner(JobEventKind::Approved, "skynet/executor"));
        assert!(!is_owner(JobEventKind::Approved, "skynet/policy/x"));
        assert!(!is_owner(JobEventKind::Approved, "policy"));
        assert!(wrong_source(JobEventKind::Approved, "me/laptop").is_some_and(|r| r.contains("skynet/policy")));
    }
}
