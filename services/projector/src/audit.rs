//! The audit read model: every event, as stored, one row each.

use skynet_contract::Envelope;
use sqlx::{Postgres, Transaction};

/// One event with its place in the log.
#[derive(Debug)]
pub struct Row {
    pub seq: u64,
    pub nats_subject: String,
    pub env: Envelope,
}

/// Appends a batch with `COPY … FROM STDIN` (several times faster than INSERT
/// for thousands of rows). No conflict handling is needed: a batch is written in
/// the same transaction as the checkpoint that says it was applied, so the same
/// rows can never be copied twice.
pub async fn insert(tx: &mut Transaction<'_, Postgres>, rows: &[Row]) -> Result<(), sqlx::Error> {
    let mut text = String::with_capacity(rows.len() * 512);
    for r in rows {
        let data = serde_json::to_string(&r.env.data).unwrap_or_else(|_| "null".into());
        let fields = [
            r.seq.to_string(),
            escape(&r.env.id),
            escape(&r.env.ty),
            escape(&r.env.source),
            r.env.subject.as_deref().map_or_else(|| "\\N".to_owned(), escape),
            escape(&r.nats_subject),
            r.env.time.to_rfc3339(),
            escape(&data),
        ];
        text.push_str(&fields.join("\t"));
        text.push('\n');
    }
    let mut copy = tx
        .copy_in_raw("COPY audit_events (seq, event_id, type, source, subject, nats_subject, time, data) FROM STDIN")
        .await?;
    copy.send(text.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// A value in COPY's text format.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_text_escaping() {
        assert_eq!(super::escape("a\\b\tc\nd\re"), "a\\\\b\\tc\\nd\\re");
        assert_eq!(super::escape(r#"{"k":"x\ny"}"#), r#"{"k":"x\\ny"}"#);
    }
}
