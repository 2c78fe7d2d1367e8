//! A service whose durable consumer is deleted under it stops with an error
//! (so `skynet up`'s supervisor restarts it and bootstrap makes the consumer
//! again) instead of running on beside its side tasks without consuming.

use std::time::Duration;

use skynet_bus::definitions::INTAKE_STREAM;
use skynet_bus::{EventStore, Jobs, bootstrap};
use skynet_intake::{Config, Deps, run};
use skynet_testkit::{NatsServer, eventually};

#[tokio::test]
async fn losing_its_consumer_ends_the_service_with_an_error() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let admin = async_nats::jetstream::new(server.connect().await?);
    bootstrap(&server.connect().await?).await?;
    let js = async_nats::jetstream::new(server.connect_as("intake").await?);
    let store = EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?;
    let deps = Deps {
        js: js.clone(),
        jobs: Jobs::new(store, "intake"),
        rules: std::sync::Arc::new(skynet_rules::PolicyRules::defaults()),
        limiter: skynet_intake::ratelimit::RateLimiter::open(&js).await.map_err(|e| anyhow::anyhow!(e))?,
        principals: std::sync::Arc::new(skynet_bus::principals::Principals::open(&js).await?),
    };
    let service = tokio::spawn(run(Config::default(), deps, std::future::pending()));
    // Running: its consumer has a pull waiting.
    let stream = admin.get_stream(INTAKE_STREAM).await?;
    eventually(Duration::from_secs(10), "the intake to pull", || async {
        let mut consumer = stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>("intake").await.ok()?;
        (consumer.info().await.ok()?.num_waiting > 0).then_some(())
    })
    .await?;
    assert!(!service.is_finished(), "the intake runs");

    stream.delete_consumer("intake").await?;
    let ended =
        eventually(Duration::from_secs(20), "the intake to stop", || async { service.is_finished().then_some(()) })
            .await;
    ended?;
    let err = service.await?.expect_err("a lost consumer is an error, not a clean stop");
    assert!(err.to_string().contains("intake"), "{err}");
    Ok(())
}
