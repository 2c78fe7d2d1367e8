//! What a finished job teaches, computed from its events alone (pure, so a
//! rebuild from the log learns exactly the same): its task-execution record,
//! the failures of its steps, and the shape of its plan.

use chrono::{DateTime, Utc};
use serde_json::json;
use skynet_contract::JobId;
use skynet_contract::job::JobEvent;

/// One finished job, as memory keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub job: JobId,
    pub intent: String,
    pub working_dir: Option<String>,
    pub summary: String,
    pub actions: Vec<String>,
    /// The terminal event's kind (`succeeded`, `failed`, …).
    pub outcome: String,
    pub risk: Option<String>,
    pub duration_ms: Option<u64>,
    pub provider: Option<String>,
    pub error: Option<String>,
    pub artifacts: Vec<String>,
    pub finished_at: DateTime<Utc>,
}

impl Execution {
    pub fn succeeded(&self) -> bool {
        self.outcome == "succeeded"
    }

    /// What similarity searches: the intent, then the plan in words.
    pub fn text(&self) -> String {
        format!("{} — {} [{}]", self.intent, self.summary, self.actions.join(" "))
    }

    pub fn content(&self) -> serde_json::Value {
        json!({
            "job_id": self.job, "intent": self.intent, "working_dir": self.working_dir,
            "summary": self.summary, "actions": self.actions, "outcome": self.outcome,
            "risk": self.risk, "duration_ms": self.duration_ms, "provider": self.provider,
            "error": self.error, "artifacts": self.artifacts,
        })
    }
}

/// One failed step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFailure {
    pub step: u32,
    pub action: String,
    pub class: String,
    /// Normalised: the same failure reads the same every time.
    pub message: String,
}

impl StepFailure {
    /// The pattern's key: action, error class and normalised message.
    pub fn signature(&self) -> String {
        format!("{}|{}|{}", self.action, self.class, self.message)
    }
}

/// Everything one finished job teaches.
#[derive(Debug, Clone, PartialEq)]
pub struct Lesson {
    pub execution: Execution,
    pub failures: Vec<StepFailure>,
}

/// The lesson of a job whose events (oldest first) end in a terminal one;
/// `None` while it has not finished.
pub fn lesson(job: JobId, events: &[(JobEvent, DateTime<Utc>)]) -> Option<Lesson> {
    let (last, finished_at) = events.iter().rev().find(|(e, _)| is_terminal(e))?;
    let mut x = Execution {
        job,
        intent: String::new(),
        working_dir: None,
        summary: String::new(),
        actions: Vec::new(),
        outcome: last.kind().token().to_owned(),
        risk: None,
        duration_ms: None,
        provider: None,
        error: None,
        artifacts: Vec::new(),
        finished_at: *finished_at,
    };
    let mut failures = Vec::new();
    // The first stderr line each step streamed (a long step's output is not
    // in its result event).
    let mut streamed_err: std::collections::BTreeMap<u32, String> = std::collections::BTreeMap::new();
    for (e, _) in events {
        match e {
            JobEvent::Requested(r) => {
                x.intent.clone_from(&r.intent);
                x.working_dir.clone_from(&r.working_dir);
            }
            JobEvent::Planned(p) => {
                x.summary.clone_from(&p.plan.summary);
                x.actions = p.plan.steps.iter().map(|s| s.action.clone().unwrap_or_default()).collect();
            }
            JobEvent::PolicyDecided(d) => x.risk = Some(format!("{:?}", d.risk).to_uppercase()),
            JobEvent::Dispatched(d) => {
                x.working_dir = Some(d.spec.working_dir.clone());
                x.actions = d.spec.steps.iter().map(|s| s.action.clone()).collect();
            }
            JobEvent::Scheduled(s) => x.provider = Some(s.provider.clone()),
            JobEvent::ArtifactStored(a) => x.artifacts.push(a.name.clone()),
            JobEvent::StepOutput(o) if o.stream == skynet_contract::job::OutputStream::Stderr => {
                if let Some(line) = o.chunk.lines().find(|l| !l.trim().is_empty()) {
                    streamed_err.entry(o.step).or_insert_with(|| line.to_owned());
                }
            }
            JobEvent::StepFailed(f) => {
                let action = x.actions.get(f.step as usize).cloned().unwrap_or_default();
                let first_err_line = f
                    .stderr
                    .as_deref()
                    .and_then(|s| s.lines().find(|l| !l.trim().is_empty()))
                    .or(streamed_err.get(&f.step).map(String::as_str));
                let raw = match first_err_line {
                    Some(line) => format!("{}: {line}", f.error),
                    None => f.error.clone(),
                };
                failures.push(StepFailure { step: f.step, action, class: class(&f.error), message: normalise(&raw) });
                x.error = Some(f.error.clone());
            }
            JobEvent::Succeeded(s) => {
                x.duration_ms = Some(s.duration_ms);
                x.provider = s.provider.clone().or(x.provider.take());
            }
            JobEvent::Failed(f) => x.error = Some(f.reason.clone()),
            JobEvent::PlanningFailed(f) => x.error = Some(f.reason.clone()),
            JobEvent::Denied(d) => x.error = Some(format!("denied by {}: {}", d.by, d.reason)),
            JobEvent::Cancelled(c) => x.error = Some(format!("cancelled by {}: {}", c.by, c.reason)),
            JobEvent::TimedOut(t) => x.error = Some(format!("timed out ({:?}, {} s)", t.scope, t.limit_secs)),
            _ => {}
        }
    }
    Some(Lesson { execution: x, failures })
}

/// The kinds after which a job changes no more.
pub fn is_terminal(e: &JobEvent) -> bool {
    matches!(
        e,
        JobEvent::Succeeded(_)
            | JobEvent::Failed(_)
            | JobEvent::TimedOut(_)
            | JobEvent::Cancelled(_)
            | JobEvent::Denied(_)
            | JobEvent::PlanningFailed(_)
    )
}

/// The error's class: what kind of failure, whatever its details.
fn class(error: &str) -> String {
    let e = error.to_lowercase();
    if e.contains("timed out") {
        "timeout".into()
    } else if e.contains("not allowed") || e.contains("refused") || e.contains("symbolic link") {
        "refused".into()
    } else if e.contains("not available") || e.contains("cannot start") {
        "unavailable".into()
    } else if let Some(code) = e.strip_prefix("exit code ") {
        format!("exit_{}", code.trim())
    } else {
        "error".into()
    }
}

/// Lower case, numbers as `#`, ids and hashes as `<id>`, paths as `<path>`,
/// whitespace collapsed, at most 200 characters: two runs of the same failure
/// in different places or at different times read the same.
pub fn normalise(message: &str) -> String {
    let mut out = Vec::new();
    for word in message.to_lowercase().split_whitespace() {
        let bare = word.trim_matches(|c: char| "'\"`()[],;".contains(c));
        let is_id = bare.len() >= 8
            && bare.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
            && bare.chars().any(|c| c.is_ascii_digit());
        let w = if bare.starts_with('/') || bare.starts_with("~/") || bare.starts_with("./") {
            "<path>".to_owned()
        } else if is_id {
            "<id>".to_owned()
        } else {
            let mut w = String::with_capacity(word.len());
            for c in word.chars() {
                if c.is_ascii_digit() {
                    if !w.ends_with('#') {
                        w.push('#');
                    }
                } else {
                    w.push(c);
                }
            }
            w
        };
        out.push(w);
    }
    let mut s = out.join(" ");
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_failure_elsewhere_and_later_reads_the_same() {
        let a = normalise("make: *** [Makefile:2: test] Error 1 in /tmp/abc/proj after 12.5 s (job 1a2b3c4d-0000)");
        let b = normalise("make: *** [Makefile:7: test] Error 1 in /srv/other after 3.25 s (job 9f8e7d6c-1111)");
        assert_eq!(a, b);
        assert_eq!(class("exit code 2"), "exit_2");
        assert_eq!(class("timed out after 3 s"), "timeout");
        assert_ne!(normalise("cannot open config"), normalise("cannot open database"));
    }
}
