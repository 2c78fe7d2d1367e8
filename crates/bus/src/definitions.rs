//! Stream and consumer definitions, loaded from the JSON files in `nats/` (the
//! same files the `nats` CLI accepts: `nats stream add --config
//! nats/streams/SKYNET_EVENTS.json`). They are compiled into the binary so that
//! `skynet` needs no checkout at run time; `bootstrap` creates what is missing and
//! brings what exists up to date.

use async_nats::jetstream::{self, consumer, stream};

/// Name of the event log stream.
pub const EVENTS_STREAM: &str = "SKYNET_EVENTS";
/// Name of the submissions stream.
pub const INTAKE_STREAM: &str = "SKYNET_INTAKE";
/// Name of the dead-letter stream.
pub const DLQ_STREAM: &str = "SKYNET_DLQ";
/// Key-value bucket of approval deadlines.
pub const APPROVALS_BUCKET: &str = "SKYNET_APPROVALS";
/// Key-value bucket of the job watchdog's deadlines.
pub const WATCHDOG_BUCKET: &str = "SKYNET_WATCHDOG";
/// Key-value bucket of rate-limit counters.
pub const RATE_BUCKET: &str = "SKYNET_RATE";
/// Key-value bucket of executor heartbeats.
pub const EXECUTORS_BUCKET: &str = "SKYNET_EXECUTORS";
/// Key-value bucket of principals (token hash → name and roles).
pub const PRINCIPALS_BUCKET: &str = "SKYNET_PRINCIPALS";
/// Key-value bucket of what the Telegram bot sent.
pub const TELEGRAM_BUCKET: &str = "SKYNET_TELEGRAM";
/// Object store of step output.
pub const OUTPUT_BUCKET: &str = "SKYNET_OUTPUT";
/// Object store of artifacts.
pub const ARTIFACTS_BUCKET: &str = "SKYNET_ARTIFACTS";

const STREAMS: &[(&str, &str)] = &[
    ("nats/streams/SKYNET_INTAKE.json", include_str!("../../../nats/streams/SKYNET_INTAKE.json")),
    ("nats/streams/SKYNET_EVENTS.json", include_str!("../../../nats/streams/SKYNET_EVENTS.json")),
    ("nats/streams/SKYNET_DLQ.json", include_str!("../../../nats/streams/SKYNET_DLQ.json")),
    ("nats/streams/KV_SKYNET_APPROVALS.json", include_str!("../../../nats/streams/KV_SKYNET_APPROVALS.json")),
    ("nats/streams/KV_SKYNET_WATCHDOG.json", include_str!("../../../nats/streams/KV_SKYNET_WATCHDOG.json")),
    ("nats/streams/KV_SKYNET_RATE.json", include_str!("../../../nats/streams/KV_SKYNET_RATE.json")),
    ("nats/streams/KV_SKYNET_EXECUTORS.json", include_str!("../../../nats/streams/KV_SKYNET_EXECUTORS.json")),
    ("nats/streams/KV_SKYNET_PRINCIPALS.json", include_str!("../../../nats/streams/KV_SKYNET_PRINCIPALS.json")),
    ("nats/streams/KV_SKYNET_TELEGRAM.json", include_str!("../../../nats/streams/KV_SKYNET_TELEGRAM.json")),
    ("nats/streams/OBJ_SKYNET_OUTPUT.json", include_str!("../../../nats/streams/OBJ_SKYNET_OUTPUT.json")),
    ("nats/streams/OBJ_SKYNET_ARTIFACTS.json", include_str!("../../../nats/streams/OBJ_SKYNET_ARTIFACTS.json")),
];

/// (stream, file, JSON) of every durable consumer.
const CONSUMERS: &[(&str, &str, &str)] = &[
    (
        INTAKE_STREAM,
        "nats/consumers/SKYNET_INTAKE/intake.json",
        include_str!("../../../nats/consumers/SKYNET_INTAKE/intake.json"),
    ),
    (
        EVENTS_STREAM,
        "nats/consumers/SKYNET_EVENTS/planner.json",
        include_str!("../../../nats/consumers/SKYNET_EVENTS/planner.json"),
    ),
    (
        EVENTS_STREAM,
        "nats/consumers/SKYNET_EVENTS/policy.json",
        include_str!("../../../nats/consumers/SKYNET_EVENTS/policy.json"),
    ),
    (
        EVENTS_STREAM,
        "nats/consumers/SKYNET_EVENTS/dispatcher.json",
        include_str!("../../../nats/consumers/SKYNET_EVENTS/dispatcher.json"),
    ),
    (
        EVENTS_STREAM,
        "nats/consumers/SKYNET_EVENTS/scheduler.json",
        include_str!("../../../nats/consumers/SKYNET_EVENTS/scheduler.json"),
    ),
    (
        EVENTS_STREAM,
        "nats/consumers/SKYNET_EVENTS/executor.json",
        include_str!("../../../nats/consumers/SKYNET_EVENTS/executor.json"),
    ),
    (
        EVENTS_STREAM,
        "nats/consumers/SKYNET_EVENTS/memory.json",
        include_str!("../../../nats/consumers/SKYNET_EVENTS/memory.json"),
    ),
    (
        EVENTS_STREAM,
        "nats/consumers/SKYNET_EVENTS/sentinel.json",
        include_str!("../../../nats/consumers/SKYNET_EVENTS/sentinel.json"),
    ),
    (
        EVENTS_STREAM,
        "nats/consumers/SKYNET_EVENTS/telegram.json",
        include_str!("../../../nats/consumers/SKYNET_EVENTS/telegram.json"),
    ),
];

/// Oldest server version SKYNET runs on (2.11 added
/// `Nats-Expected-Last-Subject-Sequence-Subject`).
pub const MIN_SERVER_VERSION: (u32, u32) = (2, 11);

/// Why bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{file} is not a valid definition")]
    Definition {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "nats-server {found} is too old: SKYNET needs >= {}.{} (per-aggregate optimistic concurrency). \
         The Debian nats-server on port 4222 is 2.9; run `./dev setup` and point SKYNET_NATS_URL at ours",
        MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1
    )]
    ServerTooOld { found: String },
    #[error("the server at the given URL has JetStream disabled or unreachable")]
    NoJetStream(#[source] async_nats::Error),
    #[error("creating or updating stream {name}")]
    Stream {
        name: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("creating or updating consumer {stream}/{name}")]
    Consumer {
        stream: String,
        name: String,
        #[source]
        source: async_nats::Error,
    },
}

/// Every stream definition.
pub fn streams() -> Result<Vec<stream::Config>, BootstrapError> {
    STREAMS
        .iter()
        .map(|(file, json)| serde_json::from_str(json).map_err(|source| BootstrapError::Definition { file, source }))
        .collect()
}

/// Every durable consumer definition, with its stream.
pub fn consumers() -> Result<Vec<(&'static str, consumer::pull::Config)>, BootstrapError> {
    CONSUMERS
        .iter()
        .map(|(stream, file, json)| {
            serde_json::from_str(json)
                .map(|c| (*stream, c))
                .map_err(|source| BootstrapError::Definition { file, source })
        })
        .collect()
}

/// Refuses servers older than [`MIN_SERVER_VERSION`].
pub fn check_server_version(client: &async_nats::Client) -> Result<(), BootstrapError> {
    let found = client.server_info().version;
    let mut parts = found.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if v < MIN_SERVER_VERSION { Err(BootstrapError::ServerTooOld { found }) } else { Ok(()) }
}

/// Replicas of SKYNET's streams: `SKYNET_NATS_REPLICAS` when set, else 3 on a
/// server that reports a cluster and 1 on a single server.
pub fn desired_replicas(client: &async_nats::Client) -> usize {
    let configured = std::env::var("SKYNET_NATS_REPLICAS").ok().and_then(|r| r.trim().parse::<usize>().ok());
    configured.filter(|r| *r > 0).unwrap_or(if client.server_info().cluster.is_some() { 3 } else { 1 })
}

/// The replicas a stream gets: what is desired, but never fewer than an
/// operator already gave it (no silent downgrade of their durability).
pub fn effective_replicas(desired: usize, existing: Option<usize>) -> usize {
    existing.map_or(desired, |e| e.max(desired))
}

/// Creates every stream and consumer, or updates it to match its definition.
/// Safe to run from every process at start-up, concurrently.
pub async fn bootstrap(client: &async_nats::Client) -> Result<jetstream::Context, BootstrapError> {
    check_server_version(client)?;
    let js = jetstream::new(client.clone());
    js.query_account().await.map_err(|e| BootstrapError::NoJetStream(e.into()))?;
    let desired = desired_replicas(client);
    for mut cfg in streams()? {
        let name = cfg.name.clone();
        let res = match js.get_stream(&name).await {
            Ok(mut s) => {
                let current =
                    s.info().await.map_err(|e| BootstrapError::Stream { name: name.clone(), source: e.into() })?;
                cfg.num_replicas = effective_replicas(desired, Some(current.config.num_replicas));
                if current.config == cfg {
                    Ok(())
                } else {
                    js.update_stream(&cfg).await.map(|_| ()).map_err(Into::into)
                }
            }
            Err(_) => {
                cfg.num_replicas = effective_replicas(desired, None);
                js.create_stream(cfg).await.map(|_| ()).map_err(Into::into)
            }
        };
        res.map_err(|source| BootstrapError::Stream { name, source })?;
    }
    for (stream_name, cfg) in consumers()? {
        let name = cfg.durable_name.clone().unwrap_or_default();
        let err = |source: async_nats::Error| BootstrapError::Consumer {
            stream: stream_name.into(),
            name: name.clone(),
            source,
        };
        let stream = js.get_stream(stream_name).await.map_err(|e| err(e.into()))?;
        // create_consumer is create-or-update for an existing durable.
        stream.create_consumer(cfg.clone()).await.map_err(|e| err(e.into()))?;
    }
    Ok(js)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_follow_the_server_and_never_go_down() {
        assert_eq!(effective_replicas(1, None), 1);
        assert_eq!(effective_replicas(3, None), 3);
        assert_eq!(effective_replicas(3, Some(1)), 3, "a single-server stream grows with the cluster");
        assert_eq!(effective_replicas(1, Some(3)), 3, "an operator's R3 stream is never downgraded");
        assert_eq!(effective_replicas(3, Some(5)), 5);
    }

    #[test]
    fn every_definition_parses_and_names_match_files() {
        let streams = streams().expect("streams parse");
        for ((file, _), s) in STREAMS.iter().zip(&streams) {
            assert!(file.ends_with(&format!("{}.json", s.name)), "{file} defines {}", s.name);
        }
        let names: Vec<_> = streams.iter().map(|s| s.name.as_str()).collect();
        // Every file in nats/ is compiled in: a definition added to the folder
        // but not to this module would never be created.
        let dir = |d: &str| -> Vec<String> {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(d);
            let mut v: Vec<String> = std::fs::read_dir(&path)
                .expect("nats dir")
                .map(|e| format!("{d}/{}", e.expect("entry").file_name().to_string_lossy()))
                .collect();
            v.sort();
            v
        };
        let mut embedded: Vec<String> = STREAMS.iter().map(|(f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, dir("nats/streams"));
        let mut embedded: Vec<String> =
            CONSUMERS.iter().filter(|(s, _, _)| *s == EVENTS_STREAM).map(|(_, f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, dir("nats/consumers/SKYNET_EVENTS"));
        for expected in [INTAKE_STREAM, EVENTS_STREAM, DLQ_STREAM] {
            assert!(names.contains(&expected));
        }
        for (stream, c) in consumers().expect("consumers parse") {
            assert!(names.contains(&stream));
            assert!(c.durable_name.is_some(), "consumers in nats/ are durable");
        }
    }
}
