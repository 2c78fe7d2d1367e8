//! Events the read models cannot hold. One such event must not stop the events
//! after it (before this, one event Postgres refused failed every batch, for
//! good): it is stored in `projection_quarantine` with the reason, in the same
//! transaction as the checkpoint that moves past it, and dead-lettered to
//! `skynet.dlq.projector` where people and the sentinel see it.

use async_nats::jetstream;
use sqlx::{Postgres, Transaction};
use tracing::{error, warn};

/// An event kept out of the read models, and why.
#[derive(Debug, Clone)]
pub struct Poison {
    pub seq: u64,
    pub nats_subject: String,
    pub reason: String,
    /// The event as read: raw bytes if it did not decode, else its JSON.
    pub payload: Vec<u8>,
}

impl Poison {
    /// An event that decoded but that Postgres refused.
    pub fn refused(row: &crate::audit::Row, error: &sqlx::Error) -> Poison {
        Poison {
            seq: row.seq,
            nats_subject: row.nats_subject.clone(),
            reason: format!("the read-model database refused it: {error}"),
            payload: serde_json::to_vec(&Stored {
                specversion: "1.0",
                id: &row.env.id,
                source: &row.env.source,
                ty: &row.env.ty,
                subject: row.env.subject.as_deref(),
                time: &row.env.time,
                data: &row.env.data,
            })
            .unwrap_or_default(),
        }
    }
}

/// A refused event as structured JSON, its data written as the text it is
/// (not parsed again, as `json!` would).
#[derive(serde::Serialize)]
struct Stored<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    subject: Option<&'a str>,
    time: &'a chrono::DateTime<chrono::Utc>,
    data: &'a serde_json::value::RawValue,
}

/// Whether Postgres refused the data itself (so the same statement will always
/// fail), as opposed to the database being unreachable or busy (retry later).
/// SQLSTATE class 22 (data exception: a value out of range, a bad encoding) and
/// 54000 (program limit: an index row too large). Not class 23 (integrity): a
/// duplicate key in the read models means two writers or rows ahead of the
/// checkpoint — a fault to stop on, never a reason to set events aside.
pub fn is_refusal(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else { return false };
    db.code().is_some_and(|c| c.starts_with("22") || c == "54000")
}

/// Stores poisoned events (a redelivered one is already there).
pub async fn insert(tx: &mut Transaction<'_, Postgres>, poisons: &[Poison]) -> Result<(), sqlx::Error> {
    for p in poisons {
        sqlx::query(
            "INSERT INTO projection_quarantine (seq, nats_subject, reason, payload) VALUES ($1, $2, $3, $4)
             ON CONFLICT (seq) DO NOTHING",
        )
        .bind(i64::try_from(p.seq).unwrap_or(i64::MAX))
        .bind(p.nats_subject.replace('\0', "\u{FFFD}"))
        .bind(p.reason.replace('\0', "\u{FFFD}"))
        .bind(&p.payload)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Dead-letters each quarantined event (deduplicated by its sequence). The
/// quarantine row is already committed: a failure here is logged, not fatal.
pub async fn report(js: &jetstream::Context, poisons: &[Poison]) {
    for p in poisons {
        error!(service = "projector", seq = p.seq, subject = %p.nats_subject, reason = %p.reason, "event quarantined");
        let dl = skynet_bus::dlq::DeadLetter {
            origin: "projector",
            service: "projector",
            subject: &p.nats_subject,
            headers: None,
            payload: p.payload.clone().into(),
            code: "unprojectable",
            reason: &p.reason,
            deliveries: 1,
            dedupe_key: format!("projector-{}", p.seq),
        };
        if let Err(e) = skynet_bus::dlq::dead_letter(js, dl).await {
            warn!(service = "projector", seq = p.seq, error = %e, "dead-lettering a quarantined event failed; it is in projection_quarantine");
        }
    }
}
