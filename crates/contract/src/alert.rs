//! The sentinel's contract: alerts and silences, each an event in the log.
//!
//! An alert is one finding of the sentinel (an executor gone, jobs not
//! starting, an approval waiting, …) with a stable *fingerprint*: the same
//! kind about the same subject is always the same alert, so it is raised once
//! and resolved once however often the sentinel looks. [`RAISED`] and
//! [`RESOLVED`] events carry it; [`UNDELIVERED`] says a sink could not be told.
//! A silence ([`SILENCED`]) mutes, for a time, the alerts whose labels match:
//! they are still recorded, never sent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// CloudEvent type of an alert that started firing.
pub const RAISED: &str = "skynet.alert.raised.v1";
/// CloudEvent type of an alert that stopped firing.
pub const RESOLVED: &str = "skynet.alert.resolved.v1";
/// CloudEvent type of a notification no retry could deliver.
pub const UNDELIVERED: &str = "skynet.alert.undelivered.v1";
/// CloudEvent type of a silence set by a person.
pub const SILENCED: &str = "skynet.alert.silenced.v1";
/// Command (request/reply): set a silence.
pub const SILENCE: &str = "skynet.cmd.alert.silence";
/// Request/reply: the sentinel's latest look at the whole system ([`SystemStatus`]).
pub const STATUS: &str = "skynet.sentinel.status";

/// Where an event of alert `fingerprint` is stored (`raised`, `resolved`, `undelivered`).
pub fn subject(fingerprint: &str, event: &str) -> String {
    format!("skynet.alert.{fingerprint}.{event}")
}

/// Where silence `id` is stored.
pub fn silence_subject(id: &str) -> String {
    format!("skynet.alert.{id}.silenced")
}

/// The stable identity of an alert: kind and subject, hashed into one NATS
/// token (subjects hold executor ids, job ids and consumer names, which may
/// contain characters a subject token may not).
pub fn fingerprint(kind: AlertKind, subject: &str) -> String {
    let digest = Sha256::new().chain_update(kind.as_str()).chain_update([0]).chain_update(subject).finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical].into_iter().find(|v| v.as_str() == s)
    }
}

/// What the sentinel found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// No executor sends heartbeats: nothing can run.
    ExecutorsNone,
    /// An executor stopped sending heartbeats without saying goodbye.
    ExecutorLost,
    /// A provider of an executor reports itself unhealthy.
    ProviderUnhealthy,
    /// Every executor runs as many jobs as it may.
    CapacityExhausted,
    /// Jobs dispatched or scheduled but not started past the limit (one alert for all).
    JobsNotStarting,
    /// A job waits for approval past the reminder time.
    ApprovalWaiting,
    /// A job runs with no progress past the limit.
    JobStalled,
    /// A durable consumer has more messages pending than the threshold.
    QueueBacklog,
    /// Messages arrived in the dead-letter stream.
    DeadLetters,
    /// NATS, Postgres or an object store cannot be reached.
    DependencyDown,
    /// The read models are far behind the log.
    ProjectorLag,
}

impl AlertKind {
    pub const ALL: &'static [AlertKind] = &[
        AlertKind::ExecutorsNone,
        AlertKind::ExecutorLost,
        AlertKind::ProviderUnhealthy,
        AlertKind::CapacityExhausted,
        AlertKind::JobsNotStarting,
        AlertKind::ApprovalWaiting,
        AlertKind::JobStalled,
        AlertKind::QueueBacklog,
        AlertKind::DeadLetters,
        AlertKind::DependencyDown,
        AlertKind::ProjectorLag,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ExecutorsNone => "executors_none",
            AlertKind::ExecutorLost => "executor_lost",
            AlertKind::ProviderUnhealthy => "provider_unhealthy",
            AlertKind::CapacityExhausted => "capacity_exhausted",
            AlertKind::JobsNotStarting => "jobs_not_starting",
            AlertKind::ApprovalWaiting => "approval_waiting",
            AlertKind::JobStalled => "job_stalled",
            AlertKind::QueueBacklog => "queue_backlog",
            AlertKind::DeadLetters => "dead_letters",
            AlertKind::DependencyDown => "dependency_down",
            AlertKind::ProjectorLag => "projector_lag",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// An alert started firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRaised {
    pub fingerprint: String,
    pub kind: AlertKind,
    /// What it is about: an executor id, a job id, a consumer, `all`.
    pub subject: String,
    pub severity: Severity,
    /// One line for people.
    pub summary: String,
    /// `kind`, `severity` and `subject` among them: what silences match.
    pub labels: BTreeMap<String, String>,
    /// Whether the sinks were told: not when silenced or inside the cooldown.
    pub notified: bool,
    /// Why not, when not (`silenced by <id>`, `cooldown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted: Option<String>,
}

/// An alert stopped firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertResolved {
    pub fingerprint: String,
    pub kind: AlertKind,
    pub subject: String,
    pub summary: String,
    /// Whether the sinks were told (only when they were told of the raise).
    pub notified: bool,
}

/// A sink could not be told, after every retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertUndelivered {
    pub fingerprint: String,
    pub sink: String,
    /// `raised` or `resolved`.
    pub event: String,
    pub attempts: u32,
    pub error: String,
}

/// A silence: alerts whose labels include every matcher are not sent until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Silenced {
    pub id: String,
    pub matchers: BTreeMap<String, String>,
    pub until: DateTime<Utc>,
    pub reason: String,
    pub silenced_by: String,
}

impl Silenced {
    /// Whether this silence mutes an alert with `labels` at `now`.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        now < self.until && !self.matchers.is_empty() && self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// `skynet.cmd.alert.silence`: set a silence (approve role).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceAlerts {
    pub token: String,
    /// Label equalities, all of which an alert must have (at least one).
    pub matchers: BTreeMap<String, String>,
    /// For how long, in seconds (at most 30 days).
    pub duration_secs: u64,
    pub reason: String,
}

/// The sentinel's latest look at the system: what `skynet status` and
/// `GET /v1/health` show. `None` where that check could not run. A reply, not
/// an event: readers ignore fields they do not know (a newer sentinel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SystemStatus {
    /// When the sentinel looked.
    pub at: DateTime<Utc>,
    /// Each dependency (`nats`, `postgres`, the object stores) and its error when down.
    pub dependencies: BTreeMap<String, Option<String>>,
    pub executors_up: Option<u64>,
    pub slots_free: Option<u64>,
    /// Pending messages per durable consumer.
    pub consumers: Option<BTreeMap<String, u64>>,
    /// Events the read models have not applied yet.
    pub projector_lag: Option<u64>,
    pub jobs_not_starting: Option<u64>,
    pub approvals_waiting: Option<u64>,
    pub dead_letters_recent: Option<u64>,
    /// What fires, most severe first (at most 200).
    pub alerts: Vec<AlertRaised>,
}

/// Longest silence.
pub const MAX_SILENCE_SECS: u64 = 30 * 86_400;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_tokens_and_tell_kinds_and_subjects_apart() {
        let a = fingerprint(AlertKind::ExecutorLost, "exec.1 >*");
        assert_eq!(a, fingerprint(AlertKind::ExecutorLost, "exec.1 >*"));
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, fingerprint(AlertKind::ProviderUnhealthy, "exec.1 >*"));
        assert_ne!(a, fingerprint(AlertKind::ExecutorLost, "exec.2 >*"));
    }

    #[test]
    fn a_silence_mutes_only_matching_labels_until_it_ends() {
        let now = Utc::now();
        let s = Silenced {
            id: "s".into(),
            matchers: [("kind".to_owned(), "executor_lost".to_owned())].into(),
            until: now + chrono::Duration::minutes(5),
            reason: "maintenance".into(),
            silenced_by: "ann".into(),
        };
        let labels: BTreeMap<_, _> =
            [("kind".to_owned(), "executor_lost".to_owned()), ("subject".to_owned(), "e1".to_owned())].into();
        assert!(s.mutes(&labels, now));
        assert!(!s.mutes(&labels, now + chrono::Duration::minutes(6)));
        let other: BTreeMap<_, _> = [("kind".to_owned(), "executors_none".to_owned())].into();
        assert!(!s.mutes(&other, now));
        let empty = Silenced { matchers: BTreeMap::new(), ..s };
        assert!(!empty.mutes(&labels, now), "a silence without matchers mutes nothing");
    }
}
