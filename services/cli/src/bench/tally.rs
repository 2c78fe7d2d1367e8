//! Counting outcomes honestly: a job counts once, only a `succeeded` event
//! counts as success, and a job that never ends is reported as lost — loudly.

use std::collections::HashMap;
use std::time::Instant;

/// Outcomes of the jobs a benchmark submitted.
#[derive(Debug, Default)]
pub struct Tally {
    submitted: HashMap<String, Instant>,
    ended: HashMap<String, (bool, Instant)>,
}

impl Tally {
    /// A job was submitted now.
    pub fn submitted(&mut self, job: String, at: Instant) {
        self.submitted.insert(job, at);
    }

    /// A terminal event of `job` arrived; unknown jobs and repeats are ignored.
    pub fn ended(&mut self, job: &str, succeeded: bool, at: Instant) {
        if self.submitted.contains_key(job) && !self.ended.contains_key(job) {
            self.ended.insert(job.to_owned(), (succeeded, at));
        }
    }

    pub fn submitted_count(&self) -> usize {
        self.submitted.len()
    }

    pub fn succeeded_count(&self) -> usize {
        self.ended.values().filter(|(ok, _)| *ok).count()
    }

    pub fn ended_count(&self) -> usize {
        self.ended.len()
    }

    /// Submit-to-success latencies in microseconds.
    pub fn latencies_us(&self) -> Vec<u64> {
        self.ended
            .iter()
            .filter(|(_, (ok, _))| *ok)
            .filter_map(|(j, (_, end))| self.submitted.get(j).map(|s| end.duration_since(*s).as_micros() as u64))
            .collect()
    }

    /// The last success, for throughput.
    pub fn last_success(&self) -> Option<Instant> {
        self.ended.values().filter(|(ok, _)| *ok).map(|(_, t)| *t).max()
    }

    /// Fails unless the log itself holds, for every submitted job, exactly one
    /// terminal event and that one `succeeded` (the subscriber that timed the
    /// run cannot tell a second terminal event from a repeated publish).
    /// `terminal` counts the log's events per subject `skynet.job.<id>.<kind>`.
    pub fn check_log(&self, terminal: &HashMap<String, usize>) -> anyhow::Result<()> {
        let mut per_job: HashMap<&str, Vec<(&str, usize)>> = HashMap::new();
        for (subject, n) in terminal {
            let mut parts = subject.split('.');
            if let (Some(job), Some(kind)) = (parts.nth(2), parts.next()) {
                per_job.entry(job).or_default().push((kind, *n));
            }
        }
        let wrong: Vec<String> = self
            .submitted
            .keys()
            .filter_map(|job| match per_job.get(job.as_str()).map(Vec::as_slice) {
                Some([("succeeded", 1)]) => None,
                other => Some(format!("{job}: {other:?}")),
            })
            .collect();
        anyhow::ensure!(
            wrong.is_empty(),
            "{} of {} jobs do not have exactly one terminal event, `succeeded`, in the log; first: {:?}",
            wrong.len(),
            self.submitted_count(),
            &wrong[..wrong.len().min(5)]
        );
        Ok(())
    }

    /// Fails unless every submitted job succeeded, saying how many did not.
    pub fn check(&self) -> anyhow::Result<()> {
        let failed = self.ended_count() - self.succeeded_count();
        let lost = self.submitted_count() - self.ended_count();
        anyhow::ensure!(
            failed == 0 && lost == 0,
            "{} of {} jobs did not succeed: {failed} failed, {lost} LOST (never ended)",
            failed + lost,
            self.submitted_count()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_real_successes_once_and_reports_lost_jobs() {
        let t0 = Instant::now();
        let mut t = Tally::default();
        for j in ["a", "b", "c", "d"] {
            t.submitted(j.into(), t0);
        }
        t.ended("a", true, t0);
        t.ended("a", true, t0); // a duplicate delivery
        t.ended("b", false, t0);
        t.ended("zzz", true, t0); // not ours
        assert_eq!((t.succeeded_count(), t.ended_count()), (1, 2));
        let err = t.check().expect_err("b failed, c and d lost").to_string();
        assert!(err.contains("1 failed") && err.contains("2 LOST"), "{err}");
        t.ended("c", true, t0);
        t.ended("d", true, t0);
        t.ended("b", true, t0); // too late: b already failed
        assert!(t.check().is_err());
    }

    #[test]
    fn the_log_must_hold_exactly_one_success_per_job() {
        let t0 = Instant::now();
        let mut t = Tally::default();
        for j in ["a", "b"] {
            t.submitted(j.into(), t0);
        }
        let log = |entries: &[(&str, usize)]| -> HashMap<String, usize> {
            entries.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
        };
        let ok = log(&[("skynet.job.a.succeeded", 1), ("skynet.job.b.succeeded", 1), ("skynet.job.z.failed", 1)]);
        assert!(t.check_log(&ok).is_ok());
        let twice = log(&[("skynet.job.a.succeeded", 2), ("skynet.job.b.succeeded", 1)]);
        assert!(t.check_log(&twice).expect_err("one of two jobs twice").to_string().contains("1 of 2"));
        let both = log(&[("skynet.job.a.succeeded", 1), ("skynet.job.a.failed", 1), ("skynet.job.b.succeeded", 1)]);
        assert!(t.check_log(&both).is_err());
        let missing = log(&[("skynet.job.a.succeeded", 1)]);
        assert!(t.check_log(&missing).is_err());
    }
}
