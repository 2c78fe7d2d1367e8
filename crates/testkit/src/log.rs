//! Reading the event log from tests with nothing but async-nats.

use async_nats::jetstream::{self, consumer};

/// How many messages of `stream` match `filter` right now (read by direct
/// get, as any role that may read the stream can).
pub async fn count_messages(js: &jetstream::Context, stream: &str, filter: &str) -> anyhow::Result<u64> {
    let all = skynet_bus::read::read_all(&js.client(), stream, filter, 1).await.map_err(|e| anyhow::anyhow!(e))?;
    Ok(all.len() as u64)
}

/// The next message of a durable consumer, fetched the way its service would
/// (for delivering the same message to a handler twice).
pub async fn fetch_one(js: &jetstream::Context, stream: &str, durable: &str) -> anyhow::Result<jetstream::Message> {
    use futures::StreamExt;
    let c: consumer::PullConsumer =
        js.get_stream(stream).await?.get_consumer(durable).await.map_err(|e| anyhow::anyhow!(e))?;
    let mut batch = c
        .fetch()
        .max_messages(1)
        .expires(std::time::Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    match batch.next().await {
        Some(m) => m.map_err(|e| anyhow::anyhow!(e)),
        None => anyhow::bail!("no message for {stream}/{durable} within 5 s"),
    }
}
