//! Every (status, event) pair against the lifecycle table: each pair is either the
//! transition listed here or a typed `IllegalTransition`. None panics.

mod fixtures;

use fixtures::{job_in, sample};
use skynet_contract::job::JobEventKind as K;
use skynet_job::{IllegalTransition, Status as S, evolve};

/// The whole lifecycle: (from, event) → to. Anything not listed is illegal.
const TABLE: &[(S, K, S)] = &[
    (S::Requested, K::Planned, S::Planned),
    (S::Requested, K::PlanningFailed, S::Failed),
    (S::Requested, K::Cancelled, S::Cancelled),
    (S::Requested, K::Failed, S::Failed), // any unfinished job can fail (e.g. its log does not replay)
    (S::Planned, K::PolicyDecided, S::Approved), // the sample decision auto-approves
    (S::Planned, K::Cancelled, S::Cancelled),
    (S::Planned, K::Failed, S::Failed),
    (S::AwaitingApproval, K::Approved, S::Approved),
    (S::AwaitingApproval, K::Denied, S::Denied),
    (S::AwaitingApproval, K::Cancelled, S::Cancelled),
    (S::AwaitingApproval, K::Failed, S::Failed),
    (S::Approved, K::Dispatched, S::Dispatched),
    (S::Approved, K::Failed, S::Failed),
    (S::Approved, K::Cancelled, S::Cancelled),
    (S::Dispatched, K::Scheduled, S::Scheduled),
    (S::Dispatched, K::Failed, S::Failed),
    (S::Dispatched, K::Cancelled, S::Cancelled),
    (S::Dispatched, K::TimedOut, S::TimedOut),
    (S::Scheduled, K::Started, S::Running),
    (S::Scheduled, K::Failed, S::Failed),
    (S::Scheduled, K::Cancelled, S::Cancelled),
    (S::Scheduled, K::TimedOut, S::TimedOut),
    (S::Running, K::Started, S::Running), // takeover under a newer lease
    (S::Running, K::StepStarted, S::Running),
    (S::Running, K::StepOutput, S::Running),
    (S::Running, K::StepSucceeded, S::Running),
    (S::Running, K::StepFailed, S::Running),
    (S::Running, K::ArtifactStored, S::Running),
    (S::Running, K::Succeeded, S::Succeeded),
    (S::Running, K::Failed, S::Failed),
    (S::Running, K::CancelRequested, S::Cancelling),
    (S::Running, K::Cancelled, S::Cancelled), // the executor stopped it itself (an emergency stop)
    (S::Running, K::TimedOut, S::TimedOut),
    (S::Cancelling, K::StepStarted, S::Cancelling),
    (S::Cancelling, K::StepOutput, S::Cancelling),
    (S::Cancelling, K::StepSucceeded, S::Cancelling),
    (S::Cancelling, K::StepFailed, S::Cancelling),
    (S::Cancelling, K::ArtifactStored, S::Cancelling),
    (S::Cancelling, K::Succeeded, S::Succeeded),
    (S::Cancelling, K::Failed, S::Failed),
    (S::Cancelling, K::Cancelled, S::Cancelled),
    (S::Cancelling, K::TimedOut, S::TimedOut),
];

#[test]
fn every_status_event_pair_is_a_listed_transition_or_a_typed_error() {
    let mut checked = 0;
    for status in S::ALL {
        for kind in K::ALL {
            let job = job_in(status);
            let expected = TABLE.iter().find(|(f, k, _)| *f == status && k == kind).map(|(_, _, t)| *t);
            let got = evolve(Some(job.clone()), &sample(*kind));
            match (expected, got) {
                (Some(to), Ok(next)) => {
                    assert_eq!(next.status, to, "{status:?} + {kind:?}");
                    assert_eq!(next.version, job.version + 1, "{status:?} + {kind:?} bumps the version");
                }
                (None, Err(_)) => {}
                (Some(to), Err(e)) => {
                    panic!("{status:?} + {kind:?} should go to {to:?}, got error {e}")
                }
                (None, Ok(next)) => panic!("{status:?} + {kind:?} should be illegal, went to {:?}", next.status),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, S::ALL.len() * K::ALL.len());
}

#[test]
fn only_requested_opens_a_job() {
    for kind in K::ALL {
        let got = evolve(None, &sample(*kind));
        if *kind == K::Requested {
            let job = got.expect("requested opens");
            assert_eq!(job.status, S::Requested);
            assert_eq!(job.id, skynet_contract::JobId::for_request("test", "1"));
        } else {
            assert_eq!(got.expect_err("must be refused"), IllegalTransition::NotOpened { event: *kind });
        }
    }
}

#[test]
fn terminal_states_refuse_everything() {
    for status in S::ALL.into_iter().filter(|s| s.is_terminal()) {
        for kind in K::ALL {
            let err = evolve(Some(job_in(status)), &sample(*kind)).expect_err("terminal");
            assert!(matches!(err, IllegalTransition::Illegal { .. }), "{status:?} + {kind:?}: {err}");
        }
    }
}

#[test]
fn step_results_from_a_stale_lease_are_fenced_off() {
    use skynet_contract::job::{JobEvent, Started, StepSucceeded};
    let running = job_in(S::Running);
    let taken_over =
        evolve(Some(running), &JobEvent::Started(Started { executor: "x2".into(), lease: 2 })).expect("takeover");
    let stale = JobEvent::StepSucceeded(StepSucceeded {
        step: 0,
        exit_code: 0,
        duration_ms: 1,
        output_ref: None,
        stdout: None,
        stderr: None,
        lease: 1,
    });
    assert!(matches!(
        evolve(Some(taken_over.clone()), &stale),
        Err(IllegalTransition::StaleLease { got: 1, current: Some(2), .. })
    ));
    let older = JobEvent::Started(Started { executor: "x3".into(), lease: 2 });
    assert!(matches!(evolve(Some(taken_over), &older), Err(IllegalTransition::StaleLease { .. })));
}

#[test]
fn step_events_for_missing_steps_are_refused() {
    use skynet_contract::job::{JobEvent, StepStarted};
    let e = JobEvent::StepStarted(StepStarted { step: 7, executor: "x1".into(), lease: 1 });
    assert!(matches!(
        evolve(Some(job_in(S::Running)), &e),
        Err(IllegalTransition::NoSuchStep { step: 7, steps: 1, .. })
    ));
}
