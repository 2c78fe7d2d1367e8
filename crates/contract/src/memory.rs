//! The memory service's contract: what it records in the log (records people
//! add, records it forgets), what the planner asks it ("what happened to jobs
//! like this one?", with a short timeout, planning without an answer), and the
//! queries and commands of people and programs.
//!
//! Every memory table is a read model of the log: task executions, failure
//! patterns and success strategies come from job events; user preferences and
//! environment facts from [`RECORDED`] events; forgetting is a [`FORGOTTEN`]
//! event. Only how often a record was retrieved is operational state.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Request/reply subject for similar past jobs (the planner).
pub const SIMILAR_SUBJECT: &str = "skynet.memory.similar";
/// Request/reply subject of searches and statistics (people and programs).
pub const QUERY_SUBJECT: &str = "skynet.memory.query";
/// Command: add a user preference or environment fact.
pub const ADD: &str = "skynet.cmd.memory.add";
/// Command: forget a record.
pub const FORGET: &str = "skynet.cmd.memory.forget";

/// CloudEvent type of a record added by a person or program.
pub const RECORDED: &str = "skynet.memory.recorded.v1";
/// CloudEvent type of a record forgotten (by a person, or by retention).
pub const FORGOTTEN: &str = "skynet.memory.forgotten.v1";

/// Where a memory event about record `id` is stored (`recorded` or `forgotten`).
pub fn subject(id: &str, event: &str) -> String {
    format!("skynet.memory.{id}.{event}")
}

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// One finished job: intent, project, plan, outcome.
    TaskExecution,
    /// A failure seen once or more (same action, error class and message).
    FailurePattern,
    /// A plan shape (its action sequence) and how it fared.
    SuccessStrategy,
    /// How someone wants things done (added by people).
    UserPreference,
    /// Something true of the environment (added by people or programs).
    EnvironmentFact,
}

impl MemoryKind {
    pub const ALL: &'static [MemoryKind] = &[
        MemoryKind::TaskExecution,
        MemoryKind::FailurePattern,
        MemoryKind::SuccessStrategy,
        MemoryKind::UserPreference,
        MemoryKind::EnvironmentFact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MemoryKind::TaskExecution => "task_execution",
            MemoryKind::FailurePattern => "failure_pattern",
            MemoryKind::SuccessStrategy => "success_strategy",
            MemoryKind::UserPreference => "user_preference",
            MemoryKind::EnvironmentFact => "environment_fact",
        }
    }

    pub fn parse(s: &str) -> Option<MemoryKind> {
        MemoryKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Whether people add records of this kind (the others come from the log).
    pub fn added_by_people(self) -> bool {
        matches!(self, MemoryKind::UserPreference | MemoryKind::EnvironmentFact)
    }
}

/// `data` of [`RECORDED`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryRecorded {
    pub id: String,
    pub kind: MemoryKind,
    /// The record itself, in words (what similarity searches).
    pub text: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The principal who added it.
    pub recorded_by: String,
}

/// `data` of [`FORGOTTEN`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryForgotten {
    pub id: String,
    pub reason: String,
    /// The principal, or `retention`.
    pub forgotten_by: String,
}

/// Request on [`SIMILAR_SUBJECT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimilarQuery {
    pub intent: String,
    /// Past runs wanted (0: only the directory's failures).
    pub limit: u32,
    /// The job's directory: failure patterns seen there are returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
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
    /// The memory record (the job's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its importance for this query (0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// A failure seen in the asked directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KnownFailure {
    /// The pattern's record id.
    pub id: String,
    pub action: String,
    /// The normalised message.
    pub message: String,
    /// Times seen in this directory.
    pub count: u64,
    pub last_seen: DateTime<Utc>,
}

/// Reply on [`SIMILAR_SUBJECT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SimilarJobs {
    pub jobs: Vec<PastJob>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<KnownFailure>,
}

/// What memory contributed to a plan (recorded in the `planned` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryUsed {
    pub id: String,
    pub kind: MemoryKind,
    pub score: f64,
}

/// Request on [`QUERY_SUBJECT`]: needs a token of a principal with the `read` role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, tag = "op", rename_all = "snake_case")]
pub enum MemoryQuery {
    /// Records ranked by similarity to `text` (and importance).
    Search {
        token: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<MemoryKind>,
        #[serde(default = "default_limit")]
        limit: u32,
    },
    /// Counts per kind, storage, embedding provider.
    Stats { token: String },
}

fn default_limit() -> u32 {
    10
}

/// One record as a query returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemoryHit {
    pub id: String,
    pub kind: MemoryKind,
    pub text: String,
    pub content: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub retrieval_count: u64,
    /// Similarity to the query (0..1).
    pub relevance: f64,
    /// The predecessor's importance: 0.25 recency + 0.30 success + 0.35
    /// relevance + 0.10 frequency.
    pub importance: f64,
}

/// Reply on [`QUERY_SUBJECT`], and to [`ADD`] and [`FORGET`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemoryReply {
    pub ok: bool,
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hits: Vec<MemoryHit>,
    /// Stats: records per kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    /// Stats: where records live and how they are compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_provider: Option<String>,
    /// Add: the new record's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl MemoryReply {
    pub fn refused(code: &str, message: impl Into<String>) -> MemoryReply {
        MemoryReply {
            ok: false,
            code: Some(code.into()),
            message: message.into(),
            hits: Vec::new(),
            counts: BTreeMap::new(),
            storage: None,
            embedding_provider: None,
            id: None,
        }
    }

    pub fn ok(message: impl Into<String>) -> MemoryReply {
        MemoryReply { ok: true, code: None, ..MemoryReply::refused("", message) }
    }
}

/// Body of [`ADD`]: needs a token of a principal with the `submit` role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemory {
    pub token: String,
    pub kind: MemoryKind,
    pub text: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Body of [`FORGET`]: needs a token of a principal with the `approve` role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetMemory {
    pub token: String,
    pub id: String,
    #[serde(default = "default_forget_reason")]
    pub reason: String,
}

fn default_forget_reason() -> String {
    "forgotten by request".into()
}
