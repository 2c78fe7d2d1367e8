//! The SKYNET event contract.
//!
//! Every message that crosses a service boundary is defined here and nowhere else:
//! the CloudEvent types ([`types`]), the data each one carries ([`job`], [`task`],
//! [`plan`]), how ids are derived ([`ids`]), and the subjects they travel on
//! ([`subjects`]). Only types in this crate derive `Serialize`/`Deserialize` for the
//! wire; services convert to their own types at the edge.
//!
//! A published event type is never edited. A breaking change adds a `.v2` type and
//! an upcaster next to the v1 decoder in [`job::JobEvent::decode`].

pub mod alert;
pub mod commands;
pub mod envelope;
pub mod executor;
pub mod ids;
pub mod initiative;
pub mod job;
pub mod memory;
pub mod owners;
pub mod plan;
pub mod principal;
pub mod raw;
pub mod schema;
pub mod subjects;
pub mod system;
pub mod task;

pub use envelope::{DecodeError, Envelope, SPEC_CONTENT_TYPE};
pub use ids::JobId;
pub use job::{JobEvent, JobEventKind};
pub use plan::{ExecSpec, ExecStep, Plan, PlanStep, Risk};
pub use raw::RawEnvelope;
pub use task::{TaskRejected, TaskRequested};
