//! The scheduler: consumes `dispatched` jobs and records `scheduled` with the
//! chosen provider and every candidate's score breakdown — or fails the job
//! when no provider can run it, saying why.
//!
//! Score = 0.30 health + 0.25 load + 0.25 capability + 0.15 past success +
//! 0.05 latency (weights configurable). The signals come from the log and from
//! heartbeats, never from calls: health, capabilities and load from the
//! executors' entries in the `SKYNET_EXECUTORS` KV bucket; success and latency
//! from finished jobs' events. A provider that lacks a capability a step needs,
//! or that is unhealthy, is never chosen (the predecessor's mock won every tie).
//! A diagnose request answers the same breakdown without scheduling anything.
//! The [`watchdog`] fails a scheduled job that has not ended past the limits its
//! own events define.

mod config;
pub mod scoring;
mod service;
pub mod signals;
pub mod watchdog;

pub use config::{Config, Weights};
pub use service::{Ctx, Deps, handle, run};
