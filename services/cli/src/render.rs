//! How the CLI shows things to people. Pure functions of their input (and of
//! whether to use color), so their output is checked against golden files.

use chrono::{DateTime, SecondsFormat, Utc};
use skynet_contract::Envelope;

/// Terminal styling, off when output is not a terminal or `NO_COLOR` is set.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }
    pub fn dim(self, t: &str) -> String {
        self.paint("2", t)
    }
    pub fn bold(self, t: &str) -> String {
        self.paint("1", t)
    }
    pub fn ok(self, t: &str) -> String {
        self.paint("32", t)
    }
    pub fn bad(self, t: &str) -> String {
        self.paint("31", t)
    }
    pub fn warn(self, t: &str) -> String {
        self.paint("33", t)
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One readable line for an event (`skynet watch`, `skynet task --wait`).
pub fn event_line(env: &Envelope, s: Style) -> String {
    let kind = env.ty.strip_prefix("skynet.job.").and_then(|k| k.strip_suffix(".v1")).unwrap_or(&env.ty);
    let job = env.subject.as_deref().map(short).unwrap_or("-");
    let d = &env.data;
    let text = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let detail = match kind {
        "requested" => {
            format!("{:?} by {}", text("intent"), d.get("requested_by").and_then(|v| v.as_str()).unwrap_or("?"))
        }
        "planned" => {
            let steps: Vec<String> = d["plan"]["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|st| st["action"].as_str().unwrap_or("?").to_owned())
                .collect();
            let via = match d.get("fallback_reason").and_then(|v| v.as_str()) {
                Some(r) => format!(" (fallback: {r})"),
                None => String::new(),
            };
            // What memory warned of, shown with the plan it did not change.
            let warnings: String = d["warnings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w.as_str())
                .map(|w| format!("\n    {}", s.warn(&format!("warning: {w}"))))
                .collect();
            format!("{} step(s): {} [{}]{via}{warnings}", steps.len(), steps.join(" → "), text("planner"))
        }
        "planning_failed" | "failed" | "denied" | "cancelled" => s.bad(&text("reason")),
        "policy_decided" => {
            let risk = text("risk");
            if d["allowed"] == false {
                s.bad(&format!(
                    "denied ({risk}): {}",
                    d["reasons"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            } else if d["requires_approval"] == true {
                s.warn(&format!("{risk}: needs approval ({} approver(s))", d["approvals_required"]))
            } else {
                format!("{risk}: approved by policy")
            }
        }
        "approved" => format!("by {}", text("approver")),
        "dispatched" => format!(
            "{} step(s) in {}",
            d["spec"]["steps"].as_array().map_or(0, Vec::len),
            d["spec"]["working_dir"].as_str().unwrap_or("?")
        ),
        "scheduled" => format!("on {}", text("provider")),
        "started" => format!("executor {} (lease {})", text("executor"), d["lease"]),
        "step_started" => format!("step {}", d["step"]),
        "step_output" => {
            let chunk = text("chunk");
            let first = chunk.lines().next().unwrap_or("").to_owned();
            let more = chunk.lines().count().saturating_sub(1);
            if more > 0 {
                s.dim(&format!("step {} │ {first} (+{more} lines)", d["step"]))
            } else {
                s.dim(&format!("step {} │ {first}", d["step"]))
            }
        }
        "step_succeeded" => s.ok(&format!("step {} ok in {} ms", d["step"], d["duration_ms"])) + &inline_output(d, s),
        "step_failed" => s.bad(&format!("step {} failed: {}", d["step"], text("error"))) + &inline_output(d, s),
        "succeeded" => s.ok(&format!("in {} ms", d["duration_ms"])),
        "timed_out" => s.bad(&format!("{} limit of {} s", text("scope"), d["limit_secs"])),
        "cancel_requested" => s.warn(&format!("by {}: {}", text("by"), text("reason"))),
        "artifact_stored" => format!("{} ({} bytes, {})", text("name"), d["size_bytes"], text("content_type")),
        _ => d.to_string(),
    };
    format!("{} {} {:<16} {detail}", s.dim(&time(&env.time)), s.bold(job), kind)
}

/// The first line of a quick step's output, carried in its result event.
fn inline_output(d: &serde_json::Value, s: Style) -> String {
    let text = d.get("stdout").or_else(|| d.get("stderr")).and_then(|v| v.as_str()).unwrap_or("");
    match text.lines().next() {
        Some(first) if !first.is_empty() => {
            let more = text.lines().count() - 1;
            let more = if more > 0 { format!(" (+{more} lines)") } else { String::new() };
            s.dim(&format!(" │ {first}{more}"))
        }
        _ => String::new(),
    }
}

/// The `skynet jobs` table.
pub fn jobs_table(rows: &[serde_json::Value], s: Style) -> String {
    if rows.is_empty() {
        return "no jobs\n".into();
    }
    let mut out = format!(
        "{}\n",
        s.bold(&format!(
            "{:<8}  {:<17}  {:<9}  {:<10}  {:<25}  {}",
            "JOB", "STATUS", "RISK", "BY", "CREATED", "INTENT"
        ))
    );
    for r in rows {
        let g = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("-");
        let status = g("status");
        let painted = match status {
            "succeeded" => s.ok(&format!("{status:<17}")),
            "failed" | "denied" | "timed_out" | "cancelled" => s.bad(&format!("{status:<17}")),
            "awaiting_approval" => s.warn(&format!("{status:<17}")),
            _ => format!("{status:<17}"),
        };
        let intent: String = g("intent").chars().take(60).collect();
        out.push_str(&format!(
            "{:<8}  {painted}  {:<9}  {:<10}  {:<25}  {intent}\n",
            short(g("id")),
            g("risk"),
            g("requested_by"),
            g("created_at")
        ));
    }
    out
}

/// `skynet job <id>`: the job, its steps, and its timeline.
pub fn job_detail(detail: &serde_json::Value, events: &[Envelope], s: Style) -> String {
    let j = &detail["job"];
    let g = |k: &str| j.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
    let mut out = format!("{} {}\n", s.bold("job"), g("id"));
    for (label, key) in [
        ("status", "status"),
        ("intent", "intent"),
        ("requested by", "requested_by"),
        ("risk", "risk"),
        ("provider", "provider"),
        ("executor", "executor"),
        ("error", "error"),
    ] {
        if j.get(key).is_some_and(|v| !v.is_null()) {
            out.push_str(&format!("  {:<13} {}\n", label, g(key)));
        }
    }
    out.push_str(&format!("{}\n", s.bold("steps")));
    for st in detail["steps"].as_array().into_iter().flatten() {
        let gs = |k: &str| st.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
        let mut line = format!("  {} {:<22} {:<10} {}", st["idx"], gs("action"), gs("status"), gs("title"));
        if let Some(e) = st.get("error").and_then(|v| v.as_str()) {
            line.push_str(&format!(" — {}", s.bad(e)));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("{}\n", s.bold("timeline")));
    for e in events {
        out.push_str("  ");
        out.push_str(&event_line(e, s));
        out.push('\n');
    }
    out
}
