//! `skynet jobs` (the read model) and `skynet job <id>` (read model plus the
//! job's timeline from the log).

use anyhow::Context;
use clap::Args;
use skynet_bus::codec;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_contract::{JobId, subjects};

use super::ClientArgs;
use crate::render;

/// `skynet jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs in this state.
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub requester: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
}

pub async fn list(args: JobsArgs, c: &ClientArgs) -> anyhow::Result<i32> {
    let db = c.db().await?;
    let rows: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT to_jsonb(j) FROM jobs j WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR requested_by = $2)
         ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(&args.state)
    .bind(&args.requester)
    .bind(args.limit.clamp(1, 1000))
    .fetch_all(&db)
    .await
    .context("reading the jobs read model (has `skynet up` run its migrations?)")?;
    if c.json {
        super::emit(serde_json::to_string_pretty(&rows)?);
    } else {
        super::emit(render::jobs_table(&rows, c.style()).trim_end());
    }
    Ok(0)
}

/// `skynet job <id>`.
#[derive(Debug, Args)]
pub struct JobArgs {
    pub id: String,
}

pub async fn show(args: JobArgs, c: &ClientArgs) -> anyhow::Result<i32> {
    let job: JobId = args.id.parse().map_err(|_| anyhow::anyhow!("{:?} is not a job id (a UUID)", args.id))?;
    let client = c.connect().await?;
    // A client reads the log by direct get (it may create no consumer, and
    // the rest of the JetStream API is not exported to its account).
    let stored = skynet_bus::read::read_all(&client, EVENTS_STREAM, &subjects::job_stream(job), 1)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let events: Vec<_> = stored.iter().filter_map(|m| codec::decode(m.headers.as_ref(), &m.payload).ok()).collect();
    if events.is_empty() {
        anyhow::bail!("no job {job}: nothing in the log under skynet.job.{job}.>");
    }
    let db = c.db().await?;
    let row: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT to_jsonb(j) FROM jobs j WHERE id = $1").bind(job.0).fetch_optional(&db).await?;
    let steps: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT to_jsonb(s) FROM steps s WHERE job_id = $1 ORDER BY idx")
            .bind(job.0)
            .fetch_all(&db)
            .await?;
    let detail = serde_json::json!({"job": row.unwrap_or(serde_json::json!({"id": job})), "steps": steps});
    if c.json {
        let evs: Vec<_> = events.iter().map(|e| serde_json::to_value(e.to_cloudevent()).unwrap_or_default()).collect();
        super::emit(
            serde_json::to_string_pretty(
                &serde_json::json!({"job": detail["job"], "steps": detail["steps"], "events": evs}),
            )?
            .to_string(),
        );
    } else {
        super::emit(render::job_detail(&detail, &events, c.style()).trim_end());
    }
    Ok(0)
}
