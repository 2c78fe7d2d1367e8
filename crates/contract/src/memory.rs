//! The memory service's request/reply contract, as far as other services use it
//! today: "what happened to jobs like this one?". The planner asks with a short
//! timeout and plans without an answer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Request/reply subject for similar past jobs.
pub const SIMILAR_SUBJECT: &str = "skynet.memory.similar";

/// Request on [`SIMILAR_SUBJECT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimilarQuery {
    pub intent: String,
    pub limit: u32,
}

/// One past job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PastJob {
    pub intent: String,
    pub succeeded: bool,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub duration_secs: Option<f64>,
}

/// Reply on [`SIMILAR_SUBJECT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SimilarJobs {
    pub jobs: Vec<PastJob>,
}
