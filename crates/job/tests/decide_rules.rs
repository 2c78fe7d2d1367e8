//! Given a job in some state, when a command arrives, then these events (or this
//! rejection). The business rules of the lifecycle, including the predecessor's
//! defects we fix (§19.11).

mod fixtures;

use fixtures::{job_in, policy, requested};
use skynet_contract::Risk;
use skynet_contract::job::{JobEvent, JobEventKind, StepFailed, StepSucceeded};
use skynet_job::{Command, Rejection, Status, decide, evolve};

fn approve(by: &str, confirmation: Option<&str>) -> Command {
    Command::Approve {
        approver: by.into(),
        comment: None,
        confirmation: confirmation.map(str::to_owned),
        phrase_required: Some("execute".into()),
        self_approval: false,
    }
}

fn kinds(events: &[JobEvent]) -> Vec<JobEventKind> {
    events.iter().map(JobEvent::kind).collect()
}

#[test]
fn finished_jobs_cannot_be_cancelled_denied_or_approved() {
    for status in Status::ALL.into_iter().filter(|s| s.is_terminal()) {
        let job = job_in(status);
        for cmd in [
            Command::Cancel { by: "a".into(), reason: "r".into() },
            Command::Deny { by: "a".into(), reason: "r".into() },
            approve("a", Some("execute")),
        ] {
            assert_eq!(decide(Some(&job), cmd), Err(Rejection::AlreadyFinished(status)), "{status:?}");
        }
    }
}

#[test]
fn only_a_job_awaiting_approval_can_be_approved_or_denied() {
    for status in Status::ALL.into_iter().filter(|s| !s.is_terminal() && *s != Status::AwaitingApproval) {
        let job = job_in(status);
        assert_eq!(decide(Some(&job), approve("a", None)), Err(Rejection::NotAwaitingApproval(status)));
        let deny = Command::Deny { by: "a".into(), reason: "r".into() };
        assert_eq!(decide(Some(&job), deny), Err(Rejection::NotAwaitingApproval(status)));
    }
    let waiting = job_in(Status::AwaitingApproval);
    assert_eq!(kinds(&decide(Some(&waiting), approve("a", None)).expect("approve")), [JobEventKind::Approved]);
}

#[test]
fn a_job_is_planned_once() {
    let planned = job_in(Status::Planned);
    let again = Command::FailPlanning { reason: "x".into() };
    assert_eq!(decide(Some(&planned), again), Err(Rejection::AlreadyPlanned(Status::Planned)));
}

#[test]
fn admin_approval_needs_the_phrase_and_two_approvers_when_configured() {
    // An ADMIN job waiting for two approvers.
    let mut job = job_in(Status::Planned);
    job = evolve(Some(job), &JobEvent::PolicyDecided(policy(Risk::Admin, true, true, 2))).expect("decided");
    assert_eq!(decide(Some(&job), approve("a", None)), Err(Rejection::ConfirmationRequired));
    assert_eq!(decide(Some(&job), approve("a", Some("yes"))), Err(Rejection::ConfirmationMismatch));
    // The bare phrase, typed ahead, does not confirm a job its approver has not seen.
    assert_eq!(decide(Some(&job), approve("a", Some("execute"))), Err(Rejection::ConfirmationMismatch));
    let phrase = skynet_job::confirmation_for("execute", job.id);
    assert_eq!(phrase.len(), "execute ".len() + 8);
    let first = decide(Some(&job), approve("a", Some(&phrase.to_uppercase()))).expect("first approval");
    job = evolve(Some(job), &first[0]).expect("apply");
    assert_eq!(job.status, Status::AwaitingApproval, "one of two approvals");
    let dup = decide(Some(&job), approve("a", Some(&phrase))).expect_err("same approver twice");
    assert!(matches!(dup, Rejection::Illegal(_)), "{dup}");
    let second = decide(Some(&job), approve("b", Some(&phrase))).expect("second approval");
    job = evolve(Some(job), &second[0]).expect("apply");
    assert_eq!(job.status, Status::Approved);
    assert_eq!(job.approvers, ["a", "b"]);
}

#[test]
fn a_requester_cannot_approve_their_own_write_or_admin_job_unless_allowed() {
    // The fixture's job was requested by alice.
    let mut job = job_in(Status::Planned);
    job = evolve(Some(job), &JobEvent::PolicyDecided(policy(Risk::Write, true, true, 1))).expect("decided");
    assert_eq!(decide(Some(&job), approve("alice", None)), Err(Rejection::SelfApproval("alice".into())));
    let allowed = Command::Approve {
        approver: "alice".into(),
        comment: None,
        confirmation: None,
        phrase_required: None,
        self_approval: true,
    };
    assert!(decide(Some(&job), allowed).is_ok(), "the policy file may allow it");
    assert!(decide(Some(&job), approve("bob", None)).is_ok());
}

#[test]
fn cancel_stops_a_waiting_job_at_once_and_asks_a_running_one() {
    let cancel = || Command::Cancel { by: "a".into(), reason: "r".into() };
    for status in [
        Status::Requested,
        Status::Planned,
        Status::AwaitingApproval,
        Status::Approved,
        Status::Dispatched,
        Status::Scheduled,
    ] {
        assert_eq!(kinds(&decide(Some(&job_in(status)), cancel()).expect("cancel")), [JobEventKind::Cancelled]);
    }
    assert_eq!(
        kinds(&decide(Some(&job_in(Status::Running)), cancel()).expect("cancel")),
        [JobEventKind::CancelRequested]
    );
    assert_eq!(decide(Some(&job_in(Status::Cancelling)), cancel()), Err(Rejection::AlreadyCancelling));
}

#[test]
fn opening_needs_an_intent_and_happens_once() {
    let mut r = requested();
    r.intent = "   ".into();
    assert_eq!(decide(None, Command::Open(r)), Err(Rejection::EmptyIntent));
    assert_eq!(kinds(&decide(None, Command::Open(requested())).expect("open")), [JobEventKind::Requested]);
    assert_eq!(decide(Some(&job_in(Status::Requested)), Command::Open(requested())), Err(Rejection::AlreadyExists));
    assert_eq!(decide(None, Command::Finish { duration_ms: 5 }), Err(Rejection::NoSuchJob));
}

#[test]
fn finish_fails_on_an_untolerated_step_failure_and_succeeds_otherwise() {
    let running = job_in(Status::Running);
    assert_eq!(decide(Some(&running), Command::Finish { duration_ms: 5 }), Err(Rejection::StepsUnfinished));

    let failed = StepFailed {
        step: 0,
        exit_code: Some(2),
        error: "boom".into(),
        duration_ms: 5,
        continue_on_error: true,
        output_ref: None,
        stdout: None,
        stderr: None,
        lease: 1,
    };
    let ev = decide(Some(&running), Command::StepFailed(failed)).expect("record failure");
    // The spec says the step is not continue-on-error, whatever the executor claimed.
    assert!(matches!(&ev[0], JobEvent::StepFailed(f) if !f.continue_on_error));
    let after = evolve(Some(running.clone()), &ev[0]).expect("apply");
    assert_eq!(
        kinds(&decide(Some(&after), Command::Finish { duration_ms: 5 }).expect("finish")),
        [JobEventKind::Failed]
    );

    let ok =
        StepSucceeded { step: 0, exit_code: 0, duration_ms: 5, output_ref: None, stdout: None, stderr: None, lease: 1 };
    let ev = decide(Some(&running), Command::StepSucceeded(ok)).expect("record success");
    let after = evolve(Some(running), &ev[0]).expect("apply");
    assert_eq!(
        kinds(&decide(Some(&after), Command::Finish { duration_ms: 5 }).expect("finish")),
        [JobEventKind::Succeeded]
    );
}

#[test]
fn decide_never_emits_what_evolve_refuses() {
    let scheduled = job_in(Status::Scheduled);
    let step = Command::StartStep { step: 0, executor: "x".into(), lease: 1 };
    assert!(matches!(decide(Some(&scheduled), step), Err(Rejection::Illegal(_))));
}
