//! The memory service: its durable consumer (finished jobs and memory events
//! into the tables), its request/reply subjects (the planner's similar-jobs
//! question, people's searches, stats, adds and forgets) and the retention
//! sweep.

use std::future::Future;
use std::sync::Arc;

use async_nats::jetstream::{self, Message};
use chrono::{DateTime, Utc};
use skynet_bus::codec;
use skynet_bus::consumer::{self, ConsumerSpec, Disposition};
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_bus::principals::Principals;
use skynet_contract::JobId;
use skynet_contract::memory::{self, MemoryForgotten, MemoryRecorded};
use sqlx::PgPool;
use tracing::{Instrument, info, info_span};

use crate::config::Config;
use crate::group::{Change, Writer};
use crate::learn;

pub(crate) const SERVICE: &str = "memory";
pub(crate) const SOURCE: &str = "skynet/memory";

/// What the memory service needs.
#[derive(Clone)]
pub struct Deps {
    pub js: jetstream::Context,
    /// Core NATS: its request/reply subjects.
    pub nats: async_nats::Client,
    /// Reading a finished job's events (from the histories of this process
    /// when it appended them: `skynet up` shares one store).
    pub store: skynet_bus::EventStore,
    /// Its own tables (it is their only writer).
    pub db: PgPool,
    pub principals: Arc<Principals>,
    /// Retrievals of the planner's questions, written in batches (see `flush_usage`).
    pub retrievals: crate::upkeep::Retrievals,
    /// The planner's answers about known failures, held briefly (see [`crate::known`]).
    pub known_failures: crate::known::KnownFailures,
    /// Applies what the log teaches into `db`, in group commits.
    pub(crate) writer: Writer,
}

impl Deps {
    /// Deps with nothing retrieved or held yet.
    pub fn new(
        js: jetstream::Context,
        nats: async_nats::Client,
        store: skynet_bus::EventStore,
        db: PgPool,
        principals: Arc<Principals>,
    ) -> Deps {
        let writer = Writer::new(db.clone());
        Deps {
            js,
            nats,
            store,
            db,
            principals,
            retrievals: Default::default(),
            known_failures: Default::default(),
            writer,
        }
    }
}

/// Why the memory service stopped.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("applying migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("memory database")]
    Db(#[from] sqlx::Error),
    #[error("NATS: {0}")]
    Nats(async_nats::Error),
}

/// Applies the schema (the shared migrations; idempotent).
pub async fn migrate(db: &PgPool) -> Result<(), MemoryError> {
    sqlx::migrate!("../../migrations").run(db).await?;
    Ok(())
}

/// Runs the memory service until `shutdown` resolves.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MemoryError> {
    migrate(&deps.db).await?;
    let config = Arc::new(config);
    let stop = consumer::stop_token(shutdown);
    // Pools of its own: learning waits on per-record locks (jobs that end the
    // same way) and must neither starve the answers the planner waits for nor
    // the other services sharing the process's pool.
    let options = (*deps.db.connect_options()).clone();
    // Waiting for a connection as long as the process's own pool does: during
    // an outage a change fails after 5 s and is retried by the consumer, well
    // within its ack wait.
    let pool = |n: u32| {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(n)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(options.clone())
    };
    let asking = Deps { db: pool(config.query_connections), ..deps.clone() };
    // One writer applies what is learned (see `crate::group`); its batches wait
    // on each other's locks only across memory processes.
    let learning_db = pool(1);
    let learning = Deps { writer: Writer::new(learning_db.clone()), db: learning_db, ..deps.clone() };
    let mut tasks = tokio::task::JoinSet::new();
    for subject in [memory::SIMILAR_SUBJECT, memory::QUERY_SUBJECT, memory::ADD, memory::FORGET] {
        let sub = deps
            .nats
            .queue_subscribe(subject, "skynet-memory".into())
            .await
            .map_err(|e| MemoryError::Nats(e.into()))?;
        let (deps, config, stop) = (asking.clone(), config.clone(), stop.clone());
        tasks.spawn(crate::answers::serve(sub, deps, config, stop));
    }
    tasks.spawn(crate::upkeep::retention(asking.clone(), config.clone(), stop.clone()));
    tasks.spawn(crate::upkeep::flush_usage(asking.clone(), stop.clone()));
    info!(service = SERVICE, "memory running");
    let spec = ConsumerSpec::new(EVENTS_STREAM, "memory", SERVICE, config.learning);
    // Shared by every message's handling, not cloned for each.
    let handler_deps = std::sync::Arc::new(learning);
    let consumed = consumer::run(
        deps.js.clone(),
        spec,
        move |msg| {
            let deps = handler_deps.clone();
            async move { handle(&deps, msg).await }
        },
        stop.clone().cancelled_owned(),
    )
    .await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    consumed.map_err(MemoryError::Nats)
}

/// Applies one event of the consumer (public so tests can deliver twice).
pub async fn handle(deps: &Deps, msg: Message) -> Disposition {
    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(u64::MAX);
    if msg.subject.starts_with("skynet.memory.") {
        return handle_memory_event(deps, &msg).await;
    }
    let received = match consumer::receive(&msg, None) {
        Ok(r) => r,
        Err(d) => return d,
    };
    let span = info_span!("learn", service = SERVICE, job_id = %received.job, event_id = %received.env.id);
    async {
        match learn_job(deps, received.job, &received.env.id, seq).await {
            Ok(()) => Disposition::Ack,
            Err(e) => Disposition::Retry(e),
        }
    }
    .instrument(span)
    .await
}

/// Reads the job's events up to `seq` and applies what they teach, once.
pub(crate) async fn learn_job(deps: &Deps, job: JobId, event_id: &str, seq: u64) -> Result<(), String> {
    let stored = deps.store.messages_through(job, seq, "skynet/memory").await.map_err(|e| {
        let cause = std::error::Error::source(&e).map(|c| c.to_string()).unwrap_or_default();
        format!("{e}: {cause}")
    })?;
    let events = decode_job(&stored, seq);
    let Some(lesson) = learn::lesson(job, &events) else {
        // Nothing to learn: its messages need not be held either.
        deps.store.forget_history(job);
        return Ok(());
    };
    let failed = !lesson.failures.is_empty();
    deps.writer.apply(event_id, Change::Lesson(lesson)).await?;
    if failed {
        deps.known_failures.forget_all();
    }
    // Learned: its messages need not be held any longer.
    deps.store.forget_history(job);
    Ok(())
}

/// The job's events (owners' only, as every replay) up to `seq`, with their times.
pub(crate) fn decode_job(
    stored: &[skynet_bus::read::Stored],
    seq: u64,
) -> Vec<(skynet_contract::job::JobEvent, DateTime<Utc>)> {
    stored
        .iter()
        .filter(|m| m.seq <= seq)
        .filter_map(|m| codec::decode(m.headers.as_ref(), &m.payload).ok())
        .filter_map(|env| {
            let (_, e) = env.job_event().ok()?;
            skynet_contract::owners::is_owner(e.kind(), &env.source).then_some((e, env.time))
        })
        .collect()
}

async fn handle_memory_event(deps: &Deps, msg: &Message) -> Disposition {
    let env = match codec::decode(msg.headers.as_ref(), &msg.payload) {
        Ok(env) => env,
        Err(e) => return Disposition::DeadLetter { code: "undecodable", reason: e.to_string() },
    };
    if env.source != SOURCE {
        let reason = format!("memory events are recorded only by {SOURCE}; this one claims {:?}", env.source);
        return Disposition::DeadLetter { code: "wrong_source", reason };
    }
    let at = env.time;
    let result = match env.ty.as_str() {
        memory::RECORDED => match env.data_as::<MemoryRecorded>() {
            Ok(r) => deps.writer.apply(&env.id, Change::Recorded(r, at)).await,
            Err(e) => return Disposition::DeadLetter { code: "bad_data", reason: e.to_string() },
        },
        memory::FORGOTTEN => match env.data_as::<MemoryForgotten>() {
            Ok(f) => deps.writer.apply(&env.id, Change::Forgotten(f)).await,
            Err(e) => return Disposition::DeadLetter { code: "bad_data", reason: e.to_string() },
        },
        other => return Disposition::DeadLetter { code: "unknown_type", reason: format!("no memory event {other}") },
    };
    // A record added or forgotten may be a failure pattern the planner is told of.
    deps.known_failures.forget_all();
    match result {
        Ok(()) => Disposition::Ack,
        Err(e) => Disposition::Retry(e),
    }
}
