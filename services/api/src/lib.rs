//! The HTTP API (axum). It never calls a service directly: it publishes
//! submissions and commands on NATS, reads the Postgres read models, and reads
//! the event log itself for history and live events.
//!
//! * [`routes`]: jobs, tasks, commands, live events, and the predecessor's endpoints.
//! * [`error`]: every failure as `application/problem+json` with a stable code.
//! * [`guard`]: bearer-token auth for mutations (and reads when closed), per-client
//!   rate limits.
//! * [`ui`]: the web dashboard at `/` (sessions, CSRF, live pages).
//! * [`openapi`]: the OpenAPI 3 document, served at `/openapi.json` and checked in.

mod config;
pub mod error;
mod extract;
pub mod guard;
pub mod openapi;
pub mod routes;
mod server;
mod state;
pub mod ui;

pub use config::{Config, MetricsRender};
pub use server::{Deps, router, run};
pub use state::AppState;
