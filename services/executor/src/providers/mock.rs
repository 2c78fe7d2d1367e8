//! The mock provider: deterministic, for tests and benchmarks. It sleeps the
//! configured latency and fails the configured share of steps — chosen by a
//! hash of job and step, so the same step always has the same fate.

use std::time::Duration;

use serde::Deserialize;
use skynet_contract::job::OutputStream;
use tokio_util::sync::CancellationToken;

use super::{OutputSink, StepOutcome, StepRequest};

/// Mock settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mock {
    /// Time each step takes.
    pub latency_ms: u64,
    /// Share of steps that fail, 0.0..=1.0.
    pub failure_rate: f64,
}

impl Mock {
    pub async fn run(&self, req: &StepRequest, out: OutputSink, cancel: &CancellationToken) -> StepOutcome {
        if self.latency_ms > 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(self.latency_ms).min(req.timeout)) => {}
                () = cancel.cancelled() => return StepOutcome { cancelled: true, error: Some("cancelled".into()), ..StepOutcome::default() },
            }
            if Duration::from_millis(self.latency_ms) > req.timeout {
                return StepOutcome {
                    timed_out: true,
                    error: Some(format!("timed out after {} s", req.timeout.as_secs_f64())),
                    ..StepOutcome::default()
                };
            }
        }
        if self.fails(&req.job, req.step) {
            return StepOutcome {
                exit_code: Some(1),
                stderr: b"[MOCK] simulated failure\n".to_vec(),
                ..StepOutcome::default()
            };
        }
        let text = output(&req.action, &req.params);
        let _ = out.try_send((OutputStream::Stdout, text.clone()));
        StepOutcome { exit_code: Some(0), stdout: text.into_bytes(), ..StepOutcome::default() }
    }

    fn fails(&self, job: &str, step: u32) -> bool {
        if self.failure_rate <= 0.0 {
            return false;
        }
        // FNV-1a: stable across runs and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in job.bytes().chain(step.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        (h % 10_000) as f64 / 10_000.0 < self.failure_rate
    }
}

fn output(action: &str, params: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
    match action {
        "git_status" => {
            "On branch main\nChanges not staged for commit:\n  modified: README.md\n  modified: src/main.py\n".into()
        }
        "run_tests" => "============================= 24 passed in 0.31s =============================\n".into(),
        "list_directory" => "total 8\ndrwxr-xr-x 2 user user 4096 .\n-rw-r--r-- 1 user user  120 README.md\n".into(),
        "execute_command" => format!(
            "[MOCK] Command executed: {}\n[MOCK] Completed successfully\n",
            params.get("command").map_or("unknown".to_owned(), ToString::to_string)
        ),
        other => format!("[MOCK] Executed {other} successfully\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_deterministic_and_near_the_rate() {
        let m = Mock { latency_ms: 0, failure_rate: 0.3 };
        let fails = (0..1000).filter(|i| m.fails(&format!("job-{i}"), 0)).count();
        assert!((200..400).contains(&fails), "{fails}");
        assert_eq!(m.fails("job-7", 1), m.fails("job-7", 1));
        assert!(!Mock::default().fails("x", 0));
    }
}
