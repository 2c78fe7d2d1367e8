//! Identifiers. A job id is *derived* from the submitted request, never drawn at
//! random, so a submitter can compute and watch its own job before SKYNET answers,
//! and a request delivered twice maps onto the same job.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for SKYNET's UUIDv5 ids (a fixed random UUID; never change it: job
/// ids of existing requests would change with it).
const NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_0d4e_93a2_4c57_8f0e_5d2a_c3b1_7e90);

/// The id of one job aggregate. Rendered as a hyphenated UUID, which is also the
/// token in its NATS subjects (`skynet.job.<id>.<event>`), so it never contains a
/// `.`, `*` or `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// The job a task request opens: UUIDv5 over the request's CloudEvent `source`
    /// and `id`, which CloudEvents already requires to be unique together.
    pub fn for_request(source: &str, id: &str) -> Self {
        // A NUL separator keeps ("a", "bc") and ("ab", "c") apart.
        let name = format!("{source}\0{id}");
        JobId(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(JobId)
    }
}

/// A deterministic event id: the same decision about the same input always gets
/// the same id. Because the id is also the `Nats-Msg-Id`, a service that crashes
/// after publishing and re-runs its decision stores nothing twice.
///
/// `parts` name what made the event unique, typically the aggregate id, the event
/// kind and the id of the event or command that caused it.
pub fn event_id(parts: &[&str]) -> String {
    Uuid::new_v5(&NAMESPACE, parts.join("\0").as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_is_stable_and_separates_fields() {
        let a = JobId::for_request("cli", "42");
        assert_eq!(a, JobId::for_request("cli", "42"));
        assert_ne!(a, JobId::for_request("cli", "43"));
        assert_ne!(JobId::for_request("a", "bc"), JobId::for_request("ab", "c"));
        assert_eq!(a.to_string().parse::<JobId>().ok(), Some(a));
    }

    #[test]
    fn event_ids_are_deterministic() {
        assert_eq!(event_id(&["j", "planned"]), event_id(&["j", "planned"]));
        assert_ne!(event_id(&["j", "planned"]), event_id(&["j", "dispatched"]));
    }
}
