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
use crate::{learn, store};

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
        Deps { js, nats, store, db, principals, retrievals: Default::default(), known_failures: Default::default() }
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
    let pool = |n: u32| sqlx::postgres::PgPoolOptions::new().max_connections(n).connect_lazy_with(options.clone());
    let asking = Deps { db: pool(config.query_connections), ..deps.clone() };
    let learning = Deps { db: pool(u32::try_from(config.concurrency).unwrap_or(8).max(1)), ..deps.clone() };
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
    let spec = ConsumerSpec::new(EVENTS_STREAM, "memory", SERVICE, config.concurrency);
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
    let Some(lesson) = learn::lesson(job, &events) else { return Ok(()) };
    apply(&deps.db, event_id, Change::Lesson(&lesson)).await?;
    if !lesson.failures.is_empty() {
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

/// What one event changes.
pub(crate) enum Change<'a> {
    Lesson(&'a learn::Lesson),
    Recorded(&'a MemoryRecorded, DateTime<Utc>),
    Forgotten(&'a MemoryForgotten),
}

/// Applies `change` in a transaction that also marks `event_id` applied; a
/// second delivery of the same event does nothing.
pub(crate) async fn apply(db: &PgPool, event_id: &str, change: Change<'_>) -> Result<(), String> {
    let db_err = |e: sqlx::Error| format!("memory database: {e}");
    let mut tx = db.begin().await.map_err(db_err)?;
    if !store::first_time(&mut tx, event_id).await.map_err(db_err)? {
        return Ok(());
    }
    match change {
        Change::Lesson(l) => store::apply_lesson(&mut tx, l).await,
        Change::Recorded(r, at) => store::apply_recorded(&mut tx, r, at).await,
        Change::Forgotten(f) => store::apply_forgotten(&mut tx, f).await,
    }
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
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
            Ok(r) => apply(&deps.db, &env.id, Change::Recorded(&r, at)).await,
            Err(e) => return Disposition::DeadLetter { code: "bad_data", reason: e.to_string() },
        },
        memory::FORGOTTEN => match env.data_as::<MemoryForgotten>() {
            Ok(f) => apply(&deps.db, &env.id, Change::Forgotten(&f)).await,
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
