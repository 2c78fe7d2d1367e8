//! The initiative's ledger: its own events in the log (`skynet.initiative.>`),
//! folded into what limits and triggers need. Pure: events in, state out; the
//! clock is an argument. Reading and appending are in [`crate::store`].
//!
//! The limits are counted here, from the log, never from process memory: a
//! restarted service, or a second one, sees every task the first submitted.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use skynet_contract::JobId;
use skynet_contract::initiative::{Counts, Decided, Outcome, Strategy, Switched};

use crate::config::Limits;

/// One event of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Decided(Box<Decided>),
    Paused(Switched),
    Resumed(Switched),
}

/// A task the initiative submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub at: DateTime<Utc>,
    pub strategy: Strategy,
    pub job: JobId,
    /// The decision's event id: the submission's CloudEvent id.
    pub event_id: String,
    pub decided: Box<Decided>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// Stream sequence of the newest ledger event (0: none): what the next
    /// append expects, so two writers never both take the last slot.
    pub last_seq: u64,
    pub paused: bool,
    /// The last pause or resume.
    pub switched: Option<(DateTime<Utc>, Switched)>,
    /// Tasks submitted inside the window read, oldest first.
    pub submitted: Vec<Submitted>,
    /// Each strategy's newest decision (whatever its age).
    pub last_decision: BTreeMap<Strategy, (DateTime<Utc>, Outcome, String)>,
    /// Each strategy's newest submitted task (whatever its age, when known).
    pub last_submitted: BTreeMap<Strategy, DateTime<Utc>>,
    switch_seq: u64,
    decision_seq: BTreeMap<Strategy, u64>,
}

impl Ledger {
    /// Folds event `id`, stored at `seq`, that happened at `at`. Order does
    /// not matter (the newest switch and decision win by sequence, a task
    /// counts once), so the newest event of each subject and a window of
    /// recent ones can be folded together, overlapping.
    pub fn apply(&mut self, seq: u64, at: DateTime<Utc>, id: &str, event: Recorded) {
        self.last_seq = self.last_seq.max(seq);
        match event {
            Recorded::Paused(s) | Recorded::Resumed(s) if seq < self.switch_seq => drop(s),
            Recorded::Paused(s) => {
                (self.paused, self.switch_seq, self.switched) = (true, seq, Some((at, s)));
            }
            Recorded::Resumed(s) => {
                (self.paused, self.switch_seq, self.switched) = (false, seq, Some((at, s)));
            }
            Recorded::Decided(d) => {
                if self.decision_seq.get(&d.strategy).is_none_or(|s| *s < seq) {
                    self.decision_seq.insert(d.strategy, seq);
                    self.last_decision.insert(d.strategy, (at, d.outcome, d.reason.clone()));
                }
                if let (Outcome::Submitted, Some(job)) = (d.outcome, d.job_id) {
                    let last = self.last_submitted.entry(d.strategy).or_insert(at);
                    *last = (*last).max(at);
                    if !self.submitted.iter().any(|s| s.job == job) {
                        let task = Submitted { at, strategy: d.strategy, job, event_id: id.to_owned(), decided: d };
                        let i = self.submitted.partition_point(|s| s.at <= at);
                        self.submitted.insert(i, task);
                    }
                }
            }
        }
    }

    /// Hours since `strategy` last submitted a task, if it ever did (that we know).
    pub fn hours_since(&self, strategy: Strategy, now: DateTime<Utc>) -> Option<f64> {
        self.last_submitted.get(&strategy).map(|at| (now - *at).num_milliseconds().max(0) as f64 / 3_600_000.0)
    }

    /// Where the ledger stands against `limits` at `now`, `running` of its
    /// jobs not finished.
    pub fn counts(&self, now: DateTime<Utc>, running: u32, limits: &Limits) -> Counts {
        // A task stamped after `now` (another host's clock ahead of ours) counts.
        let since = |d: Duration| self.submitted.iter().filter(|s| s.at > now - d).count() as u32;
        Counts {
            last_hour: since(Duration::hours(1)),
            last_day: since(Duration::hours(24)),
            running,
            per_hour: limits.per_hour,
            per_day: limits.per_day,
            concurrent: limits.concurrent,
        }
    }
}

/// The limit another task would break, in words; `None` if it is within all.
pub fn limit_reached(c: &Counts) -> Option<String> {
    if c.last_hour >= c.per_hour {
        Some(format!("{} tasks in the last hour, the most allowed", c.last_hour))
    } else if c.last_day >= c.per_day {
        Some(format!("{} tasks in the last 24 h, the most allowed", c.last_day))
    } else if c.running >= c.concurrent {
        Some(format!("{} initiative jobs not finished, the most allowed at once", c.running))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use skynet_contract::initiative::Facts;

    use super::*;

    fn decided(strategy: Strategy, outcome: Outcome, n: u128) -> Recorded {
        Recorded::Decided(Box::new(Decided {
            strategy,
            outcome,
            reason: "r".into(),
            limit: None,
            facts: Facts::default(),
            counts: Counts::default(),
            job_id: (outcome == Outcome::Submitted).then(|| JobId(uuid::Uuid::from_u128(n))),
            intent: None,
            plan: None,
            working_dir: None,
        }))
    }

    const LIMITS: Limits = Limits { per_hour: 5, per_day: 20, concurrent: 2 };

    #[test]
    fn rolling_hour_and_day() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").expect("time").to_utc();
        let mut l = Ledger::default();
        for i in 0..5 {
            l.apply(
                i + 1,
                t0 + Duration::minutes(i as i64 * 10),
                "e",
                decided(Strategy::Maintenance, Outcome::Submitted, i.into()),
            );
        }
        l.apply(6, t0 + Duration::minutes(45), "e", decided(Strategy::Recovery, Outcome::Limited, 99));
        let at = t0 + Duration::minutes(45);
        let c = l.counts(at, 0, &LIMITS);
        assert_eq!((c.last_hour, c.last_day), (5, 5));
        assert!(limit_reached(&c).is_some_and(|w| w.contains("last hour")));
        // An hour after the first, one slot is free again.
        let c = l.counts(t0 + Duration::minutes(60), 0, &LIMITS);
        assert_eq!(c.last_hour, 4);
        assert_eq!(limit_reached(&c), None);
        assert!(
            limit_reached(&l.counts(t0 + Duration::minutes(60), 2, &LIMITS)).is_some_and(|w| w.contains("at once"))
        );
        // A day later nothing counts.
        assert_eq!(l.counts(t0 + Duration::hours(25), 0, &LIMITS).last_day, 0);
        assert_eq!(l.last_seq, 6);
        assert_eq!(l.hours_since(Strategy::Maintenance, t0 + Duration::minutes(100)), Some(1.0));
        assert_eq!(l.hours_since(Strategy::Recovery, at), None, "a limited decision is not a run");
    }

    #[test]
    fn pause_resume_in_any_order() {
        let t0 = Utc::now();
        let mut l = Ledger::default();
        let who = Switched { by: "ops".into(), reason: "r".into() };
        l.apply(3, t0, "e", Recorded::Paused(who.clone()));
        assert!(l.paused);
        l.apply(2, t0, "e", Recorded::Resumed(who.clone()));
        assert!(l.paused, "an older switch changes nothing, whatever the order read");
        l.apply(4, t0, "e", Recorded::Resumed(who));
        assert!(!l.paused);
        // The same job twice (a re-read) counts once.
        l.apply(5, t0, "e", decided(Strategy::Maintenance, Outcome::Submitted, 1));
        l.apply(6, t0, "e", decided(Strategy::Maintenance, Outcome::Submitted, 1));
        assert_eq!(l.counts(t0, 0, &LIMITS).last_day, 1);
    }
}
