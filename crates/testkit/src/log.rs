//! Reading the event log from tests with nothing but async-nats.

use async_nats::jetstream::{self, consumer};

/// How many messages of `stream` match `filter` right now.
pub async fn count_messages(js: &jetstream::Context, stream: &str, filter: &str) -> anyhow::Result<u64> {
    let stream = js.get_stream(stream).await?;
    let c = stream
        .create_consumer(consumer::pull::OrderedConfig { filter_subject: filter.into(), ..Default::default() })
        .await?;
    Ok(c.cached_info().num_pending)
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
