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
