//! What is wrong, from what the sentinel observed: a pure function from
//! [`Facts`] to [`Finding`]s. Each finding is one alert's worth (many jobs not
//! starting is one finding, not one per job), and the facts say which checks
//! could run at all: an alert is resolved only by a check that ran and found
//! nothing, never because Postgres or NATS was unreachable.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use skynet_contract::alert::{self, AlertKind, Severity};
use skynet_contract::executor::{ExecutorStatus, Health};

use crate::config::Config;

/// One alert's worth of trouble.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: AlertKind,
    pub subject: String,
    pub severity: Severity,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
}

impl Finding {
    fn new(kind: AlertKind, subject: impl Into<String>, severity: Severity, summary: String) -> Finding {
        // Subjects come from outside too (executor ids, dead-letter origins).
        let subject = cap(&subject.into(), 200);
        let labels = [
            ("kind".to_owned(), kind.as_str().to_owned()),
            ("severity".to_owned(), severity.as_str().to_owned()),
            ("subject".to_owned(), subject.clone()),
        ]
        .into();
        Finding { kind, subject, severity, summary: cap(&summary, 400), labels }
    }

    fn label(mut self, k: &str, v: impl Into<String>) -> Finding {
        self.labels.insert(k.to_owned(), cap(&v.into(), 200));
        self
    }

    pub fn fingerprint(&self) -> String {
        alert::fingerprint(self.kind, &self.subject)
    }
}

/// Text from outside (intents, executor messages, dead-letter reasons) kept
/// to one line of bounded length.
pub fn cap(s: &str, max: usize) -> String {
    let line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// An executor as the heartbeats show it.
#[derive(Debug, Clone)]
pub struct ExecutorSeen {
    pub status: ExecutorStatus,
    /// When the sentinel last received its heartbeat (its own clock, not the executor's).
    pub last_seen: DateTime<Utc>,
    /// It deleted its entry on the way out: a clean stop, not a loss.
    pub goodbye: bool,
}

/// A job someone should look at.
#[derive(Debug, Clone)]
pub struct JobWaiting {
    pub id: String,
    pub intent: String,
    pub since: DateTime<Utc>,
}

/// What the jobs read model says (none when Postgres is unreachable).
#[derive(Debug, Clone, Default)]
pub struct JobFacts {
    /// Dispatched or scheduled, not started, past the start limit: how many, and the oldest.
    pub not_starting: u64,
    pub oldest_not_starting: Option<JobWaiting>,
    pub awaiting_approval: Vec<JobWaiting>,
    /// Every job awaiting approval now, however recent.
    pub awaiting_total: u64,
    pub stalled: Vec<JobWaiting>,
}

/// A dead letter seen recently.
#[derive(Debug, Clone)]
pub struct DeadLetterSeen {
    pub origin: String,
    pub code: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Everything one evaluation observed; `None` where the check could not run.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Whether the heartbeat watch is live (its picture is current).
    pub executors_known: bool,
    pub executors: Vec<ExecutorSeen>,
    pub jobs: Option<JobFacts>,
    /// (durable, pending), when every consumer could be asked.
    pub consumers: Option<Vec<(String, u64)>>,
    /// Dead letters within the window, when the stream could be read.
    pub dead_letters: Option<Vec<DeadLetterSeen>>,
    /// (dependency, error when down); every dependency is always checked.
    pub dependencies: Vec<(String, Option<String>)>,
    /// Events the read models have not yet applied.
    pub projector_lag: Option<u64>,
}

/// The findings and the kinds whose checks ran.
pub fn findings(facts: &Facts, config: &Config, now: DateTime<Utc>) -> (Vec<Finding>, BTreeSet<AlertKind>) {
    let mut out = Vec::new();
    let mut observed = BTreeSet::new();
    // With NATS down the object stores went unchecked: no dependency alert
    // resolves until every dependency was looked at.
    if facts.dependencies.iter().any(|(name, error)| name == "nats" && error.is_none()) {
        observed.insert(AlertKind::DependencyDown);
    }
    for (name, error) in &facts.dependencies {
        if let Some(e) = error {
            out.push(
                Finding::new(AlertKind::DependencyDown, name, Severity::Critical, format!("{name} unreachable: {e}"))
                    .label("dependency", name),
            );
        }
    }
    let fresh: Vec<&ExecutorSeen> =
        facts.executors.iter().filter(|e| !e.goodbye && now - e.last_seen < config.heartbeat_expiry).collect();
    let none_online = fresh.is_empty();
    if facts.executors_known {
        observed.insert(AlertKind::ExecutorsNone);
        // With none online, what fired about single executors stays as it was
        // (it is not over; it is part of the larger alert).
        if !none_online {
            observed.extend([AlertKind::ExecutorLost, AlertKind::ProviderUnhealthy, AlertKind::CapacityExhausted]);
        }
        executors(&mut out, facts, &fresh, config, now);
    }
    if let Some(jobs) = &facts.jobs {
        observed.extend([AlertKind::JobsNotStarting, AlertKind::ApprovalWaiting, AlertKind::JobStalled]);
        job_findings(&mut out, jobs, facts.executors_known && none_online, config, now);
    }
    if let Some(consumers) = &facts.consumers {
        observed.insert(AlertKind::QueueBacklog);
        for (durable, pending) in consumers.iter().filter(|(_, p)| *p > config.backlog_threshold) {
            out.push(
                Finding::new(
                    AlertKind::QueueBacklog,
                    durable,
                    Severity::Warning,
                    format!(
                        "{pending} messages wait for the {durable} consumer (threshold {})",
                        config.backlog_threshold
                    ),
                )
                .label("consumer", durable),
            );
        }
    }
    if let Some(letters) = &facts.dead_letters {
        observed.insert(AlertKind::DeadLetters);
        dead_letters(&mut out, letters, config);
    }
    if let Some(lag) = facts.projector_lag {
        observed.insert(AlertKind::ProjectorLag);
        if lag > config.projector_lag_threshold {
            out.push(Finding::new(
                AlertKind::ProjectorLag,
                "read_models",
                Severity::Warning,
                format!(
                    "the read models are {lag} events behind the log (threshold {})",
                    config.projector_lag_threshold
                ),
            ));
        }
    }
    (out, observed)
}

fn executors(out: &mut Vec<Finding>, facts: &Facts, fresh: &[&ExecutorSeen], config: &Config, now: DateTime<Utc>) {
    if fresh.is_empty() {
        // One alert for "nothing can run"; the executors lost with it are in it.
        let last = facts.executors.iter().max_by_key(|e| e.last_seen);
        let tail = last.map_or(String::new(), |e| {
            format!(" (last heartbeat: {} {} s ago)", e.status.id, (now - e.last_seen).num_seconds())
        });
        out.push(Finding::new(
            AlertKind::ExecutorsNone,
            "all",
            Severity::Critical,
            format!("no executor online: no job can start{tail}"),
        ));
        return;
    }
    for e in facts.executors.iter().filter(|e| !e.goodbye && now - e.last_seen >= config.heartbeat_expiry) {
        let id = &e.status.id;
        out.push(
            Finding::new(
                AlertKind::ExecutorLost,
                id,
                Severity::Warning,
                format!("executor {id} sent no heartbeat for {} s", (now - e.last_seen).num_seconds()),
            )
            .label("executor", id),
        );
    }
    for e in fresh {
        for (name, p) in e.status.providers.iter().filter(|(_, p)| p.health == Health::Unhealthy) {
            let id = &e.status.id;
            out.push(
                Finding::new(
                    AlertKind::ProviderUnhealthy,
                    format!("{id}/{name}"),
                    Severity::Warning,
                    format!("provider {name} of executor {id} is unhealthy: {}", p.message),
                )
                .label("executor", id)
                .label("provider", name),
            );
        }
    }
    let (capacity, running) = fresh.iter().fold((0u64, 0u64), |(c, r), e| {
        (c + u64::from(e.status.capacity), r + u64::from(e.status.running.min(e.status.capacity)))
    });
    if running >= capacity {
        out.push(Finding::new(
            AlertKind::CapacityExhausted,
            "all",
            Severity::Warning,
            format!("every executor is full: {running} of {capacity} slots busy on {} executors", fresh.len()),
        ));
    }
}

fn job_findings(out: &mut Vec<Finding>, jobs: &JobFacts, none_online: bool, config: &Config, now: DateTime<Utc>) {
    if jobs.not_starting > 0 {
        let oldest = jobs.oldest_not_starting.as_ref().map_or(String::new(), |j| {
            format!("; oldest {} waiting {} s", short(&j.id), (now - j.since).num_seconds())
        });
        let why = if none_online { " and no executor is online" } else { "" };
        out.push(
            Finding::new(
                AlertKind::JobsNotStarting,
                "all",
                if none_online { Severity::Critical } else { Severity::Warning },
                format!(
                    "{} jobs not started within {} s{why}{oldest}",
                    jobs.not_starting,
                    config.start_limit.num_seconds()
                ),
            )
            .label("count", jobs.not_starting.to_string()),
        );
    }
    for j in &jobs.awaiting_approval {
        out.push(
            Finding::new(
                AlertKind::ApprovalWaiting,
                &j.id,
                Severity::Info,
                // The command first, the requester's words last and quoted:
                // an intent cannot pose as the command for another job.
                format!(
                    "job {} waits for approval for {} min (skynet approve {}): {:?}",
                    short(&j.id),
                    (now - j.since).num_minutes(),
                    j.id,
                    cap(&j.intent, 120)
                ),
            )
            .label("job", &j.id),
        );
    }
    for j in &jobs.stalled {
        out.push(
            Finding::new(
                AlertKind::JobStalled,
                &j.id,
                Severity::Warning,
                format!(
                    "job {} has made no progress for {} min: {:?}",
                    short(&j.id),
                    (now - j.since).num_minutes(),
                    cap(&j.intent, 120)
                ),
            )
            .label("job", &j.id),
        );
    }
}

fn dead_letters(out: &mut Vec<Finding>, letters: &[DeadLetterSeen], config: &Config) {
    let mut by_origin: BTreeMap<&str, Vec<&DeadLetterSeen>> = BTreeMap::new();
    for d in letters {
        by_origin.entry(d.origin.as_str()).or_default().push(d);
    }
    for (origin, ds) in by_origin {
        let Some(last) = ds.iter().max_by_key(|d| d.at) else { continue };
        out.push(
            Finding::new(
                AlertKind::DeadLetters,
                origin,
                Severity::Warning,
                format!(
                    "{} dead letters from {origin} in the last {} min; last: {}: {}",
                    ds.len(),
                    config.dead_letter_window.num_minutes(),
                    last.code,
                    cap(&last.reason, 200)
                ),
            )
            .label("origin", origin)
            .label("code", &last.code),
        );
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests;
