//! An event whose data stays the JSON text it arrived as.
//!
//! [`Envelope`] parses the data into a `serde_json::Value` tree, which every
//! service wants: it reads fields out of it. A reader that stores the data as
//! it came (the projector's audit rows) and decodes it into a typed event at
//! most once pays for that tree and then for writing it back out; a rebuild
//! does so for every event of the log. [`RawEnvelope`] keeps the text instead.
//! What it accepts is what [`Envelope`] accepts: the same checks on the same
//! attributes, the SDK's parse for anything off the fast path.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::envelope::{DecodeError, Envelope, Wire, job_of};
use crate::ids::JobId;
use crate::job::JobEvent;

/// One event, its data as JSON text (see the module's docs).
#[derive(Debug, Clone)]
pub struct RawEnvelope {
    pub id: String,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    pub time: DateTime<Utc>,
    /// The data, as the JSON text of the event (valid JSON: it was parsed).
    pub data: Box<RawValue>,
    pub traceparent: Option<String>,
}

impl RawEnvelope {
    /// Parses structured-mode JSON bytes as [`Envelope::from_structured_json`]
    /// does, keeping the data's text.
    ///
    /// Keeping the data's text skips what a tree's parse checks (a number
    /// beyond `f64`, a lone surrogate, nesting past serde_json's 128 levels),
    /// so the whole event is first read through [`Checked`], which checks
    /// exactly that and builds nothing; what it refuses takes the
    /// [`Envelope`] path, which refuses it with the same error as before.
    pub fn from_structured_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let fast = serde_json::from_slice::<Checked>(bytes)
            .ok()
            .and_then(|_| serde_json::from_slice::<Wire<Box<RawValue>>>(bytes).ok())
            .and_then(Wire::accepted);
        match fast {
            Some(w) => Ok(RawEnvelope {
                id: w.id,
                source: w.source,
                ty: w.ty,
                subject: w.subject,
                time: w.time,
                data: w.data,
                traceparent: w.traceparent,
            }),
            None => Envelope::from_structured_json_sdk(bytes).map(RawEnvelope::from),
        }
    }

    /// The job id and typed job event, for envelopes carrying one: read from
    /// the text, or (should that fail) from the tree as [`Envelope::job_event`]
    /// reads it, so both accept exactly the same data.
    pub fn job_event(&self) -> Result<(JobId, JobEvent), DecodeError> {
        let job = job_of(&self.id, self.subject.as_deref())?;
        let event = match JobEvent::decode_json(&self.ty, self.data.get()) {
            // A struct read from text refuses a repeated key the tree keeps
            // the last of; the tree's reading is the contract's.
            Err(DecodeError::Data { .. }) => JobEvent::decode(&self.ty, &self.tree()?)?,
            other => other?,
        };
        Ok((job, event))
    }

    /// The data as `T` (the same fallback as [`RawEnvelope::job_event`]).
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        serde_json::from_str(self.data.get()).or_else(|_| {
            T::deserialize(&self.tree()?).map_err(|source| DecodeError::Data { ty: self.ty.clone(), source })
        })
    }

    /// The data as a `Value` tree.
    pub fn tree(&self) -> Result<serde_json::Value, DecodeError> {
        serde_json::from_str(self.data.get()).map_err(|source| DecodeError::Data { ty: self.ty.clone(), source })
    }
}

impl From<Envelope> for RawEnvelope {
    fn from(env: Envelope) -> Self {
        RawEnvelope {
            data: raw_json(&env.data),
            id: env.id,
            source: env.source,
            ty: env.ty,
            subject: env.subject,
            time: env.time,
            traceparent: env.traceparent,
        }
    }
}

/// Any JSON, read as a `serde_json::Value` would be (every number parsed,
/// every string's escapes decoded, nesting limited) without building it.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> serde::de::Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// The JSON text of `value`.
pub fn raw_json(value: &serde_json::Value) -> Box<RawValue> {
    // A `Value` always serialises, and to valid JSON.
    serde_json::value::to_raw_value(value)
        .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Denied;

    #[test]
    fn reads_what_the_envelope_reads() {
        let job = JobId::for_request("t", "raw");
        let ev = JobEvent::Denied(Denied { by: "a\tb".into(), reason: "é \"quoted\"".into() });
        let env = Envelope::job(job, &ev, "e1".into(), "skynet/policy", Utc::now());
        let raw = RawEnvelope::from_structured_json(&env.to_structured_json()).expect("raw");
        assert_eq!(
            (raw.id.as_str(), raw.ty.as_str(), raw.subject.as_deref()),
            ("e1", env.ty.as_str(), Some(&*job.to_string()))
        );
        assert_eq!(raw.time, env.time);
        assert_eq!(raw.tree().expect("tree"), env.data);
        assert_eq!(raw.job_event().expect("typed"), (job, ev));
    }

    #[test]
    fn accepts_and_refuses_what_the_envelope_does() {
        for (bytes, accepted) in [
            (&br#"{"specversion":"0.3","id":"x","source":"s","type":"t","data":{}}"#[..], false),
            (br#"{"specversion":"1.0","id":"x","source":"s","type":"t"}"#, false),
            (br#"{not json"#, false),
            // Off the fast path (an empty id), the SDK's parse decides for both.
            (br#"{"specversion":"1.0","id":"","source":"s","type":"t","data":{"a":1}}"#, true),
        ] {
            let raw = RawEnvelope::from_structured_json(bytes)
                .map(|r| (r.id.clone(), r.tree().ok()))
                .map_err(|e| e.to_string());
            let env = Envelope::from_structured_json(bytes).map(|e| (e.id, Some(e.data))).map_err(|e| e.to_string());
            assert_eq!(raw, env, "{}", String::from_utf8_lossy(bytes));
            assert_eq!(raw.is_ok(), accepted, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn what_a_tree_refuses_is_refused_with_the_trees_reason() {
        let deep = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        for (data, accepted) in [
            ("{\"x\":1e400}".to_owned(), false),
            ("{\"x\":\"\\ud800\"}".to_owned(), false),
            ("{\"x\":\"\\u00e9\"}".to_owned(), true),
            // serde_json reads 127 levels; the event is one of them.
            (deep(126), true),
            (deep(127), false),
            (deep(100_000), false),
        ] {
            let bytes = format!(r#"{{"specversion":"1.0","id":"x","source":"s","type":"t","data":{data}}}"#);
            let raw =
                RawEnvelope::from_structured_json(bytes.as_bytes()).map(|r| r.tree().ok()).map_err(|e| e.to_string());
            let env = Envelope::from_structured_json(bytes.as_bytes()).map(|e| Some(e.data)).map_err(|e| e.to_string());
            assert_eq!(raw, env, "{}", &data[..data.len().min(40)]);
            assert_eq!(raw.is_ok(), accepted, "{}", &data[..data.len().min(40)]);
        }
    }

    #[test]
    fn a_repeated_key_reads_as_the_tree_reads_it() {
        // The text path refuses a struct with a key twice; the tree keeps the
        // last value, and so does the raw envelope.
        let bytes = br#"{"specversion":"1.0","id":"x","source":"skynet/policy","type":"skynet.job.denied.v1",
            "subject":"00000000-0000-0000-0000-000000000001","data":{"by":"a","reason":"r","by":"b"}}"#;
        let (_, ev) = RawEnvelope::from_structured_json(bytes).expect("raw").job_event().expect("typed");
        let (_, want) = Envelope::from_structured_json(bytes).expect("env").job_event().expect("typed");
        assert_eq!(ev, want);
        assert_eq!(ev, JobEvent::Denied(Denied { by: "b".into(), reason: "r".into() }));
        // Data of the wrong shape fails both ways.
        let wrong = br#"{"specversion":"1.0","id":"x","source":"skynet/executor","type":"skynet.job.step_output.v1",
            "subject":"00000000-0000-0000-0000-000000000001","data":{"step":"zero"}}"#;
        assert!(RawEnvelope::from_structured_json(wrong).expect("raw").job_event().is_err());
    }
}
