//! The executor: runs scheduled jobs. Start as many as you like; they share the
//! work through one JetStream pull consumer.
//!
//! * A job's **lease** is its JetStream delivery: the executor holding it keeps
//!   it with progress acks; if the executor dies, the job is redelivered to
//!   another after the ack wait (5 s). The delivery count is the **fencing
//!   token**: every step result carries it, and the job refuses results from an
//!   older lease, so a stale executor cannot record anything after losing it.
//! * Steps run in order on the job's provider ([`providers`]), each under the
//!   tightest of four limits: the job's total, the step cap (600 s), the
//!   per-action table, and the command's own `timeout` parameter.
//! * A cancel request reaches the running process within milliseconds (core
//!   NATS subscription on the job's `cancel_requested` subject) and kills its
//!   process group.
//! * A step that ends within the live delay (250 ms) is recorded by its result
//!   event alone, small output included. A longer step records `step_started`,
//!   streams bounded `step_output` events, and stores its full output in the
//!   `SKYNET_OUTPUT` object store. Plan artifacts go to `SKYNET_ARTIFACTS`.
//! * Each executor heartbeats its providers, health, capabilities, capacity and
//!   load into the `SKYNET_EXECUTORS` KV bucket; an entry that stops being
//!   refreshed expires, which marks the executor offline.

mod config;
mod heartbeat;
pub mod orphans;
pub mod providers;
mod runner;
mod service;

pub use config::{Config, ProvidersConfig};
pub use service::{Deps, run};
