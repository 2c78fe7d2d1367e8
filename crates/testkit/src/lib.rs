//! Test support shared by every crate's tests: a real `nats-server` started per
//! test on a random port with a temporary store ([`NatsServer`]), a fresh Postgres
//! database ([`TestDb`]), and [`eventually`], which polls a condition until a
//! deadline instead of sleeping.
//!
//! Nothing here mocks the broker or the database.

mod fixtures;
mod log;
mod nats;
mod pg;
mod poll;

pub use fixtures::{Log, auto_approved, record, requested};
pub use log::{count_messages, fetch_one};
pub use nats::{NatsServer, workspace_root};
pub use pg::TestDb;
pub use poll::{eventually, eventually_every};
