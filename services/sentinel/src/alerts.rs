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
        let escalated = match state.firing.get(&fp) {
            None => false,
            Some(firing) if f.severity > firing.severity => true,
            Some(_) => continue, // already firing: nothing new to say
        };
        let silence = state.silences.iter().find(|s| s.mutes(&f.labels, now));
        let cooling = state.last_notified.get(&fp).is_some_and(|at| now - *at < cooldown);
        let muted = match (silence, cooling && !escalated) {
            (Some(s), _) => Some(format!("silenced by {}", s.id)),
            (None, true) => Some("cooldown".to_owned()),
            (None, false) => None,
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
                // People hear of the end of what they heard of.
                notified: state.last_notified.contains_key(fp)
                    && !state.silences.iter().any(|s| s.mutes(&firing.labels, now)),
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
        Event::Raised(r) => {
            if r.notified {
                state.last_notified.insert(r.fingerprint.clone(), at);
            }
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
        let quiet = decide(&s, &[], &observed, t0 + Duration::seconds(61), COOL);
        apply(&mut s, quiet, t0 + Duration::seconds(61));
        // After it: sent again.
        let later = decide(&s, &f, &observed, t0 + Duration::seconds(301), COOL);
        assert!(matches!(&later[..], [Transition::Raise(r)] if r.notified));
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
        let fresh = State { silences: s.silences.clone(), ..State::default() };
        let after = decide(&fresh, &f[..1], &observed, t0 + Duration::minutes(11), COOL);
        assert!(matches!(&after[..], [Transition::Raise(r)] if r.notified), "the silence ended");
    }
}
