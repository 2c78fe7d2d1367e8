//! The audit read model: every event, as stored, one row each.

use std::fmt::Write as _;

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
    let mut copy = tx
        .copy_in_raw("COPY audit_events (seq, event_id, type, source, subject, nats_subject, time, data) FROM STDIN")
        .await?;
    let mut text = String::with_capacity(2 * COPY_CHUNK);
    let mut data = Vec::with_capacity(1024);
    for r in rows {
        data.clear();
        if serde_json::to_writer(&mut data, &r.env.data).is_err() {
            data.clear();
            data.extend_from_slice(b"null");
        }
        let _ = write!(text, "{}\t", r.seq);
        for field in [r.env.id.as_str(), &r.env.ty, &r.env.source] {
            escape_into(&mut text, field);
            text.push('\t');
        }
        match r.env.subject.as_deref() {
            Some(subject) => escape_into(&mut text, subject),
            None => text.push_str("\\N"),
        }
        text.push('\t');
        escape_into(&mut text, &r.nats_subject);
        text.push('\t');
        text.push_str(&r.env.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        text.push('\t');
        // serde_json writes UTF-8.
        escape_into(&mut text, std::str::from_utf8(&data).unwrap_or("null"));
        text.push('\n');
        send_from(&mut copy, &mut text, COPY_CHUNK).await?;
    }
    send_from(&mut copy, &mut text, 1).await?;
    copy.finish().await?;
    Ok(())
}

/// Bytes of COPY text sent at a time: Postgres parses and inserts one chunk
/// while the next is written, instead of waiting for the whole batch.
pub(crate) const COPY_CHUNK: usize = 128 * 1024;

/// Sends the COPY text written so far once it holds at least `min` bytes.
pub(crate) async fn send_from<C: std::ops::DerefMut<Target = sqlx::PgConnection>>(
    copy: &mut sqlx::postgres::PgCopyIn<C>,
    text: &mut String,
    min: usize,
) -> Result<(), sqlx::Error> {
    if !text.is_empty() && text.len() >= min {
        copy.send(text.as_bytes()).await?;
        text.clear();
    }
    Ok(())
}

/// Appends `s` in COPY's text format.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    // Runs between special characters are copied whole (the four are ASCII,
    // so every cut is at a character boundary).
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(escaped);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    fn escape(s: &str) -> String {
        let mut out = String::new();
        super::escape_into(&mut out, s);
        out
    }

    #[test]
    fn copy_text_escaping() {
        assert_eq!(escape("a\\b\tc\nd\re"), "a\\\\b\\tc\\nd\\re");
        assert_eq!(escape(r#"{"k":"x\ny"}"#), r#"{"k":"x\\ny"}"#);
        assert_eq!(escape("é\tü\\"), "é\\tü\\\\", "runs around escapes keep every character");
        assert_eq!(escape("plain ✓"), "plain ✓");
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
