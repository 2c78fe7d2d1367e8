//! Pure validation of a submission: bytes and headers in, an accepted request or
//! a refusal with a stable code out. No I/O, so every rule is unit-tested.

use async_nats::HeaderMap;
use skynet_bus::codec;
use skynet_contract::job::Requested;
use skynet_contract::task::{MAX_SUBMISSION_BYTES, RejectionCode, TASK_REQUESTED, TASK_REQUESTED_ALIAS, TaskRequested};
use skynet_contract::{DecodeError, JobId, subjects};

/// The longest CloudEvent `source` or `id` accepted.
pub const MAX_ATTRIBUTE_BYTES: usize = 256;

/// A submission the intake accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub job: JobId,
    /// The submission's CloudEvent id (the cause of the job's first event).
    pub request_event_id: String,
    pub requested: Requested,
}

/// A submission the intake refuses.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: RejectionCode,
    pub reason: String,
    /// `source`/`id` of the submission when it was readable enough to have them.
    pub request: Option<(String, String)>,
}

impl Refusal {
    fn new(code: RejectionCode, reason: impl Into<String>) -> Refusal {
        Refusal { code, reason: reason.into(), request: None }
    }
}

/// A submission that arrived from outside SKYNET (the CLIENTS account, on
/// [`subjects::INTAKE_CLIENT`]) may not claim a `source` of SKYNET's own
/// services: the job id derives from the source, so a client could otherwise
/// take the job an API caller's idempotency key will map to, or pass for a
/// service in the log.
pub fn check_channel(subject: &str, accepted: &Accepted) -> Result<(), Refusal> {
    let source = &accepted.requested.request_source;
    if subject == subjects::INTAKE_CLIENT && source.starts_with("skynet/") {
        return Err(Refusal {
            code: RejectionCode::ReservedSource,
            reason: format!("source {source:?} is reserved for SKYNET's own services; name your client another way"),
            request: Some((source.clone(), accepted.request_event_id.clone())),
        });
    }
    Ok(())
}

/// Validates one submission.
pub fn validate(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Accepted, Refusal> {
    let size = payload.len() + headers.map_or(0, header_bytes);
    if size > MAX_SUBMISSION_BYTES {
        return Err(Refusal::new(
            RejectionCode::TooLarge,
            format!("submission is {size} bytes; the limit is {MAX_SUBMISSION_BYTES}"),
        ));
    }
    if !codec::is_binary_mode(headers) && serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() {
        return Err(Refusal::new(
            RejectionCode::NotJson,
            "payload is not JSON (expected a structured-mode CloudEvent)",
        ));
    }
    let env = codec::decode(headers, payload).map_err(|e| match e {
        DecodeError::NoData { .. } => {
            Refusal::new(RejectionCode::InvalidData, format!("{e}: expected data with an intent"))
        }
        other => Refusal::new(RejectionCode::NotCloudEvent, other.to_string()),
    })?;
    let request = Some((env.source.clone(), env.id.clone()));
    let refuse = |code, reason: String| Refusal { code, reason, request: request.clone() };
    // Both name the job and key rate limits: bounded, like any identifier.
    for (name, value) in [("source", &env.source), ("id", &env.id)] {
        if value.len() > MAX_ATTRIBUTE_BYTES {
            let reason = format!("CloudEvent {name} is {} bytes; at most {MAX_ATTRIBUTE_BYTES}", value.len());
            return Err(refuse(RejectionCode::InvalidData, reason));
        }
    }
    if env.ty != TASK_REQUESTED && env.ty != TASK_REQUESTED_ALIAS {
        let reason = if env.ty.starts_with(TASK_REQUESTED_ALIAS) {
            format!("unsupported version of {TASK_REQUESTED_ALIAS}: {:?}; this intake accepts {TASK_REQUESTED}", env.ty)
        } else {
            format!("unknown event type {:?}; submit {TASK_REQUESTED}", env.ty)
        };
        return Err(refuse(RejectionCode::UnknownType, reason));
    }
    let data: TaskRequested =
        env.data_as().map_err(|e| refuse(RejectionCode::InvalidData, format!("{}: {}", e, source_text(&e))))?;
    if data.intent.trim().is_empty() {
        return Err(refuse(RejectionCode::InvalidData, "intent must not be empty".into()));
    }
    // NUL and other control characters are nobody's intent, and some stores
    // (Postgres text and jsonb) refuse NUL outright: refused here, with the field.
    let fields = [
        ("intent", Some(data.intent.as_str())),
        ("working_dir", data.working_dir.as_deref()),
        ("project", data.project.as_deref()),
        ("requested_by", data.requested_by.as_deref()),
    ];
    for (name, value) in fields {
        let multiline = name == "intent";
        if let Some(c) = value.and_then(|v| v.chars().find(|c| forbidden_control(*c, multiline))) {
            let reason = format!("{name} contains the control character U+{:04X}; send text", u32::from(c));
            return Err(refuse(RejectionCode::InvalidData, reason));
        }
    }
    Ok(Accepted {
        job: JobId::for_request(&env.source, &env.id),
        request_event_id: env.id.clone(),
        requested: Requested {
            intent: data.intent,
            working_dir: data.working_dir,
            project: data.project,
            requested_by: data.requested_by,
            constraints: data.constraints,
            plan: data.plan,
            request_source: env.source,
            request_id: env.id,
        },
    })
}

/// A control character a text field may not hold (an intent may hold line
/// breaks and tabs).
fn forbidden_control(c: char, multiline: bool) -> bool {
    c.is_control() && !(multiline && matches!(c, '\n' | '\t' | '\r'))
}

fn source_text(e: &DecodeError) -> String {
    std::error::Error::source(e).map(ToString::to_string).unwrap_or_default()
}

fn header_bytes(h: &HeaderMap) -> usize {
    h.iter().map(|(k, vs)| AsRef::<str>::as_ref(k).len() + vs.iter().map(|v| v.as_str().len() + 4).sum::<usize>()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ce(ty: &str, data: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "specversion": "1.0", "id": "req-1", "source": "tests", "type": ty, "data": data
        }))
        .expect("json")
    }

    fn code(r: Result<Accepted, Refusal>) -> RejectionCode {
        r.expect_err("refused").code
    }

    #[test]
    fn accepts_a_valid_structured_request_and_derives_the_job_id() {
        let a =
            validate(None, &ce(TASK_REQUESTED, serde_json::json!({"intent": "run the tests", "working_dir": "/tmp"})))
                .expect("valid");
        assert_eq!(a.job, JobId::for_request("tests", "req-1"));
        assert_eq!(a.requested.working_dir.as_deref(), Some("/tmp"));
        assert!(validate(None, &ce(TASK_REQUESTED_ALIAS, serde_json::json!({"intent": "x"}))).is_ok());
    }

    #[test]
    fn refuses_each_kind_of_bad_input_with_its_code() {
        use RejectionCode as C;
        let cases: Vec<(&str, Vec<u8>, C)> = vec![
            ("not json", b"hello there".to_vec(), C::NotJson),
            ("json, not a cloudevent", br#"{"intent":"x"}"#.to_vec(), C::NotCloudEvent),
            ("missing intent", ce(TASK_REQUESTED, serde_json::json!({})), C::InvalidData),
            ("empty intent", ce(TASK_REQUESTED, serde_json::json!({"intent": "  "})), C::InvalidData),
            ("unknown field", ce(TASK_REQUESTED, serde_json::json!({"intent": "x", "bogus": 1})), C::InvalidData),
            ("unknown type", ce("com.example.other", serde_json::json!({"intent": "x"})), C::UnknownType),
            ("unknown version", ce("skynet.task.requested.v7", serde_json::json!({"intent": "x"})), C::UnknownType),
            ("a 3,000-byte source", serde_json::to_vec(&serde_json::json!({"specversion": "1.0", "id": "x", "source": "s".repeat(3000), "type": TASK_REQUESTED, "data": {"intent": "x"}})).expect("json"), C::InvalidData),
            ("NUL in the intent", ce(TASK_REQUESTED, serde_json::json!({"intent": "list\u{0}files"})), C::InvalidData),
            (
                "escape in a directory",
                ce(TASK_REQUESTED, serde_json::json!({"intent": "x", "working_dir": "/tmp\u{1b}[2J"})),
                C::InvalidData,
            ),
            (
                "too large",
                ce(TASK_REQUESTED, serde_json::json!({"intent": "x".repeat(MAX_SUBMISSION_BYTES)})),
                C::TooLarge,
            ),
        ];
        for (name, payload, want) in cases {
            assert_eq!(code(validate(None, &payload)), want, "{name}");
        }
    }

    #[test]
    fn refusals_of_readable_events_name_the_request() {
        let r = validate(None, &ce("skynet.task.requested.v2", serde_json::json!({"intent": "x"}))).expect_err("v2");
        assert_eq!(r.request, Some(("tests".into(), "req-1".into())));
        assert!(r.reason.contains("unsupported version"), "{}", r.reason);
    }
}
