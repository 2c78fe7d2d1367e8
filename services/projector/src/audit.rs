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

impl Row {
    /// The row for the event at `seq`, made storable: Postgres `text` and
    /// `jsonb` refuse the NUL character, which valid JSON (an intent, a step's
    /// output) may carry. The read models hold U+FFFD in its place; the log
    /// keeps every byte. Without this one such event failed every batch after
    /// it, for good.
    pub fn storable(seq: u64, nats_subject: &str, mut env: Envelope) -> Row {
        for text in [&mut env.id, &mut env.ty, &mut env.source] {
            scrub_str(text);
        }
        if let Some(subject) = env.subject.as_mut() {
            scrub_str(subject);
        }
        scrub(&mut env.data);
        let mut nats_subject = nats_subject.to_owned();
        scrub_str(&mut nats_subject);
        Row { seq, nats_subject, env }
    }
}

fn scrub_str(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

fn scrub(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => scrub_str(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub),
        serde_json::Value::Object(map) => {
            let keys: Vec<String> = map.keys().filter(|k| k.contains('\0')).cloned().collect();
            for k in keys {
                if let Some(value) = map.remove(&k) {
                    map.insert(k.replace('\0', "\u{FFFD}"), value);
                }
            }
            map.values_mut().for_each(scrub);
        }
        _ => {}
    }
}

/// Appends a batch with `COPY … FROM STDIN` (several times faster than INSERT
/// for thousands of rows). No conflict handling is needed: a batch is written in
/// the same transaction as the checkpoint that says it was applied, so the same
/// rows can never be copied twice.
pub async fn insert(tx: &mut Transaction<'_, Postgres>, rows: &[std::sync::Arc<Row>]) -> Result<(), sqlx::Error> {
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

    #[test]
    fn nul_never_reaches_postgres() {
        let env = skynet_contract::Envelope {
            id: "e\u{0}1".into(),
            source: "skynet/executor".into(),
            ty: "t".into(),
            subject: Some("s".into()),
            time: chrono::Utc::now(),
            data: serde_json::json!({"stdout": "a\u{0}b", "list": ["\u{0}"], "k\u{0}": {"deep": "x\u{0}"}}),
            traceparent: None,
        };
        let row = super::Row::storable(1, "skynet.job.x.y", env);
        let text = serde_json::to_string(&row.env.data).unwrap_or_default() + &row.env.id;
        assert!(!text.contains('\u{0}') && !text.contains("\\u0000"), "{text}");
        assert_eq!(row.env.data["stdout"], "a\u{FFFD}b");
    }
}
