//! JSON Schemas of every event's data, generated from the Rust types. The files in
//! `schemas/` are this module's output; a test fails when they drift.

use crate::commands::{Approve, Cancel, CommandReply, Deny, PolicyCheck, PolicyCheckReply};
use crate::job::JobEvent;
use crate::memory::{
    AddMemory, ForgetMemory, MemoryForgotten, MemoryQuery, MemoryRecorded, MemoryReply, SimilarJobs, SimilarQuery,
};
use crate::task::{TASK_REJECTED, TASK_REQUESTED, TaskRejected, TaskRequested};

/// Every schema SKYNET publishes, as (file name, pretty JSON), sorted by name.
pub fn all() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = JobEvent::schemas()
        .into_iter()
        .chain([
            (TASK_REQUESTED, schemars::schema_for!(TaskRequested)),
            (TASK_REJECTED, schemars::schema_for!(TaskRejected)),
            ("skynet.cmd.job.approve", schemars::schema_for!(Approve)),
            ("skynet.cmd.job.deny", schemars::schema_for!(Deny)),
            ("skynet.cmd.job.cancel", schemars::schema_for!(Cancel)),
            ("skynet.cmd.reply", schemars::schema_for!(CommandReply)),
            ("skynet.policy.check", schemars::schema_for!(PolicyCheck)),
            ("skynet.policy.check.reply", schemars::schema_for!(PolicyCheckReply)),
            ("skynet.memory.similar", schemars::schema_for!(SimilarQuery)),
            ("skynet.memory.similar.reply", schemars::schema_for!(SimilarJobs)),
            (crate::memory::RECORDED, schemars::schema_for!(MemoryRecorded)),
            (crate::memory::FORGOTTEN, schemars::schema_for!(MemoryForgotten)),
            (crate::memory::QUERY_SUBJECT, schemars::schema_for!(MemoryQuery)),
            ("skynet.memory.reply", schemars::schema_for!(MemoryReply)),
            (crate::memory::ADD, schemars::schema_for!(AddMemory)),
            (crate::memory::FORGET, schemars::schema_for!(ForgetMemory)),
            (crate::alert::RAISED, schemars::schema_for!(crate::alert::AlertRaised)),
            (crate::alert::RESOLVED, schemars::schema_for!(crate::alert::AlertResolved)),
            (crate::alert::UNDELIVERED, schemars::schema_for!(crate::alert::AlertUndelivered)),
            (crate::alert::SILENCED, schemars::schema_for!(crate::alert::Silenced)),
            (crate::alert::SILENCE, schemars::schema_for!(crate::alert::SilenceAlerts)),
            ("skynet.sentinel.status.reply", schemars::schema_for!(crate::alert::SystemStatus)),
            (crate::initiative::DECIDED, schemars::schema_for!(crate::initiative::Decided)),
            (crate::initiative::PAUSED, schemars::schema_for!(crate::initiative::Switched)),
            (crate::initiative::RESUMED, schemars::schema_for!(crate::initiative::Switched)),
            (crate::initiative::PAUSE, schemars::schema_for!(crate::initiative::SwitchInitiative)),
            (crate::initiative::RESUME, schemars::schema_for!(crate::initiative::SwitchInitiative)),
            ("skynet.initiative.status.reply", schemars::schema_for!(crate::initiative::InitiativeStatus)),
            (crate::system::PAUSED, schemars::schema_for!(crate::system::SystemSwitched)),
            (crate::system::RESUMED, schemars::schema_for!(crate::system::SystemSwitched)),
            (crate::system::PAUSE, schemars::schema_for!(crate::system::SwitchSystem)),
            (crate::system::RESUME, schemars::schema_for!(crate::system::SwitchSystem)),
            ("skynet.planner.preview", schemars::schema_for!(crate::task::PlanPreview)),
            ("skynet.planner.preview.reply", schemars::schema_for!(crate::task::PlanPreviewReply)),
            (crate::task::REPORT_RECEIVED, schemars::schema_for!(crate::task::ReportReceived)),
            ("skynet.executor.status", schemars::schema_for!(crate::executor::ExecutorStatus)),
            ("skynet.scheduler.diagnose", schemars::schema_for!(crate::executor::DiagnoseRequest)),
            ("skynet.scheduler.diagnose.reply", schemars::schema_for!(crate::executor::Diagnosis)),
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
