//! The dispatcher: turns an approved plan into an execution spec — each step a
//! catalog action with parameters and a timeout — or fails the job with a
//! reason naming the step that cannot run. It never guesses: a step that maps to
//! no action fails dispatch (the predecessor silently ran `list_directory`).
//!
//! Every step is validated before anything is emitted: known action, required
//! parameters present, risk not above what was approved, never blocked, and a
//! working directory inside a sandbox root after canonicalisation.

mod config;
mod service;
pub mod spec;

pub use config::Config;
pub use service::{Deps, handle, run};
