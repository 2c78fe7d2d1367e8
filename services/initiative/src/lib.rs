//! The initiative: SKYNET proposing safe work on its own, inside hard limits.
//!
//! Every interval it looks at the system through facts others recorded — the
//! jobs read model, the memory tables, the sentinel's alerts, the executors'
//! heartbeats — and asks its strategies ([`strategies`]: maintenance,
//! recovery, optimisation) whether to act. A strategy that triggers proposes a
//! plan of catalog actions, and the task goes through the front door like any
//! other (`skynet.intake.task`, source `skynet/initiative`): planning, the
//! policy (which holds initiative jobs to `[initiative]` of the rules —
//! READ_ONLY and nothing that waits for a person, by default), the sandbox
//! and the audit apply unchanged.
//!
//! Its limits (per hour, per day, at once) are counted from its ledger in the
//! log ([`ledger`]), appended under optimistic concurrency, so they hold
//! across restarts and across any number of initiative processes. People hold
//! a kill switch (`skynet initiative pause|resume`), itself an event. It is
//! off in `skynet up` unless enabled.

mod commands;
pub mod config;
mod evaluate;
mod facts;
pub mod ledger;
mod service;
mod store;
pub mod strategies;

pub use commands::{status, switch};
pub use config::Config;
pub use evaluate::evaluate_once;
pub use service::{Clock, Deps, InitiativeError, migrate, run, system_clock};
