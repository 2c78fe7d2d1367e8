//! `skynet status`: the first command to run when something feels wrong. The
//! executors online, read from their heartbeats (the `SKYNET_EXECUTORS`
//! bucket, by direct get as a client may), with each provider's health and
//! exactly the actions it offers — what the scheduler sees when it picks one;
//! then the sentinel's latest look: NATS, Postgres and the object stores, queue
//! depths, projector lag, jobs waiting, and the alerts firing.

use std::time::Duration;

use chrono::Utc;
use skynet_contract::alert::{self, Severity, SystemStatus};
use skynet_contract::executor::{ExecutorStatus, Health};

use super::ClientArgs;

/// The executors whose heartbeat is in the bucket now, ordered by id.
pub async fn executors(client: &async_nats::Client) -> anyhow::Result<Vec<ExecutorStatus>> {
    skynet_bus::read::executors(client).await.map_err(|e| anyhow::anyhow!("reading the executors' heartbeats: {e}"))
}

/// The sentinel's latest look, if a sentinel answers.
pub async fn system(client: &async_nats::Client) -> Option<SystemStatus> {
    let reply =
        tokio::time::timeout(Duration::from_secs(3), client.request(alert::STATUS, "".into())).await.ok()?.ok()?;
    serde_json::from_slice::<Option<SystemStatus>>(&reply.payload).ok().flatten()
}

pub async fn run(c: &ClientArgs) -> anyhow::Result<i32> {
    let client = c.connect().await?;
    let all = executors(&client).await?;
    let system = system(&client).await;
    if c.json {
        super::emit(serde_json::to_string_pretty(&serde_json::json!({"executors": all, "system": system}))?);
    } else {
        super::emit(render(&all, Utc::now()).trim_end());
        super::emit(render_system(system.as_ref()).trim_end());
    }
    // Exit 1 when nothing can run a job or something critical fires: scripts can wait on it.
    let critical = system.as_ref().is_some_and(|s| s.alerts.iter().any(|a| a.severity == Severity::Critical));
    Ok(i32::from(all.is_empty() || critical))
}

/// The human view of the sentinel's look.
pub fn render_system(system: Option<&SystemStatus>) -> String {
    let Some(s) = system else {
        return "sentinel  not answering (start it: skynet run sentinel): dependencies, queues and alerts unknown\n"
            .into();
    };
    let known = |v: Option<u64>| v.map_or("?".to_owned(), |n| n.to_string());
    let mut out = String::new();
    let printable = |t: &str| t.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>();
    let age = (Utc::now() - s.at).num_seconds();
    if age > 30 {
        out.push_str(&format!("sentinel                       last looked {age} s ago: what follows may be stale\n"));
    }
    for (name, error) in &s.dependencies {
        let state = error.as_deref().map_or("ok".to_owned(), |e| format!("DOWN: {}", printable(e)));
        out.push_str(&format!("{:<30} {state}\n", printable(name)));
    }
    if let Some(consumers) = &s.consumers {
        let depths: Vec<String> = consumers.iter().map(|(c, n)| format!("{c} {n}")).collect();
        out.push_str(&format!("queues (pending)               {}\n", depths.join(", ")));
    }
    out.push_str(&format!("projector lag (events)         {}\n", known(s.projector_lag)));
    out.push_str(&format!(
        "jobs                           {} not starting, {} awaiting approval, {} dead letters recently\n",
        known(s.jobs_not_starting),
        known(s.approvals_waiting),
        known(s.dead_letters_recent)
    ));
    if s.alerts.is_empty() {
        out.push_str("alerts                         none firing\n");
    }
    for a in &s.alerts {
        out.push_str(&format!("alert {:<8} {:<18} {}\n", a.severity.as_str(), a.kind.as_str(), printable(&a.summary)));
    }
    out
}

/// The human view.
pub fn render(all: &[ExecutorStatus], now: chrono::DateTime<Utc>) -> String {
    if all.is_empty() {
        return "no executor online (start one: skynet run executor)\n".into();
    }
    let mut out = String::new();
    for e in all {
        let age = (now - e.heartbeat_at).num_milliseconds().max(0) as f64 / 1000.0;
        out.push_str(&format!(
            "executor {}  running {}/{}  heartbeat {age:.1} s ago  version {}\n",
            e.id, e.running, e.capacity, e.version
        ));
        for (name, p) in &e.providers {
            let health = match p.health {
                Health::Healthy => "healthy",
                Health::Degraded => "degraded",
                Health::Unhealthy => "UNHEALTHY",
            };
            out.push_str(&format!("  {name:<9} {health:<9} {} ({} ms)\n", p.message, p.latency_ms));
            let mut actions = p.capabilities.clone();
            actions.sort();
            out.push_str(&format!("            runs: {}\n", actions.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_each_providers_health_and_sorted_actions() {
        let now = Utc::now();
        let status: ExecutorStatus = serde_json::from_value(serde_json::json!({
            "id": "executor-a", "capacity": 8, "running": 1, "started_at": now, "heartbeat_at": now, "version": "0.1.0",
            "providers": {"local": {"health": "healthy", "message": "ok", "capabilities": ["zip_project", "git_status"], "latency_ms": 2}}
        }))
        .expect("a status");
        let text = render(&[status], now);
        assert!(text.contains("executor executor-a  running 1/8"), "{text}");
        assert!(text.contains("local     healthy   ok (2 ms)"), "{text}");
        assert!(text.contains("runs: git_status, zip_project"), "{text}");
        assert!(render(&[], now).contains("no executor online"));
    }

    #[test]
    fn shows_dependencies_queues_and_alerts_or_says_the_sentinel_is_silent() {
        assert!(render_system(None).contains("not answering"));
        let status: SystemStatus = serde_json::from_value(serde_json::json!({
            "at": Utc::now(), "dependencies": {"nats": null, "postgres": "connection refused"},
            "executors_up": 0, "slots_free": 0, "consumers": {"planner": 3}, "projector_lag": 12,
            "jobs_not_starting": 2, "approvals_waiting": 1, "dead_letters_recent": null,
            "alerts": [{"fingerprint": "f", "kind": "executors_none", "subject": "all", "severity": "critical",
                        "summary": "no executor online\u{1b}[2J", "labels": {}, "notified": true}]
        }))
        .expect("a status");
        let text = render_system(Some(&status));
        assert!(text.contains("postgres                       DOWN: connection refused"), "{text}");
        assert!(text.contains("queues (pending)               planner 3"), "{text}");
        assert!(text.contains("2 not starting, 1 awaiting approval, ? dead letters"), "{text}");
        assert!(text.contains("alert critical executors_none") && !text.contains('\u{1b}'), "{text}");
    }
}
