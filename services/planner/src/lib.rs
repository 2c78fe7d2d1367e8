//! The planner service: consumes `skynet.job.*.requested` and records a plan
//! (`planned`) or why there is none (`planning_failed`).
//!
//! Backends ([`config::Backend`]): the rule planner ([`rules`], default, offline
//! and deterministic) or an OpenAI-compatible LLM ([`llm`]) that falls back to
//! the rules on any failure, with the reason recorded in the event. Before
//! planning it asks the memory service for similar past jobs, and plans without
//! them when nobody answers in time.

pub mod config;
pub mod llm;
pub mod rules;
mod service;

pub use config::{Backend, Config, LlmConfig};
pub use service::{Deps, handle, run};
