//! The sentinel: SKYNET watching itself, and telling people.
//!
//! Every `interval` it looks at the executors' heartbeats, the jobs read model
//! (jobs not starting, approvals waiting, jobs stalled), every durable
//! consumer's backlog, the dead-letter stream, and its own dependencies (NATS,
//! Postgres, the object stores); it never calls another service. What is wrong
//! becomes an alert with a stable fingerprint, raised and resolved as events in
//! the log (`skynet.alert.<fingerprint>.raised|resolved`), grouped (every
//! executor gone is one alert, however many jobs wait), not re-sent inside the
//! cooldown, muted by silences people set (themselves events), and sent to the
//! configured sinks ([`sinks`]). Its tables are read models of those events.
//!
//! Run as many as you like: one evaluates (the holder of a Postgres advisory
//! lock), the others stand by and take over. Each process counts the job
//! metrics it follows (sum them per instance, not across).

mod alerts;
mod config;
mod evaluate;
pub mod findings;
mod metrics;
mod observe;
mod service;
mod silence;
pub mod sinks;
mod status;
mod store;

pub use alerts::{Event, State, Transition, decide, evolve};
pub use config::Config;
pub use service::{Deps, SentinelError, handle, migrate, run};
