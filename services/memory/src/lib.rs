//! The memory service: SKYNET remembers what happened, and the planner uses it.
//!
//! From the log it learns, per finished job, a *task execution* record; from
//! failed steps, *failure patterns* (action, error class and normalised
//! message: the same failure twice is one pattern seen twice); from plans that
//! ran, *success strategies* per plan shape. People add *user preferences* and
//! *environment facts* through `skynet.cmd.memory.add`, which the service
//! records as an event first: every table is a read model of the log and can be
//! dropped and rebuilt ([`rebuild`]); only retrieval counts are operational.
//!
//! It answers the planner's `skynet.memory.similar` (past runs ranked by
//! similarity and importance, failures seen in the job's directory) within the
//! planner's budget, and people's searches and stats on `skynet.memory.query`.
//! Similarity needs nothing but Postgres (see [`store`]).

mod answers;
mod config;
pub mod group;
mod known;
pub mod learn;
mod rebuild;
mod service;
pub mod store;
mod upkeep;

pub use config::Config;
pub use known::KnownFailures;
pub use rebuild::rebuild;
pub use service::{Deps, MemoryError, handle, migrate, run};
pub use upkeep::{Retrievals, sweep};
