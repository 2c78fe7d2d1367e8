//! `skynet bench --watch`: where a burst queues. Once a second during the
//! throughput run, each durable consumer's backlog (messages not yet delivered)
//! and in-flight count (delivered, not acknowledged) go to stderr, so the stage
//! that holds the pipeline back is the one whose backlog grows.

use std::time::{Duration, Instant};

use async_nats::jetstream;

/// Samples until the returned guard is dropped.
pub fn start(js: jetstream::Context) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(consumers) = skynet_bus::definitions::consumers() else { return };
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let mut line = format!("[watch] {:>4.1}s", started.elapsed().as_secs_f64());
            for (stream, c) in &consumers {
                let Some(name) = c.durable_name.as_deref() else { continue };
                let info =
                    match js.get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(name, *stream).await {
                        Ok(mut c) => c.info().await.map(|i| (i.num_pending, i.num_ack_pending)).ok(),
                        Err(_) => None,
                    };
                match info {
                    Some((pending, acking)) => line.push_str(&format!("  {name} {pending}+{acking}")),
                    None => line.push_str(&format!("  {name} ?")),
                }
            }
            eprintln!("{line}");
        }
    })
}
