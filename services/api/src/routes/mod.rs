//! The API's routes, one file per concern.

pub mod alerts;
pub mod events;
pub mod initiative;
pub mod jobs;
pub mod legacy;
pub mod memory;
pub mod system;
pub mod tasks;
