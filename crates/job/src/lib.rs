//! The job aggregate: SKYNET's one piece of domain state, as pure functions.
//!
//! * [`evolve`] applies one recorded event to the state. It makes no decisions:
//!   it only refuses events that cannot follow the current state
//!   ([`IllegalTransition`]).
//! * [`decide`] turns a command into the events to record, or a [`Rejection`]
//!   saying why not. It holds every business rule of the lifecycle.
//!
//! Neither does I/O, reads a clock or draws random numbers: ids and times come in
//! with the command, so both are deterministic and tested without tokio.

mod decide;
mod evolve;
mod state;

pub use decide::{Command, Rejection, UNVERIFIED, confirmation_for, decide};
pub use evolve::{IllegalTransition, evolve, replay};
pub use state::{Job, Status, StepState, StepStatus};
