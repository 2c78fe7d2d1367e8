//! Dead letters: a message a service cannot accept is stored unchanged in
//! `SKYNET_DLQ` with the reason in its headers, where a person can find it
//! (`nats stream view SKYNET_DLQ`, `skynet watch dlq`). Nothing is dropped silently.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;

/// Stable reason code (`too_large`, `not_json`, ...).
pub const CODE_HEADER: &str = "Skynet-Dlq-Code";
/// Human-readable reason.
pub const REASON_HEADER: &str = "Skynet-Dlq-Reason";
/// Subject the message originally arrived on.
pub const SUBJECT_HEADER: &str = "Skynet-Dlq-Subject";
/// Service that refused it.
pub const SERVICE_HEADER: &str = "Skynet-Dlq-Service";
/// How many times it was delivered before it was given up on.
pub const DELIVERIES_HEADER: &str = "Skynet-Dlq-Deliveries";

/// What to dead-letter and why.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// The origin, last token of the DLQ subject (`skynet.dlq.<origin>`).
    pub origin: &'a str,
    pub service: &'a str,
    pub subject: &'a str,
    pub headers: Option<&'a HeaderMap>,
    pub payload: Bytes,
    pub code: &'a str,
    pub reason: &'a str,
    pub deliveries: i64,
    /// Unique per original message (e.g. its stream sequence): a second
    /// dead-lettering of the same message is deduplicated.
    pub dedupe_key: String,
}

/// Stores the dead letter; returns its sequence in `SKYNET_DLQ`.
pub async fn dead_letter(js: &jetstream::Context, dl: DeadLetter<'_>) -> Result<u64, jetstream::context::PublishError> {
    let mut headers = HeaderMap::new();
    if let Some(orig) = dl.headers {
        for (name, values) in orig.iter() {
            // NATS control headers would make the DLQ publish be deduplicated or
            // refused as if it were the original.
            let lower = AsRef::<str>::as_ref(name).to_ascii_lowercase();
            if lower.starts_with("nats-") {
                continue;
            }
            // Dead letters are readable by every client: a submitter's token
            // is kept only as the fact that one was there.
            if lower == "authorization" {
                headers.insert(name.clone(), "(redacted)");
                continue;
            }
            for v in values {
                headers.append(name.clone(), v.clone());
            }
        }
    }
    headers.insert(CODE_HEADER, dl.code);
    headers.insert(REASON_HEADER, header_safe(dl.reason));
    headers.insert(SUBJECT_HEADER, dl.subject);
    headers.insert(SERVICE_HEADER, dl.service);
    headers.insert(DELIVERIES_HEADER, dl.deliveries.to_string());
    headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("dlq:{}", dl.dedupe_key));
    let subject = format!("{}.{}", skynet_contract::subjects::DLQ_PREFIX, dl.origin);
    let ack = js.send_publish(subject, PublishMessage::build().headers(headers).payload(dl.payload)).await?.await?;
    Ok(ack.sequence)
}

/// Header values cannot hold line breaks; long reasons are cut.
fn header_safe(s: &str) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    one_line.chars().take(1024).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_become_single_line_headers() {
        assert_eq!(super::header_safe("a\r\nb"), "a  b");
        assert_eq!(super::header_safe(&"x".repeat(5000)).len(), 1024);
    }
}
