//! The intake's handler is idempotent: the same delivered message handled twice
//! opens one job, or stores one dead letter and one rejection.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use futures::StreamExt;
use skynet_bus::consumer::Disposition;
use skynet_bus::definitions::{DLQ_STREAM, EVENTS_STREAM, INTAKE_STREAM};
use skynet_bus::{EventStore, Jobs, bootstrap};
use skynet_contract::{JobId, subjects};
use skynet_intake::{Deps, handle};
use skynet_testkit::{NatsServer, count_messages};

// Submissions come from outside SKYNET; publishing them raw is the point.
#[allow(clippy::disallowed_methods)]
#[tokio::test]
async fn handling_the_same_delivery_twice_has_one_effect() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    bootstrap(&server.connect().await?).await?;
    // The service under its own role; submissions from a user's.
    let js = async_nats::jetstream::new(server.connect_as("intake").await?);
    let user = async_nats::jetstream::new(server.connect_as("client").await?);
    let store = EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?;
    let deps = Deps {
        js: js.clone(),
        jobs: Jobs::new(store.clone(), "intake"),
        rules: std::sync::Arc::new(skynet_rules::PolicyRules::defaults()),
        limiter: skynet_intake::ratelimit::RateLimiter::open(&js).await.map_err(|e| anyhow::anyhow!(e))?,
        principals: std::sync::Arc::new(skynet_bus::principals::Principals::open(&js).await?),
    };

    let valid = serde_json::json!({
        "specversion": "1.0", "id": "redeliver-1", "source": "tests/redelivery",
        "type": "skynet.task.requested.v1", "data": {"intent": "list files"}
    });
    user.publish(subjects::INTAKE_TASK, serde_json::to_vec(&valid)?.into()).await?.await?;
    user.publish(subjects::INTAKE_TASK, "definitely not json".into()).await?.await?;

    // The service is not running: take the two messages from its durable consumer.
    let consumer: PullConsumer =
        js.get_stream(INTAKE_STREAM).await?.get_consumer("intake").await.map_err(|e| anyhow::anyhow!(e))?;
    let mut batch = consumer
        .fetch()
        .max_messages(2)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut handled = 0;
    while let Some(msg) = batch.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!(e))?;
        for _ in 0..2 {
            assert!(matches!(handle(&deps, msg.clone()).await, Disposition::Ack));
        }
        msg.ack().await.map_err(|e| anyhow::anyhow!(e))?;
        handled += 1;
    }
    assert_eq!(handled, 2);

    let job = JobId::for_request("tests/redelivery", "redeliver-1");
    assert_eq!(store.load(job).await?.events.len(), 1, "one job, one requested event");
    let dlq = js.get_stream(DLQ_STREAM).await?.get_info().await?;
    assert_eq!(dlq.state.messages, 1, "one dead letter");
    let rejected = count_messages(&js, EVENTS_STREAM, subjects::TASK_REJECTED).await?;
    assert_eq!(rejected, 1, "one rejection event");
    Ok(())
}
