//! JSON Schemas of every event's data, generated from the Rust types. The files in
//! `schemas/` are this module's output; a test fails when they drift.

use crate::job::JobEvent;
use crate::task::{TASK_REJECTED, TASK_REQUESTED, TaskRejected, TaskRequested};

/// Every schema SKYNET publishes, as (file name, pretty JSON), sorted by name.
pub fn all() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = JobEvent::schemas()
        .into_iter()
        .chain([
            (TASK_REQUESTED, schemars::schema_for!(TaskRequested)),
            (TASK_REJECTED, schemars::schema_for!(TaskRejected)),
        ])
        .map(|(ty, schema)| {
            let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
            text.push('\n');
            (format!("{ty}.json"), text)
        })
        .collect();
    out.sort();
    out
}
