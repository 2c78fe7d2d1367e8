//! What executors say about themselves, and the scheduler's diagnose contract.
//!
//! Each executor writes an [`ExecutorStatus`] into the `SKYNET_EXECUTORS` KV
//! bucket (key = executor id) every heartbeat; the bucket's max age removes the
//! entry of an executor that stopped heartbeating, which is how it goes offline.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::job::ProviderScore;
use crate::plan::ExecSpec;

/// Request/reply subject of the scheduler's diagnosis.
pub const DIAGNOSE_SUBJECT: &str = "skynet.scheduler.diagnose";

/// Health of one provider, as its executor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

/// One provider on one executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderStatus {
    pub health: Health,
    /// Why it is not healthy (or what it is connected to).
    #[serde(default)]
    pub message: String,
    /// Actions it can run.
    pub capabilities: Vec<String>,
    /// How long the last health check took.
    #[serde(default)]
    pub latency_ms: u64,
}

/// An executor's heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutorStatus {
    pub id: String,
    pub providers: BTreeMap<String, ProviderStatus>,
    /// Jobs it runs at once.
    pub capacity: u32,
    /// Jobs it runs now.
    pub running: u32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    #[serde(default)]
    pub version: String,
}

/// Request of [`DIAGNOSE_SUBJECT`]: score a spec without scheduling it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiagnoseRequest {
    pub spec: ExecSpec,
}

/// Reply of [`DIAGNOSE_SUBJECT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Diagnosis {
    /// The provider that would be chosen, if any can run the spec.
    pub selected_provider: Option<String>,
    pub required_capabilities: Vec<String>,
    /// Every known provider's score, best first; excluded ones say why.
    pub scores: Vec<ProviderScore>,
    /// Why nothing was selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
