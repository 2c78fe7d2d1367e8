//! The read commands: `/status [job]` (a job as the chat shows it, or the
//! pause and the jobs by state), `/jobs [state]` (the ten newest, from the
//! read model) and `/alerts` (what the sentinel sees firing). The caller has
//! checked the read role.

use std::time::Duration;

use skynet_contract::system;
use skynet_job::Status;

use crate::service::Ctx;

/// `/status [job]`.
pub(crate) async fn status(ctx: &Ctx, job: Option<&str>) -> String {
    let Some(job) = job else { return system_status(ctx).await };
    match ctx.resolve_job(job).await {
        Ok(job) => match ctx.view(job).await {
            Ok(Some(v)) => crate::view::summary(&v, &ctx.config.output_hint),
            Ok(None) => format!("No job {job}."),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

async fn system_status(ctx: &Ctx) -> String {
    let mut out = String::new();
    match ctx.js.get_stream(skynet_bus::definitions::EVENTS_STREAM).await {
        Ok(stream) => match skynet_bus::pause::current(&stream).await {
            Ok(s) if s.paused => {
                let last = s.last.unwrap_or_else(|| system::SystemSwitched {
                    by: "?".into(),
                    reason: String::new(),
                    cancel_running: false,
                });
                let reason = crate::view::defang(&last.reason);
                out.push_str(&format!("⛔ PAUSED by {}: {reason} — /resume lifts it\n", last.by));
            }
            Ok(_) => out.push_str("Dispatching: running\n"),
            Err(e) => out.push_str(&format!("Pause state unknown: {e}\n")),
        },
        Err(e) => out.push_str(&format!("Pause state unknown: {e}\n")),
    }
    let counts: Result<Vec<(String, i64)>, _> =
        sqlx::query_as("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status").fetch_all(&ctx.db).await;
    match counts {
        Ok(rows) if rows.is_empty() => out.push_str("No jobs yet."),
        Ok(rows) => {
            out.push_str("Jobs:");
            for (status, n) in rows {
                out.push_str(&format!("\n  {status}: {n}"));
            }
        }
        Err(e) => out.push_str(&format!("Jobs unknown (read models): {e}")),
    }
    out
}

/// `/jobs [state]`: the ten newest.
pub(crate) async fn jobs(ctx: &Ctx, state: Option<&str>) -> String {
    if let Some(s) = state
        && !Status::ALL.iter().any(|x| x.as_str() == s)
    {
        let all: Vec<&str> = Status::ALL.iter().map(|x| x.as_str()).collect();
        return format!("No state {s:?}; one of: {}", all.join(", "));
    }
    let rows: Result<Vec<(uuid::Uuid, String, String)>, _> = sqlx::query_as(
        "SELECT id, status, intent FROM jobs WHERE ($1::text IS NULL OR status = $1) ORDER BY created_at DESC, id DESC LIMIT 10",
    )
    .bind(state)
    .fetch_all(&ctx.db)
    .await;
    match rows {
        Ok(rows) if rows.is_empty() => "No jobs.".into(),
        Ok(rows) => {
            let lines: Vec<String> = rows
                .into_iter()
                .map(|(id, status, intent)| {
                    let intent = crate::view::defang(&intent.chars().take(60).collect::<String>());
                    format!("{} {status} — {intent}", &id.to_string()[..8])
                })
                .collect();
            crate::view::fit(lines.join("\n"), "")
        }
        Err(e) => format!("Cannot list jobs now: {e}"),
    }
}

/// `/alerts`: what the sentinel sees firing.
pub(crate) async fn alerts(ctx: &Ctx) -> String {
    let answer =
        tokio::time::timeout(Duration::from_secs(5), ctx.nats.request(skynet_contract::alert::STATUS, "{}".into()))
            .await;
    let status: Result<skynet_contract::alert::SystemStatus, String> = match answer {
        Ok(Ok(m)) => serde_json::from_slice(&m.payload).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s (is the sentinel running?)".into()),
    };
    match status {
        Ok(s) if s.alerts.is_empty() => "No alerts firing.".into(),
        Ok(s) => {
            let lines: Vec<String> = s
                .alerts
                .iter()
                .map(|a| crate::view::defang(&format!("🔔 {} {}: {}", a.severity.as_str(), a.subject, a.summary)))
                .collect();
            crate::view::fit(lines.join("\n"), "")
        }
        Err(e) => format!("Cannot read alerts: {e}"),
    }
}
