//! Which alerts fire: pure `decide` (findings against what fires now → raise
//! or resolve) and `evolve` (an alert event → the new state). The state is a
//! fold of the alert events in the log, so a restarted sentinel resumes where
//! it was: the same trouble is not raised twice, and the cooldown holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use skynet_contract::alert::{AlertKind, AlertRaised, AlertResolved, Silenced};

use crate::findings::Finding;

/// What fires, when each alert was last sent, and the silences.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub firing: BTreeMap<String, AlertRaised>,
    pub last_notified: HashMap<String, DateTime<Utc>>,
    pub silences: Vec<Silenced>,
}

/// An alert event to record (and, when `notified`, to send).
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Raise(AlertRaised),
    Resolve(AlertResolved),
}

/// The transitions that bring `state` in line with `findings`. Alerts of kinds
/// not `observed` this time stay as they are.
pub fn decide(
    state: &State,
    findings: &[Finding],
    observed: &BTreeSet<AlertKind>,
    now: DateTime<Utc>,
    cooldown: Duration,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut current = BTreeSet::new();
    for f in findings {
        let fp = f.fingerprint();
        if !current.insert(fp.clone()) {
            continue; // the same alert twice in one look
        }
        let silence = state.silences.iter().find(|s| s.mutes(&f.labels, now));
        let cooling = state.last_notified.get(&fp).is_some_and(|at| now - *at < cooldown);
        let muted = match state.firing.get(&fp) {
            // New: muted by a silence or, after a recent notice, the cooldown.
            None => silence.map(|s| format!("silenced by {}", s.id)).or(cooling.then(|| "cooldown".to_owned())),
            // Worse than what people heard: only a silence holds it back.
            Some(firing) if f.severity > firing.severity => silence.map(|s| format!("silenced by {}", s.id)),
            // Firing unheard, and nothing mutes it any more: people hear it now.
            Some(firing) if !firing.notified && silence.is_none() && !cooling => None,
            Some(_) => continue, // already firing: nothing new to say
        };
        out.push(Transition::Raise(AlertRaised {
            fingerprint: fp,
            kind: f.kind,
            subject: f.subject.clone(),
            severity: f.severity,
            summary: f.summary.clone(),
            labels: f.labels.clone(),
            notified: muted.is_none(),
            muted,
        }));
    }
    for (fp, firing) in &state.firing {
        if observed.contains(&firing.kind) && !current.contains(fp) {
            out.push(Transition::Resolve(AlertResolved {
                fingerprint: fp.clone(),
                kind: firing.kind,
                subject: firing.subject.clone(),
                summary: format!("resolved: {}", firing.summary),
                // People hear of the end of what they heard of (silenced or not).
                notified: firing.notified,
            }));
        }
    }
    out
}

/// An alert event, applied.
#[derive(Debug, Clone)]
pub enum Event {
    Raised(AlertRaised),
    Resolved(AlertResolved),
    Silenced(Silenced),
}

/// `state` after `event`, recorded at `at`.
pub fn evolve(state: &mut State, event: Event, at: DateTime<Utc>) {
    match event {
        Event::Raised(mut r) => {
            if r.notified {
                state.last_notified.insert(r.fingerprint.clone(), at);
            }
            // `notified` of a firing alert: whether people heard of this episode.
            r.notified |= state.firing.get(&r.fingerprint).is_some_and(|old| old.notified);
            state.firing.insert(r.fingerprint.clone(), r);
        }
        Event::Resolved(r) => {
            state.firing.remove(&r.fingerprint);
        }
        Event::Silenced(s) => {
            state.silences.retain(|old| old.until > at && old.id != s.id);
            state.silences.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use skynet_contract::alert::Severity;

    use super::*;

    fn finding(kind: AlertKind, subject: &str, severity: Severity) -> Finding {
        Finding {
            kind,
            subject: subject.into(),
            severity,
            summary: format!("{} {subject}", kind.as_str()),
            labels: [("kind".to_owned(), kind.as_str().to_owned()), ("subject".to_owned(), subject.to_owned())].into(),
        }
    }

    fn apply(state: &mut State, ts: Vec<Transition>, at: DateTime<Utc>) {
        for t in ts {
            evolve(
                state,
                match t {
                    Transition::Raise(r) => Event::Raised(r),
                    Transition::Resolve(r) => Event::Resolved(r),
                },
                at,
            );
        }
    }

    const COOL: Duration = Duration::seconds(300);

    #[test]
    fn raised_once_resolved_once_and_a_flap_inside_the_cooldown_is_not_resent() {
        let (mut s, t0) = (State::default(), Utc::now());
        let observed: BTreeSet<_> = [AlertKind::ExecutorsNone].into();
        let f = vec![finding(AlertKind::ExecutorsNone, "all", Severity::Critical)];
        let first = decide(&s, &f, &observed, t0, COOL);
        assert!(matches!(&first[..], [Transition::Raise(r)] if r.notified));
        apply(&mut s, first, t0);
        assert!(decide(&s, &f, &observed, t0 + Duration::seconds(2), COOL).is_empty(), "firing: nothing new");
        let resolved = decide(&s, &[], &observed, t0 + Duration::seconds(4), COOL);
        assert!(matches!(&resolved[..], [Transition::Resolve(r)] if r.notified));
        apply(&mut s, resolved, t0 + Duration::seconds(4));
        // Back within the cooldown: recorded, not sent.
        let again = decide(&s, &f, &observed, t0 + Duration::seconds(60), COOL);
        assert!(matches!(&again[..], [Transition::Raise(r)] if !r.notified && r.muted.as_deref() == Some("cooldown")));
        apply(&mut s, again, t0 + Duration::seconds(60));
        // Still firing when the cooldown ends: people hear it then, once.
        assert!(decide(&s, &f, &observed, t0 + Duration::seconds(200), COOL).is_empty(), "still cooling");
        let heard = decide(&s, &f, &observed, t0 + Duration::seconds(301), COOL);
        assert!(matches!(&heard[..], [Transition::Raise(r)] if r.notified));
        apply(&mut s, heard, t0 + Duration::seconds(301));
        assert!(decide(&s, &f, &observed, t0 + Duration::seconds(303), COOL).is_empty());
        // Its end is sent, as its start was.
        let end = decide(&s, &[], &observed, t0 + Duration::seconds(304), COOL);
        assert!(matches!(&end[..], [Transition::Resolve(r)] if r.notified));
    }

    #[test]
    fn the_end_of_an_episode_nobody_heard_of_is_not_sent() {
        let (mut s, t0) = (State::default(), Utc::now());
        let observed: BTreeSet<_> = [AlertKind::ExecutorsNone].into();
        let f = vec![finding(AlertKind::ExecutorsNone, "all", Severity::Critical)];
        let first = decide(&s, &f, &observed, t0, COOL);
        apply(&mut s, first, t0);
        let gone = decide(&s, &[], &observed, t0 + Duration::seconds(1), COOL);
        apply(&mut s, gone, t0 + Duration::seconds(1));
        let muted = decide(&s, &f, &observed, t0 + Duration::seconds(2), COOL);
        apply(&mut s, muted, t0 + Duration::seconds(2));
        let end = decide(&s, &[], &observed, t0 + Duration::seconds(3), COOL);
        assert!(matches!(&end[..], [Transition::Resolve(r)] if !r.notified), "{end:?}");
    }

    #[test]
    fn an_unobserved_kind_is_not_resolved_and_an_escalation_is_sent_despite_the_cooldown() {
        let (mut s, t0) = (State::default(), Utc::now());
        let all: BTreeSet<_> = [AlertKind::JobsNotStarting].into();
        let warn = vec![finding(AlertKind::JobsNotStarting, "all", Severity::Warning)];
        let first = decide(&s, &warn, &all, t0, COOL);
        apply(&mut s, first, t0);
        // Postgres down: the jobs check did not run; the alert stays.
        assert!(decide(&s, &[], &BTreeSet::new(), t0 + Duration::seconds(5), COOL).is_empty());
        let crit = vec![finding(AlertKind::JobsNotStarting, "all", Severity::Critical)];
        let up = decide(&s, &crit, &all, t0 + Duration::seconds(6), COOL);
        assert!(matches!(&up[..], [Transition::Raise(r)] if r.notified && r.severity == Severity::Critical));
        apply(&mut s, up, t0 + Duration::seconds(6));
        // Back to warning while firing: nothing (no flapping on the way down).
        assert!(decide(&s, &warn, &all, t0 + Duration::seconds(8), COOL).is_empty());
    }

    #[test]
    fn a_silence_mutes_matching_alerts_only_and_only_while_it_lasts() {
        let (mut s, t0) = (State::default(), Utc::now());
        let observed: BTreeSet<_> = [AlertKind::ExecutorLost].into();
        evolve(
            &mut s,
            Event::Silenced(Silenced {
                id: "maint".into(),
                matchers: [("subject".to_owned(), "e1".to_owned())].into(),
                until: t0 + Duration::minutes(10),
                reason: "upgrade".into(),
                silenced_by: "ann".into(),
            }),
            t0,
        );
        let f = vec![
            finding(AlertKind::ExecutorLost, "e1", Severity::Warning),
            finding(AlertKind::ExecutorLost, "e2", Severity::Warning),
        ];
        let ts = decide(&s, &f, &observed, t0, COOL);
        let muted: Vec<_> = ts
            .iter()
            .filter_map(|t| match t {
                Transition::Raise(r) => Some((r.subject.as_str(), r.notified)),
                _ => None,
            })
            .collect();
        assert_eq!(muted, [("e1", false), ("e2", true)]);
        apply(&mut s, ts, t0);
        assert!(decide(&s, &f, &observed, t0 + Duration::minutes(5), COOL).is_empty(), "silenced, firing");
        // The silence ends while e1 still fires: people hear of it now.
        let after = decide(&s, &f, &observed, t0 + Duration::minutes(11), COOL);
        assert!(matches!(&after[..], [Transition::Raise(r)] if r.subject == "e1" && r.notified), "{after:?}");
    }
}
