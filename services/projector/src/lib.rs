//! The projector: the one writer of SKYNET's Postgres read models.
//!
//! It reads the event log in order from its checkpoint, and writes each batch of
//! events together with the new checkpoint in one transaction. A crash therefore
//! never double-applies or skips an event. `rebuild_shadow` replays the whole
//! log into shadow tables beside the live ones and swaps them in, under a live
//! projector; `rebuild` empties the tables in place (no projector running).
//!
//! If the log holds fewer events than the checkpoint says were applied (the
//! stream was lost or replaced), the projector refuses to run rather than serve
//! a silently wrong view. An event it cannot store (undecodable, or refused by
//! Postgres) is quarantined with the reason and dead-lettered; the events after
//! it project as usual.

mod audit;
mod bulk;
mod config;
mod copy;
mod db;
mod projector;
mod quarantine;
mod reader;
pub mod rows;
mod shadow;
mod writer;

pub use config::Config;
pub use projector::{Deps, Progress, ProjectorError, checkpoint, migrate, rebuild, run};
pub use shadow::rebuild_shadow;
