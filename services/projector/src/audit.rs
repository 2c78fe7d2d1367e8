//! The audit read model: every event, as stored, one row each.

use chrono::{DateTime, Utc};
use skynet_contract::Envelope;
use sqlx::{Postgres, Transaction};

/// One event with its place in the log.
#[derive(Debug)]
pub struct Row {
    pub seq: u64,
    pub nats_subject: String,
    pub env: Envelope,
}

/// Inserts a batch with one statement (arrays unnested server-side). Rows already
/// present are left alone, which makes a replayed batch harmless.
pub async fn insert(tx: &mut Transaction<'_, Postgres>, rows: &[Row]) -> Result<(), sqlx::Error> {
    let mut seq = Vec::with_capacity(rows.len());
    let mut id = Vec::with_capacity(rows.len());
    let mut ty = Vec::with_capacity(rows.len());
    let mut source = Vec::with_capacity(rows.len());
    let mut subject: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut nats_subject = Vec::with_capacity(rows.len());
    let mut time: Vec<DateTime<Utc>> = Vec::with_capacity(rows.len());
    let mut data = Vec::with_capacity(rows.len());
    for r in rows {
        seq.push(i64::try_from(r.seq).unwrap_or(i64::MAX));
        id.push(r.env.id.as_str());
        ty.push(r.env.ty.as_str());
        source.push(r.env.source.as_str());
        subject.push(r.env.subject.clone());
        nats_subject.push(r.nats_subject.as_str());
        time.push(r.env.time);
        data.push(r.env.data.clone());
    }
    sqlx::query(
        "INSERT INTO audit_events (seq, event_id, type, source, subject, nats_subject, time, data)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::jsonb[])
         ON CONFLICT (seq) DO NOTHING",
    )
    .bind(&seq)
    .bind(&id)
    .bind(&ty)
    .bind(&source)
    .bind(&subject)
    .bind(&nats_subject)
    .bind(&time)
    .bind(&data)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
