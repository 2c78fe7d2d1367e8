//! Publishing an event that is not part of a job aggregate (rejections, later
//! executor and provider facts): structured mode, id as `Nats-Msg-Id`, and the
//! stream's acknowledgement awaited so the caller knows it is stored.

use async_nats::jetstream::{self, message::PublishMessage};
use skynet_contract::Envelope;

use crate::codec;

/// Publishes `env` on `subject` and returns its stream sequence.
pub async fn publish(
    js: &jetstream::Context,
    subject: &str,
    env: &Envelope,
) -> Result<u64, jetstream::context::PublishError> {
    let (headers, payload) = codec::encode(env);
    let ack =
        js.send_publish(subject.to_owned(), PublishMessage::build().headers(headers).payload(payload)).await?.await?;
    Ok(ack.sequence)
}

/// Publishes `env` on `subject` only if the newest stored message under
/// `filter` is still at stream sequence `expected` (0: none stored) — optimistic
/// concurrency for an aggregate that is not a job (the initiative's ledger).
/// A conflict is the server's `WrongLastSequence` error.
pub async fn publish_expecting(
    js: &jetstream::Context,
    subject: &str,
    env: &Envelope,
    filter: &str,
    expected: u64,
) -> Result<u64, jetstream::context::PublishError> {
    let (mut headers, payload) = codec::encode(env);
    headers.insert(crate::store::EXPECTED_SEQ_HEADER, expected.to_string());
    headers.insert(crate::store::EXPECTED_SUBJECT_HEADER, filter);
    let ack =
        js.send_publish(subject.to_owned(), PublishMessage::build().headers(headers).payload(payload)).await?.await?;
    Ok(ack.sequence)
}
