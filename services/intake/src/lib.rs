//! The intake service: the front door of SKYNET.
//!
//! Anyone submits a task by publishing a `skynet.task.requested.v1` CloudEvent on
//! `skynet.intake.task` (structured or binary mode, with any NATS client). The
//! intake validates it ([`validate`]) and opens the job in the event log under a
//! job id derived from the request, so the same submission twice opens one job.
//! A submission it cannot accept is dead-lettered unchanged with its reason and
//! recorded as a `skynet.task.rejected.v1` event; it never crashes the intake and
//! never blocks the tasks behind it.

mod config;
pub mod ratelimit;
mod service;
pub mod validate;

pub use config::Config;
pub use service::{Deps, handle, run};
