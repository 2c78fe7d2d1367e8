//! What SKYNET knows about actions and risk, shared by the planner, the policy
//! service and the dispatcher (and later the executors). Pure: no I/O except
//! reading the rules file and canonicalising paths.
//!
//! * [`catalog`]: every action, its typed parameters and timeouts.
//! * [`project`]: the commands of a project's tests, lint, build and install.
//! * [`mapping`]: plan-step text → action, by whole words.
//! * [`policy`]: the rules file (risk table, blocked actions, sandbox, approvals,
//!   rate limits), its validation, and the checks built on it.
//! * [`sandbox`]: path containment after canonicalisation.

pub mod catalog;
pub mod mapping;
pub mod policy;
pub mod project;
pub mod sandbox;

pub use policy::{PolicyRules, RulesError};
