//! Reading the event log from tests with nothing but async-nats.

use async_nats::jetstream::{self, consumer};

/// How many messages of `stream` match `filter` right now.
pub async fn count_messages(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> anyhow::Result<u64> {
    let stream = js.get_stream(stream).await?;
    let c = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.into(),
            ..Default::default()
        })
        .await?;
    Ok(c.cached_info().num_pending)
}
