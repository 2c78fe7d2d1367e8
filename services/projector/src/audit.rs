//! The audit read model: every event, as stored, one row each.

use skynet_contract::RawEnvelope;
use skynet_contract::raw::raw_json;
use sqlx::{Postgres, Transaction};

use crate::copy::{self, Binary};

/// One event with its place in the log.
#[derive(Debug)]
pub struct Row {
    pub seq: u64,
    pub nats_subject: String,
    pub env: RawEnvelope,
}

impl Row {
    /// The row for the event at `seq`, made storable: Postgres `text` and
    /// `jsonb` refuse the NUL character, which valid JSON (an intent, a step's
    /// output) may carry. The read models hold U+FFFD in its place; the log
    /// keeps every byte. Without this one such event failed every batch after
    /// it, for good.
    ///
    /// JSON text spells a NUL only as `\u0000`, so data without any `\u`
    /// escape is stored as it is, and the (rare) rest is read as a tree,
    /// scrubbed and written out again (compact, its keys in order). What a
    /// tree refuses never gets here: `RawEnvelope` checked the event first.
    pub fn storable(seq: u64, nats_subject: &str, mut env: RawEnvelope) -> Result<Row, skynet_contract::DecodeError> {
        for text in [&mut env.id, &mut env.ty, &mut env.source] {
            scrub_str(text);
        }
        if let Some(subject) = env.subject.as_mut() {
            scrub_str(subject);
        }
        if env.data.get().contains("\\u") {
            let mut tree = env.tree()?;
            scrub(&mut tree);
            env.data = raw_json(&tree);
        }
        let mut nats_subject = nats_subject.to_owned();
        scrub_str(&mut nats_subject);
        Ok(Row { seq, nats_subject, env })
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
/// for thousands of rows), in the binary format (see `crate::copy`). No
/// conflict handling is needed: a batch is written in the same transaction as
/// the checkpoint that says it was applied, so the same rows can never be
/// copied twice.
pub async fn insert(tx: &mut Transaction<'_, Postgres>, rows: &[std::sync::Arc<Row>]) -> Result<(), sqlx::Error> {
    const COLUMNS: &[&str] = &["seq", "event_id", "type", "source", "subject", "nats_subject", "time", "data"];
    copy::rows(tx, "audit_events", COLUMNS, rows, |out, r| {
        // A sequence past i64 (never: the stream's are u64 from 1) saturates
        // and the primary key refuses the second such row.
        out.bigint(i64::try_from(r.seq).unwrap_or(i64::MAX));
        out.text(&r.env.id);
        out.text(&r.env.ty);
        out.text(&r.env.source);
        out.opt(r.env.subject.as_deref(), Binary::text);
        out.text(&r.nats_subject);
        out.timestamptz(&r.env.time);
        // The data's JSON text as the event carried it: no tree to write out.
        out.text(r.env.data.get());
    })
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_is_stored_as_it_came_unless_it_must_be_scrubbed() {
        let event = |data: &str| {
            let bytes = format!(r#"{{"specversion":"1.0","id":"x","source":"s","type":"t","data":{data}}}"#);
            skynet_contract::RawEnvelope::from_structured_json(bytes.as_bytes())
                .and_then(|env| super::Row::storable(1, "s", env))
        };
        let plain = event(r#"{"b":1, "a":"é\n"}"#).expect("storable");
        assert_eq!(plain.env.data.get(), r#"{"b":1, "a":"é\n"}"#, "as the log holds it, order and spacing too");
        let escaped = event(r#"{"a":"\u00e9"}"#).expect("storable");
        assert_eq!(escaped.env.tree().expect("tree")["a"], "é");
        assert!(event(r#"{"a":"\ud800"}"#).is_err(), "a lone surrogate is refused, as a tree refuses it");
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
        let row = super::Row::storable(1, "skynet.job.x.y", env.into()).expect("storable");
        let text = row.env.data.get().to_owned() + &row.env.id;
        assert!(!text.contains('\u{0}') && !text.contains("\\u0000"), "{text}");
        assert_eq!(row.env.tree().expect("tree")["stdout"], "a\u{FFFD}b");
        assert_eq!(row.env.tree().expect("tree")["k\u{FFFD}"]["deep"], "x\u{FFFD}");
    }
}
