//! `skynet status`: the executors online, read from their heartbeats (the
//! `SKYNET_EXECUTORS` bucket, by direct get as a client may), with each
//! provider's health and exactly the actions it offers — what the scheduler
//! sees when it picks one.

use chrono::Utc;
use skynet_bus::definitions::EXECUTORS_BUCKET;
use skynet_contract::executor::{ExecutorStatus, Health};

use super::ClientArgs;

/// The executors whose heartbeat is in the bucket now (an entry expires when
/// its executor stops heartbeating), ordered by id.
pub async fn executors(client: &async_nats::Client) -> anyhow::Result<Vec<ExecutorStatus>> {
    let stream = format!("KV_{EXECUTORS_BUCKET}");
    let stored = skynet_bus::read::read_all(client, &stream, &format!("$KV.{EXECUTORS_BUCKET}.>"), 1)
        .await
        .map_err(|e| anyhow::anyhow!("reading the executors' heartbeats: {e}"))?;
    let mut latest = std::collections::BTreeMap::new();
    for m in stored {
        // A deleted or purged key (an executor that said goodbye) is a marker, not a status.
        let op = m.headers.as_ref().and_then(|h| h.get("KV-Operation")).map(|v| v.as_str().to_owned());
        let key = m.subject.trim_start_matches(&format!("$KV.{EXECUTORS_BUCKET}.")).to_owned();
        match (op.as_deref(), serde_json::from_slice::<ExecutorStatus>(&m.payload)) {
            (Some("DEL" | "PURGE"), _) => {
                latest.remove(&key);
            }
            (_, Ok(status)) => {
                latest.insert(key, status);
            }
            (_, Err(_)) => {}
        }
    }
    Ok(latest.into_values().collect())
}

pub async fn run(c: &ClientArgs) -> anyhow::Result<i32> {
    let client = c.connect().await?;
    let all = executors(&client).await?;
    if c.json {
        super::emit(serde_json::to_string_pretty(&all)?);
    } else {
        super::emit(render(&all, Utc::now()).trim_end());
    }
    // Exit 1 when nothing can run a job: scripts can wait on it.
    Ok(i32::from(all.is_empty()))
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
}
