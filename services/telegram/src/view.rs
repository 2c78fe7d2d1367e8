//! What a chat shows of a job, folded from the job's events (pure): its plan
//! with each step's risk, who decided, each step's exit code and an excerpt of
//! its output, and how it ended — and the texts of the bot's messages, kept
//! within Telegram's 4,096-character limit. Messages are sent as plain text
//! (no parse mode), so an intent or an output holding markup is shown as typed.

use serde::Serialize;
use skynet_contract::job::{JobEvent, Stage};
use skynet_contract::{Envelope, JobId, owners};
use skynet_job::{Job, Status};

/// Telegram's limit on a message's text (in UTF-16 code units).
pub const MAX_MESSAGE: usize = 4096;
/// The most of one step's output a message shows.
const EXCERPT_CHARS: usize = 400;

/// One step as shown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepView {
    pub title: String,
    pub action: Option<String>,
    pub risk: Option<String>,
    pub status: String,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<u64>,
    /// The end of the step's output (or its error), at most a few hundred characters.
    pub excerpt: Option<String>,
}

/// A job as a chat shows it.
#[derive(Debug, Clone)]
pub struct JobView {
    pub job: Job,
    pub steps: Vec<StepView>,
    /// Who approved, in order.
    pub approvals: Vec<String>,
    /// How it ended, in words (denied by whom, failed where, cancelled by whom).
    pub ending: Option<String>,
}

/// Folds a job's stored events (oldest first) into its view, skipping what a
/// replay skips: another job's events, a non-owner's, illegal transitions.
pub fn fold(job: JobId, events: &[(u64, Envelope)]) -> Option<JobView> {
    let mut state: Option<Job> = None;
    let mut steps: Vec<StepView> = Vec::new();
    let mut approvals = Vec::new();
    let mut ending = None;
    for (_, env) in events {
        let Ok((j, event)) = env.job_event() else { continue };
        if j != job || owners::wrong_source(event.kind(), &env.source).is_some() {
            continue;
        }
        let Ok(next) = skynet_job::evolve(state.clone(), &event) else { continue };
        state = Some(next);
        match event {
            JobEvent::Planned(p) => {
                steps = p
                    .plan
                    .steps
                    .iter()
                    .map(|s| StepView {
                        title: defang(&s.title),
                        action: s.action.clone(),
                        status: "pending".into(),
                        ..StepView::default()
                    })
                    .collect();
            }
            JobEvent::PolicyDecided(d) => {
                for (step, risk) in steps.iter_mut().zip(&d.step_risks) {
                    step.risk = Some(risk.as_str().to_owned());
                }
                if !d.allowed {
                    ending = Some(format!("refused by policy: {}", defang(&d.reasons.join("; "))));
                }
            }
            JobEvent::Approved(a) => approvals.push(a.approver),
            JobEvent::Denied(d) => ending = Some(format!("denied by {}: {}", d.by, defang(&d.reason))),
            JobEvent::PlanningFailed(p) => ending = Some(format!("planning failed: {}", defang(&p.reason))),
            JobEvent::StepStarted(s) => set(&mut steps, s.step, |v| v.status = "running".into()),
            JobEvent::StepSucceeded(s) => set(&mut steps, s.step, |v| {
                v.status = "succeeded".into();
                v.exit_code = Some(s.exit_code);
                v.duration_ms = Some(s.duration_ms);
                v.excerpt = excerpt([s.stdout.as_deref(), s.stderr.as_deref()]);
            }),
            JobEvent::StepFailed(s) => set(&mut steps, s.step, |v| {
                v.status = "failed".into();
                v.exit_code = s.exit_code;
                v.duration_ms = Some(s.duration_ms);
                v.excerpt = excerpt([s.stdout.as_deref(), s.stderr.as_deref(), Some(s.error.as_str())]);
            }),
            JobEvent::Failed(f) => {
                let step = f.step.map(|s| format!(" (step {})", s + 1)).unwrap_or_default();
                ending = Some(format!("failed at {}{step}: {}", word(&f.stage), defang(&f.reason)));
                if f.stage == Stage::Execution {
                    for s in steps.iter_mut().filter(|s| s.status == "running") {
                        s.status = "failed".into();
                    }
                }
            }
            JobEvent::Cancelled(c) => ending = Some(format!("cancelled by {}: {}", c.by, defang(&c.reason))),
            JobEvent::TimedOut(t) => {
                ending = Some(format!("timed out ({} limit of {} s)", word(&t.scope), t.limit_secs));
            }
            _ => {}
        }
    }
    Some(JobView { job: state?, steps, approvals, ending })
}

fn set(steps: &mut [StepView], index: u32, f: impl FnOnce(&mut StepView)) {
    if let Some(s) = steps.get_mut(index as usize) {
        f(s);
    }
}

/// The last characters of the first non-empty output.
fn excerpt<'a>(outputs: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    let text = outputs.into_iter().flatten().map(str::trim).find(|t| !t.is_empty())?;
    let count = text.chars().count();
    if count <= EXCERPT_CHARS {
        return Some(defang(text));
    }
    Some(format!("…{}", defang(&text.chars().skip(count - EXCERPT_CHARS).collect::<String>())))
}

/// Text from outside (an intent, a title, output, a reason) made inert:
/// Telegram turns `/word` into a command a tap sends, so a `/` that starts a
/// word is followed by an invisible word joiner — an intent holding
/// "/emergency_stop" is not one tap from stopping the system.
pub fn defang(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at_word_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '/' && at_word_start && chars.peek().is_some_and(|n| n.is_alphanumeric() || *n == '_') {
            out.push('\u{2060}');
        }
        at_word_start = c.is_whitespace() || c == '(' || c == '"' || c == '\'';
    }
    out
}

/// A value's wire name (`execution`, `job`), for words in a message.
fn word(v: &impl Serialize) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The job's header: id, intent, requester, status.
fn header(v: &JobView) -> String {
    let who = v.job.request.requested_by.as_deref().unwrap_or("someone");
    let risk = v.job.policy.as_ref().map(|p| format!(" · risk {}", p.risk.as_str())).unwrap_or_default();
    format!("Job {}\n“{}”\nby {who} · {}{risk}", v.job.id, defang(&v.job.request.intent), v.job.status.as_str())
}

/// The plan, one line per step with its risk.
fn plan_lines(v: &JobView, out: &mut String) {
    if let Some(plan) = &v.job.plan {
        out.push_str(&format!("\n\nPlan: {}", defang(&plan.summary)));
    }
    for (i, s) in v.steps.iter().enumerate() {
        let risk = s.risk.as_deref().unwrap_or("?");
        let action = s.action.as_deref().unwrap_or("unmapped");
        out.push_str(&format!("\n{}. [{risk}] {} ({action})", i + 1, s.title));
    }
}

/// Sent to people who may approve: the plan and each step's risk.
pub fn approval_request(v: &JobView) -> String {
    let mut out = format!("Approval needed\n\n{}", header(v));
    plan_lines(v, &mut out);
    if let Some(p) = &v.job.policy {
        if !p.reasons.is_empty() {
            out.push_str(&format!("\n\nWhy: {}", defang(&p.reasons.join("; "))));
        }
        if p.approvals_required > 1 {
            out.push_str(&format!("\nApprovals: {} of {}", v.approvals.len(), p.approvals_required));
        }
    }
    fit(out, "")
}

/// The answer to `/task` and `/status <job>`: the plan and where the job is.
pub fn summary(v: &JobView, hint: &str) -> String {
    let mut out = header(v);
    plan_lines(v, &mut out);
    if !v.approvals.is_empty() {
        out.push_str(&format!("\n\nApproved by {}", v.approvals.join(", ")));
    }
    if v.job.status.is_terminal() {
        return outcome(v, hint);
    }
    if v.job.status == Status::AwaitingApproval {
        out.push_str("\n\nWaiting for approval.");
    }
    fit(out, hint)
}

/// A finished job: the outcome, each step's exit code and output excerpt.
pub fn outcome(v: &JobView, hint: &str) -> String {
    let mark = match v.job.status {
        Status::Succeeded => "✅",
        Status::Cancelled => "⏹",
        Status::Denied => "🚫",
        _ => "❌",
    };
    let mut out = format!("{mark} {}", header(v));
    if let Some(e) = &v.ending {
        out.push_str(&format!("\n{e}"));
    }
    if !v.approvals.is_empty() {
        out.push_str(&format!("\nApproved by {}", v.approvals.join(", ")));
    }
    for (i, s) in v.steps.iter().enumerate() {
        let code = s.exit_code.map(|c| format!(" · exit {c}")).unwrap_or_default();
        let took = s.duration_ms.map(|d| format!(" · {:.1} s", d as f64 / 1000.0)).unwrap_or_default();
        out.push_str(&format!("\n\n{}. {} — {}{code}{took}", i + 1, s.title, s.status));
        if let Some(x) = &s.excerpt {
            out.push_str(&format!("\n{x}"));
        }
    }
    fit(out, &hint.replace("<id>", &v.job.id.to_string()))
}

/// `text` cut to fit one message, saying so and where the rest is.
pub fn fit(text: String, hint: &str) -> String {
    if utf16_len(&text) <= MAX_MESSAGE {
        return text;
    }
    let note =
        if hint.is_empty() { "\n… (cut to fit a message)".to_owned() } else { format!("\n… (cut; full: {hint})") };
    let budget = MAX_MESSAGE - utf16_len(&note);
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        used += c.len_utf16();
        if used > budget {
            break;
        }
        out.push(c);
    }
    out + &note
}

/// Length as Telegram counts it.
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

#[cfg(test)]
#[path = "view/tests.rs"]
mod tests;
