//! The envelope every SKYNET event travels in: a CloudEvents 1.0 event whose data
//! is JSON. [`Envelope`] is the plain-Rust view; [`Envelope::to_cloudevent`] and
//! [`Envelope::from_cloudevent`] convert to and from the `cloudevents-sdk` type,
//! which owns validation of the CloudEvents attributes themselves.

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ids::JobId;
use crate::job::JobEvent;

/// Whether `s` has the shape of a W3C traceparent (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn plausible_traceparent(s: &str) -> bool {
    s.len() == 55 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Content type of a structured-mode CloudEvent.
pub const SPEC_CONTENT_TYPE: &str = "application/cloudevents+json";

/// One event, decoupled from any transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique per `source`; also the `Nats-Msg-Id` when stored.
    pub id: String,
    /// The service (or client) that produced the event: `skynet/<service>`.
    pub source: String,
    /// Versioned, past-tense type: `skynet.job.planned.v1`.
    pub ty: String,
    /// The aggregate id (the job id for job events).
    pub subject: Option<String>,
    /// When the fact happened.
    pub time: DateTime<Utc>,
    /// The event's data.
    pub data: serde_json::Value,
    /// W3C trace context (the CloudEvents distributed-tracing extension): the
    /// span of the service that recorded the event, within the job's trace.
    pub traceparent: Option<String>,
}

/// Why bytes or a CloudEvent could not become a SKYNET event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid CloudEvent (missing attributes, bad specversion, bad JSON...).
    #[error("not a valid CloudEvent: {0}")]
    CloudEvent(String),
    /// The CloudEvent has no data, or data that is not JSON.
    #[error("event {id} carries no JSON data")]
    NoData { id: String },
    /// A type this contract does not define (or a version it does not know).
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The data does not match the type's schema.
    #[error("data of {ty} does not match its schema")]
    Data {
        ty: String,
        #[source]
        source: serde_json::Error,
    },
    /// A job event whose subject is not a job id.
    #[error("job event {id} has no job id in its subject")]
    NoJobId { id: String },
}

impl Envelope {
    /// An envelope around a job event. `id` should be deterministic (see
    /// [`crate::ids::event_id`]) so that re-running a decision re-publishes the same id.
    pub fn job(job: JobId, event: &JobEvent, id: String, source: &str, time: DateTime<Utc>) -> Self {
        Envelope {
            id,
            source: source.to_owned(),
            ty: event.kind().cloud_type().to_owned(),
            subject: Some(job.to_string()),
            time,
            data: event.data_json(),
            traceparent: None,
        }
    }

    /// An envelope around any serialisable data.
    pub fn new<T: Serialize>(
        ty: &str,
        id: String,
        source: &str,
        subject: Option<String>,
        time: DateTime<Utc>,
        data: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Envelope {
            id,
            source: source.to_owned(),
            ty: ty.to_owned(),
            subject,
            time,
            data: serde_json::to_value(data)?,
            traceparent: None,
        })
    }

    /// The job id and typed job event, for envelopes carrying one.
    pub fn job_event(&self) -> Result<(JobId, JobEvent), DecodeError> {
        Ok((job_of(&self.id, self.subject.as_deref())?, JobEvent::decode(&self.ty, &self.data)?))
    }

    /// The data as `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        T::deserialize(&self.data).map_err(|source| DecodeError::Data { ty: self.ty.clone(), source })
    }

    /// The `cloudevents-sdk` event (structured JSON is its `serde` form).
    pub fn to_cloudevent(&self) -> Event {
        let mut b = EventBuilderV10::new()
            .id(self.id.clone())
            .source(self.source.clone())
            .ty(self.ty.clone())
            .time(self.time)
            .data("application/json", self.data.clone());
        if let Some(s) = &self.subject {
            b = b.subject(s.clone());
        }
        if let Some(t) = &self.traceparent {
            b = b.extension("traceparent", t.clone());
        }
        // Every required attribute is set above and `source` is validated by the
        // builder as a URI-reference, which any string without spaces is.
        b.build().unwrap_or_else(|_| {
            EventBuilderV10::new()
                .id(self.id.clone())
                .source("skynet/invalid-source")
                .ty(self.ty.clone())
                .time(self.time)
                .data("application/json", self.data.clone())
                .build()
                .unwrap_or_default()
        })
    }

    /// The structured-mode JSON bytes of this event.
    pub fn to_structured_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_cloudevent()).unwrap_or_default()
    }

    /// Reads an envelope from a `cloudevents-sdk` event. Data must be JSON.
    pub fn from_cloudevent(mut ev: Event) -> Result<Self, DecodeError> {
        // The SDK also reads 0.3; SKYNET's contract is 1.0 only, and an event
        // of another version is refused with its reason like any bad input.
        if ev.specversion() != cloudevents::event::SpecVersion::V10 {
            return Err(DecodeError::CloudEvent(format!(
                "specversion {} is not supported: SKYNET accepts CloudEvents 1.0",
                ev.specversion()
            )));
        }
        let id = ev.id().to_owned();
        let source = ev.source().to_string();
        let ty = ev.ty().to_owned();
        let subject = ev.subject().map(str::to_owned);
        let time = ev.time().copied().unwrap_or_else(Utc::now);
        let traceparent = ev.extension("traceparent").map(|v| v.to_string()).filter(|t| plausible_traceparent(t));
        let (_, _, data) = ev.take_data();
        let data = data
            .and_then(|d| serde_json::Value::try_from(d).ok())
            .ok_or_else(|| DecodeError::NoData { id: id.clone() })?;
        Ok(Envelope { id, source, ty, subject, time, data, traceparent })
    }

    /// Parses structured-mode JSON bytes: a direct parse for well-formed 1.0
    /// events with JSON data (the hot path: every service decodes every event
    /// it handles), the `cloudevents-sdk` parse for anything else, which also
    /// gives the precise error.
    pub fn from_structured_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        match serde_json::from_slice::<Wire<serde_json::Value>>(bytes).ok().and_then(Wire::accepted) {
            Some(w) => Ok(Envelope {
                id: w.id,
                source: w.source,
                ty: w.ty,
                subject: w.subject,
                time: w.time,
                data: w.data,
                traceparent: w.traceparent,
            }),
            None => Self::from_structured_json_sdk(bytes),
        }
    }

    /// The `cloudevents-sdk` parse of structured-mode JSON.
    pub fn from_structured_json_sdk(bytes: &[u8]) -> Result<Self, DecodeError> {
        let ev: Event = serde_json::from_slice(bytes).map_err(|e| DecodeError::CloudEvent(e.to_string()))?;
        Envelope::from_cloudevent(ev)
    }
}

/// The job a job event (id `id`) is about: its subject, which must be a job id.
pub(crate) fn job_of(id: &str, subject: Option<&str>) -> Result<JobId, DecodeError> {
    subject.and_then(|s| s.parse::<JobId>().ok()).ok_or_else(|| DecodeError::NoJobId { id: id.to_owned() })
}

/// A structured-mode event as JSON, its data of type `D` (a tree, or text).
#[derive(serde::Deserialize)]
pub(crate) struct Wire<D> {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
    #[serde(default)]
    datacontenttype: Option<String>,
    #[serde(default = "Option::default")]
    data: Option<D>,
    #[serde(default)]
    traceparent: Option<String>,
}

/// A [`Wire`] the fast path takes, with what it makes of the attributes.
pub(crate) struct Accepted<D> {
    pub id: String,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    pub time: DateTime<Utc>,
    pub data: D,
    pub traceparent: Option<String>,
}

impl<D> Wire<D> {
    /// The event, if it is a well-formed 1.0 event with JSON data; anything
    /// else is the SDK's to parse (and to explain).
    pub(crate) fn accepted(self) -> Option<Accepted<D>> {
        let json_data = self.datacontenttype.as_deref().is_none_or(|c| c.starts_with("application/json"));
        if self.specversion != "1.0" || self.id.is_empty() || self.source.is_empty() || self.ty.is_empty() || !json_data
        {
            return None;
        }
        Some(Accepted {
            data: self.data?,
            id: self.id,
            source: self.source,
            ty: self.ty,
            subject: self.subject,
            time: self.time.unwrap_or_else(Utc::now),
            // Outside input: kept only when it has a traceparent's shape.
            traceparent: self.traceparent.filter(|t| plausible_traceparent(t)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Denied, JobEvent};

    #[test]
    fn structured_json_round_trips() {
        let job = JobId::for_request("t", "1");
        let ev = JobEvent::Denied(Denied { by: "alice".into(), reason: "no".into() });
        let env = Envelope::job(job, &ev, "e1".into(), "skynet/policy", Utc::now());
        let bytes = env.to_structured_json();
        let back = Envelope::from_structured_json(&bytes).expect("parse");
        assert_eq!(back.job_event().expect("job event"), (job, ev));
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "skynet.job.denied.v1");
        assert_eq!(v["subject"], job.to_string());
    }

    #[test]
    fn the_fast_path_and_the_sdk_agree() {
        let job = JobId::for_request("t", "2");
        let ev = JobEvent::Denied(Denied { by: "a\tb".into(), reason: "line\nbreak".into() });
        let env = Envelope::job(job, &ev, "e2".into(), "skynet/policy", Utc::now());
        let bytes = env.to_structured_json();
        let fast = Envelope::from_structured_json(&bytes).expect("fast");
        let sdk = Envelope::from_structured_json_sdk(&bytes).expect("sdk");
        assert_eq!(fast, sdk);
        // Not 1.0, or no data: the SDK parse decides (and explains).
        let v03 = br#"{"specversion":"0.3","id":"x","source":"s","type":"t","data":{}}"#;
        let err = Envelope::from_structured_json(v03).expect_err("0.3 is refused");
        assert!(err.to_string().contains("specversion 0.3"), "{err}");
        assert!(Envelope::from_structured_json(br#"{"specversion":"1.0","id":"x","source":"s","type":"t"}"#).is_err());
    }

    #[test]
    fn missing_attributes_are_rejected() {
        let err = Envelope::from_structured_json(br#"{"specversion":"1.0","id":"x"}"#).expect_err("no source/type");
        assert!(matches!(err, DecodeError::CloudEvent(_)));
    }
}
