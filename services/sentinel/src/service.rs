//! The sentinel service: the evaluation loop ([`crate::evaluate`]), the
//! heartbeat watch, the silence command, and its durable consumer, which
//! applies alert events to its tables (each event once).

use std::future::Future;
use std::sync::Arc;

use async_nats::jetstream::{self, Message};
use skynet_bus::codec;
use skynet_bus::consumer::{self, ConsumerSpec, Disposition};
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_bus::principals::Principals;
use skynet_contract::alert::{self, AlertRaised, AlertResolved, AlertUndelivered, Silenced};
use sqlx::PgPool;
use tracing::{Instrument, info, info_span};

use crate::config::Config;
use crate::store;

pub(crate) const SERVICE: &str = "sentinel";
pub(crate) const SOURCE: &str = "skynet/sentinel";
/// Its durable consumer.
pub(crate) const DURABLE: &str = "sentinel";

/// What the sentinel needs.
#[derive(Clone)]
pub struct Deps {
    pub js: jetstream::Context,
    /// Core NATS: the silence command.
    pub nats: async_nats::Client,
    /// Its own tables (it is their only writer), and the jobs read model it reads.
    pub db: PgPool,
    pub principals: Arc<Principals>,
    /// For the sinks.
    pub http: reqwest::Client,
}

/// Why the sentinel stopped.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("applying migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("NATS: {0}")]
    Nats(async_nats::Error),
}

/// Applies the schema (the shared migrations; idempotent).
pub async fn migrate(db: &PgPool) -> Result<(), SentinelError> {
    sqlx::migrate!("../../migrations").run(db).await?;
    Ok(())
}

/// Runs the sentinel until `shutdown` resolves.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SentinelError> {
    migrate(&deps.db).await?;
    let config = Arc::new(config);
    let stop = consumer::stop_token(shutdown);
    let silences = deps
        .nats
        .queue_subscribe(alert::SILENCE, "skynet-sentinel".into())
        .await
        .map_err(|e| SentinelError::Nats(e.into()))?;
    let beats = crate::observe::Heartbeats::default();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::observe::follow_heartbeats(deps.js.clone(), beats.clone(), stop.clone()));
    tasks.spawn(crate::metrics::follow_jobs(deps.js.clone(), stop.clone()));
    tasks.spawn(crate::silence::serve(silences, deps.clone(), stop.clone()));
    tasks.spawn(crate::evaluate::run(deps.clone(), config.clone(), beats, stop.clone()));
    info!(service = SERVICE, sinks = config.sinks.len(), "sentinel running");
    // Shared by every message's handling, not cloned for each.
    let handler_deps = std::sync::Arc::new(deps.clone());
    let consumed = consumer::run(
        deps.js.clone(),
        ConsumerSpec::new(EVENTS_STREAM, DURABLE, SERVICE, 1),
        move |msg| {
            let deps = handler_deps.clone();
            async move { handle(&deps, msg).await }
        },
        stop.clone().cancelled_owned(),
    )
    .await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    consumed.map_err(SentinelError::Nats)
}

/// Applies one alert event to the tables (public so tests can deliver twice).
pub async fn handle(deps: &Deps, msg: Message) -> Disposition {
    let env = match codec::decode(msg.headers.as_ref(), &msg.payload) {
        Ok(env) => env,
        Err(e) => return Disposition::DeadLetter { code: "undecodable", reason: e.to_string() },
    };
    if env.source != SOURCE {
        let reason = format!("alert events are recorded only by {SOURCE}; this one claims {:?}", env.source);
        return Disposition::DeadLetter { code: "wrong_source", reason };
    }
    let span = info_span!("alert_event", service = SERVICE, event_id = %env.id, subject = %msg.subject);
    async {
        let (at, id) = (env.time, env.id.as_str());
        let bad = |e: skynet_contract::DecodeError| Disposition::DeadLetter { code: "bad_data", reason: e.to_string() };
        let change = match env.ty.as_str() {
            alert::RAISED => {
                env.data_as::<AlertRaised>().map(|r| (alert::subject(&r.fingerprint, "raised"), Change::Raised(r)))
            }
            alert::RESOLVED => env
                .data_as::<AlertResolved>()
                .map(|r| (alert::subject(&r.fingerprint, "resolved"), Change::Resolved(r))),
            alert::UNDELIVERED => env
                .data_as::<AlertUndelivered>()
                .map(|u| (alert::subject(&u.fingerprint, "undelivered"), Change::Undelivered(u))),
            alert::SILENCED => env.data_as::<Silenced>().map(|s| (alert::silence_subject(&s.id), Change::Silenced(s))),
            other => {
                return Disposition::DeadLetter { code: "unknown_type", reason: format!("no alert event {other}") };
            }
        };
        let (expected, change) = match change {
            Ok(c) => c,
            Err(e) => return bad(e),
        };
        if msg.subject.as_str() != expected {
            let reason = format!("{} belongs on {expected}, not {}", env.ty, msg.subject);
            return Disposition::DeadLetter { code: "wrong_subject", reason };
        }
        match apply(&deps.db, id, &change, at).await {
            Ok(()) => Disposition::Ack,
            Err(e) => Disposition::Retry(format!("alert tables: {e}")),
        }
    }
    .instrument(span)
    .await
}

enum Change {
    Raised(AlertRaised),
    Resolved(AlertResolved),
    Undelivered(AlertUndelivered),
    Silenced(Silenced),
}

async fn apply(
    db: &PgPool,
    event_id: &str,
    change: &Change,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    if !store::first_time(&mut tx, event_id).await? {
        return Ok(());
    }
    match change {
        Change::Raised(r) => store::raised(&mut tx, r, at).await?,
        Change::Resolved(r) => store::resolved(&mut tx, r, at).await?,
        Change::Undelivered(u) => store::undelivered(&mut tx, u, at).await?,
        Change::Silenced(s) => store::silenced(&mut tx, s, at).await?,
    }
    tx.commit().await
}
