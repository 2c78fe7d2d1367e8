//! The CloudEvents ↔ NATS binding, written against async-nats (the SDK's own
//! `nats` feature pins an old client).
//!
//! * Publishing always uses **structured mode**: the payload is the event as
//!   `application/cloudevents+json`, and `Nats-Msg-Id` is the event id so that a
//!   retried publish inside the stream's duplicate window stores one message.
//! * Receiving accepts **structured mode** (by content type, or any payload that
//!   is a JSON CloudEvent) and **binary mode** (`ce-*` headers and the data as the
//!   payload), per the CloudEvents NATS protocol binding. The SDK's message
//!   deserializer traits do the attribute validation.

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use bytes::Bytes;
use cloudevents::event::SpecVersion;
use cloudevents::message::{
    BinaryDeserializer, BinarySerializer, Encoding, MessageAttributeValue, MessageDeserializer, StructuredDeserializer,
    StructuredSerializer,
};
use skynet_contract::{DecodeError, Envelope, RawEnvelope, SPEC_CONTENT_TYPE};

/// Prefix of binary-mode attribute headers.
const CE_PREFIX: &str = "ce-";

/// Headers and payload of a structured-mode message for `env`. An event
/// without a trace context gets the current span's (see [`crate::trace`]), in
/// its CloudEvents extension and in the `traceparent` header.
pub fn encode(env: &Envelope) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", SPEC_CONTENT_TYPE);
    headers.insert(NATS_MESSAGE_ID, env.id.as_str());
    // Job events come stamped (the repo sets their job's trace): only the
    // others look up the current context, and only they are copied.
    let stamped = env
        .traceparent
        .is_none()
        .then(crate::trace::current)
        .flatten()
        .map(|tp| Envelope { traceparent: Some(tp), ..env.clone() });
    let env = stamped.as_ref().unwrap_or(env);
    if let Some(tp) = &env.traceparent {
        headers.insert(crate::trace::TRACEPARENT, tp.as_str());
    }
    (headers, Bytes::from(env.to_structured_json()))
}

/// Reads a SKYNET envelope from a NATS message in either content mode.
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Envelope, DecodeError> {
    let msg = NatsMessage { headers, body: payload };
    if msg.encoding() != Encoding::BINARY {
        // Structured mode (by content type, or by elimination).
        return Envelope::from_structured_json(payload);
    }
    let event = match msg.encoding() {
        Encoding::BINARY | Encoding::STRUCTURED => MessageDeserializer::into_event(msg),
        // No content type and no ce- headers: structured JSON is the only reading left.
        _ => StructuredDeserializer::into_event(msg),
    }
    .map_err(|e| DecodeError::CloudEvent(e.to_string()))?;
    Envelope::from_cloudevent(event)
}

/// [`decode`], the data kept as the JSON text it came as (see
/// [`skynet_contract::raw`]): for readers that store it as it is.
pub fn decode_raw(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<RawEnvelope, DecodeError> {
    if (NatsMessage { headers, body: payload }).encoding() != Encoding::BINARY {
        return RawEnvelope::from_structured_json(payload);
    }
    decode(headers, payload).map(RawEnvelope::from)
}

/// Whether the message's payload claims to be JSON at all: structured mode, or
/// binary mode with a JSON (or absent) content type. Used to tell "not JSON" from
/// "not a CloudEvent" when rejecting input.
pub fn is_binary_mode(headers: Option<&HeaderMap>) -> bool {
    header(headers, "ce-specversion").is_some()
}

/// Whether a live message is a copy of a *stored* one (a direct-get reply,
/// which carries `Nats-Stream`) rather than an event as a service published it.
/// In the CLIENTS account any client can aim a direct get's reply at another
/// job's subject; watchers skip such copies instead of believing them.
pub fn is_reflected(headers: Option<&HeaderMap>) -> bool {
    header(headers, "Nats-Stream").is_some() || header(headers, "Nats-Sequence").is_some()
}

/// A header value, looked up case-insensitively (NATS header names are
/// case-sensitive on the wire, clients are not consistent).
pub fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    let h = headers?;
    h.iter()
        .find(|(k, _)| AsRef::<str>::as_ref(k).eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(|v| v.as_str())
}

/// A `ce-` header value as the CloudEvents bindings write it: percent-encoded
/// UTF-8 (`%20` for a space). A value that is not valid encoding is refused.
fn decode_header_value(value: &str) -> cloudevents::message::Result<String> {
    percent_encoding::percent_decode_str(value).decode_utf8().map(|v| v.into_owned()).map_err(|e| {
        cloudevents::message::Error::Other {
            source: format!("header value {value:?} is not percent-encoded UTF-8: {e}").into(),
        }
    })
}

struct NatsMessage<'a> {
    headers: Option<&'a HeaderMap>,
    body: &'a [u8],
}

impl MessageDeserializer for NatsMessage<'_> {
    fn encoding(&self) -> Encoding {
        if header(self.headers, "content-type").is_some_and(|v| v.starts_with(SPEC_CONTENT_TYPE)) {
            Encoding::STRUCTURED
        } else if header(self.headers, "ce-specversion").is_some() {
            Encoding::BINARY
        } else {
            Encoding::UNKNOWN
        }
    }
}

impl StructuredDeserializer for NatsMessage<'_> {
    fn deserialize_structured<R: Sized, V: StructuredSerializer<R>>(
        self,
        visitor: V,
    ) -> cloudevents::message::Result<R> {
        visitor.set_structured_event(self.body.to_vec())
    }
}

impl BinaryDeserializer for NatsMessage<'_> {
    fn deserialize_binary<R: Sized, V: BinarySerializer<R>>(self, mut visitor: V) -> cloudevents::message::Result<R> {
        let version = header(self.headers, "ce-specversion").unwrap_or_default();
        let spec = SpecVersion::try_from(decode_header_value(version)?.as_str())?;
        let known = spec.attribute_names();
        visitor = visitor.set_spec_version(spec)?;
        if let Some(h) = self.headers {
            for (name, values) in h.iter() {
                let lower = AsRef::<str>::as_ref(name).to_ascii_lowercase();
                let Some(attr) = lower.strip_prefix(CE_PREFIX) else {
                    continue;
                };
                if attr == "specversion" {
                    continue;
                }
                let Some(value) = values.first() else {
                    continue;
                };
                // The binding percent-encodes header values (a space, a
                // non-ASCII letter); the attribute is the decoded text.
                let value = MessageAttributeValue::String(decode_header_value(value.as_str())?);
                visitor = if known.contains(&attr) {
                    visitor.set_attribute(attr, value)?
                } else {
                    visitor.set_extension(attr, value)?
                };
            }
        }
        if let Some(ct) = header(self.headers, "content-type") {
            visitor = visitor.set_attribute("datacontenttype", MessageAttributeValue::String(ct.to_owned()))?;
        }
        if self.body.is_empty() { visitor.end() } else { visitor.end_with_data(self.body.to_vec()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skynet_contract::task::{TASK_REQUESTED, TaskRequested};

    #[test]
    fn structured_round_trip_sets_msg_id() {
        let env = Envelope::new(
            TASK_REQUESTED,
            "id-1".into(),
            "cli",
            None,
            chrono::Utc::now(),
            &serde_json::json!({"intent": "x"}),
        )
        .expect("env");
        let (h, p) = encode(&env);
        assert_eq!(header(Some(&h), "nats-msg-id"), Some("id-1"));
        let back = decode(Some(&h), &p).expect("decode");
        assert_eq!(back.id, "id-1");
        assert_eq!(back.data["intent"], "x");
        let _: TaskRequested = back.data_as().expect("typed");
    }

    #[test]
    fn binary_mode_is_accepted() {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "1.0");
        h.insert("ce-id", "b-1");
        h.insert("ce-source", "some/client");
        h.insert("ce-type", TASK_REQUESTED);
        h.insert("ce-traceid", "abc");
        h.insert("content-type", "application/json");
        let env = decode(Some(&h), br#"{"intent":"run the tests"}"#).expect("binary");
        assert_eq!((env.id.as_str(), env.source.as_str(), env.ty.as_str()), ("b-1", "some/client", TASK_REQUESTED));
        assert_eq!(env.data["intent"], "run the tests");
    }

    #[test]
    fn binary_header_values_are_percent_decoded() {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "1.0");
        h.insert("ce-id", "b%202");
        h.insert("ce-source", "me/J%C3%BCrgen%20laptop");
        h.insert("ce-type", TASK_REQUESTED);
        let env = decode(Some(&h), br#"{"intent":"x"}"#).expect("binary");
        assert_eq!((env.id.as_str(), env.source.as_str()), ("b 2", "me/Jürgen laptop"));
        h.insert("ce-source", "bad%ff%fe");
        assert!(decode(Some(&h), br#"{"intent":"x"}"#).is_err(), "not UTF-8 once decoded");
    }

    #[test]
    fn only_cloudevents_1_0_is_accepted() {
        let v03 = br#"{"specversion":"0.3","id":"x","source":"s","type":"t","data":{"a":1}}"#;
        let err = decode(None, v03).expect_err("0.3 structured");
        assert!(err.to_string().contains("0.3"), "{err}");
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "0.3");
        h.insert("ce-id", "x");
        h.insert("ce-source", "s");
        h.insert("ce-type", "t");
        h.insert("content-type", "application/json");
        let err = decode(Some(&h), br#"{"a":1}"#).expect_err("0.3 binary");
        assert!(err.to_string().contains("0.3"), "{err}");
    }

    #[test]
    fn structured_without_content_type_is_accepted_and_garbage_is_not() {
        let body = br#"{"specversion":"1.0","id":"s","source":"x","type":"t","data":{"a":1}}"#;
        assert_eq!(decode(None, body).expect("plain JSON CloudEvent").data["a"], 1);
        assert!(matches!(decode(None, b"not json"), Err(DecodeError::CloudEvent(_))));
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "0.1");
        assert!(decode(Some(&h), b"{}").is_err(), "unknown spec version");
    }
}
