//! The policy service: governance between a plan and its execution.
//!
//! * [`decision`]: classifies each planned job (pure): per-step risk, blocked
//!   steps, sandbox check of every named directory, whether people must approve.
//! * consumer on `skynet.job.*.planned` records the decision (`policy_decided`);
//!   READ_ONLY plans are approved by policy (configurable).
//! * [`commands`]: approve / deny / cancel and the single-action check, over
//!   NATS request/reply, validated against the job's state.
//! * [`system`]: the emergency stop (`skynet.cmd.system.pause|resume`, admin
//!   role), recorded on `skynet.system.control` for the dispatcher and executors.
//! * [`deadlines`]: unanswered approvals cancel the job after the timeout. The
//!   deadlines live in a KV bucket swept periodically, so they survive restarts
//!   and need no task per job.

pub mod commands;
mod config;
pub mod deadlines;
pub mod decision;
mod service;
pub mod system;

pub use config::Config;
pub use service::{Deps, handle_planned, run};
