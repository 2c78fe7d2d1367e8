//! SKYNET's binding to NATS JetStream.
//!
//! * [`auth`]: roles, per-role credentials and connecting under a role.
//! * [`codec`]: CloudEvents structured/binary mode over NATS messages.
//! * [`definitions`]: the streams and consumers in `nats/`, and `bootstrap`.
//! * [`store`]: the event store, with per-job optimistic concurrency.
//! * [`repo`]: load → decide → append with bounded conflict retries.
//! * [`dlq`]: dead letters with reasons.
//! * [`read`]: reading stored messages by direct get, without a consumer.
//! * [`history`]: the recent jobs' messages this process appended or read.
//! * [`principals`]: API tokens of named principals with roles.
//! * [`publish`](mod@publish): publishing events outside job aggregates.
//! * [`consumer`]: the durable-consumer loop services run.
//! * [`server`]: a nats-server child process when none is configured.

pub mod auth;
pub mod cache;
pub mod codec;
pub mod consumer;
pub mod deadlines;
pub mod definitions;
pub mod dlq;
pub mod history;
pub mod pause;
pub mod principals;
pub mod publish;
pub mod read;
pub mod repo;
pub mod server;
pub mod store;
pub mod trace;

pub use definitions::bootstrap;
pub use publish::{publish, publish_expecting};
pub use repo::{ExecuteError, Jobs, Outcome};
pub use store::{AppendError, Appended, EventStore, History};
