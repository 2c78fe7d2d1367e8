//! The bot's process: who may use it (the allow-list resolved against the
//! principal store), the Bot API client (`setMyCommands` at start), the
//! teloxide dispatcher long-polling for updates, and the durable consumer
//! that pushes approval requests, outcomes, alerts and stops.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use serde::Serialize;
use skynet_bus::EventStore;
use skynet_bus::consumer::{self, ConsumerSpec};
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_bus::principals::Principals;
use skynet_contract::JobId;
use skynet_contract::commands::CommandReply;
use skynet_contract::principal::Principal;
use teloxide::Bot;
use teloxide::dispatching::{Dispatcher, UpdateFilterExt};
use teloxide::prelude::{Requester, dptree};
use teloxide::types::{BotCommand, Update};
use teloxide::update_listeners::Polling;
use tracing::{error, info, warn};

use crate::config::{AllowedUser, Config};
use crate::kv::Sent;
use crate::view::{self, JobView};

pub(crate) const SERVICE: &str = "telegram";

/// What the bot needs.
#[derive(Clone)]
pub struct Deps {
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    /// The read models (`/jobs`, `/status`, short job ids).
    pub db: sqlx::PgPool,
    pub principals: Arc<Principals>,
}

/// Why the bot could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("TELEGRAM_USERS: the token of Telegram user {0} belongs to no SKYNET principal")]
    UnknownToken(u64),
    #[error("checking the allow-list's tokens: {0}")]
    Principals(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("stopped: {0}")]
    Stopped(String),
    #[error("the Bot API: {0}")]
    Telegram(#[from] teloxide::RequestError),
}

/// Everything the handlers share.
pub struct Ctx {
    pub bot: Bot,
    pub config: Config,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub store: EventStore,
    pub db: sqlx::PgPool,
    pub principals: Arc<Principals>,
    pub sent: Sent,
    /// Strangers already told no (each is told once per process).
    pub refused: Mutex<HashSet<u64>>,
}

impl Ctx {
    /// The allow-list entry of a Telegram user.
    pub fn user(&self, telegram_id: u64) -> Option<&AllowedUser> {
        self.config.users.iter().find(|u| u.telegram_id == telegram_id)
    }

    /// The principal an allowed user speaks for, now (a revoked token is none).
    pub async fn principal(&self, user: &AllowedUser) -> Result<Option<Principal>, String> {
        self.principals.verify(&user.token).await.map_err(|e| {
            warn!(service = SERVICE, error = %e, "cannot verify a token now");
            format!("cannot check who you are now: {e}")
        })
    }

    /// The job as a chat shows it, from the log.
    pub async fn view(&self, job: JobId) -> Result<Option<JobView>, String> {
        let history = self.store.load(job).await.map_err(|e| format!("reading job {job}: {e}"))?;
        Ok(view::fold(job, &history.events))
    }

    /// Sends a command (request/reply) and reads its reply.
    pub async fn command(&self, subject: &'static str, body: &impl Serialize) -> Result<CommandReply, String> {
        let payload = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(Duration::from_secs(10), self.nats.request(subject, payload.into()))
            .await
            .map_err(|_| "no answer within 10 s (is the policy service running?)".to_owned())?
            .map_err(|e| format!("no answer: {e}"))?;
        serde_json::from_slice(&reply.payload).map_err(|e| format!("an answer I cannot read: {e}"))
    }

    /// Resolves what a person typed as a job: a full id, or the start of one
    /// (8 characters or more) that matches exactly one job.
    pub async fn resolve_job(&self, typed: &str) -> Result<JobId, String> {
        if let Ok(id) = typed.parse::<JobId>() {
            return Ok(id);
        }
        let prefix = typed.trim().to_lowercase();
        if prefix.len() < 8 || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(format!("{typed:?} is not a job id (the full id, or its first 8 characters or more)"));
        }
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE id::text LIKE $1 || '%' ORDER BY created_at DESC LIMIT 2")
                .bind(&prefix)
                .fetch_all(&self.db)
                .await
                .map_err(|e| format!("cannot look jobs up now: {e}"))?;
        match ids.as_slice() {
            [one] => Ok(JobId(*one)),
            [] => Err(format!("no job starts with {prefix}")),
            _ => Err(format!("more than one job starts with {prefix}; type more of the id")),
        }
    }
}

/// Runs the bot until `shutdown` resolves.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    for user in &config.users {
        match deps.principals.verify(&user.token).await {
            Ok(Some(p)) => info!(service = SERVICE, telegram_user = user.telegram_id, principal = %p.name, "allowed"),
            Ok(None) => return Err(StartError::UnknownToken(user.telegram_id)),
            Err(e) => return Err(StartError::Principals(e.to_string())),
        }
    }
    let bot = Bot::new(config.bot_token.clone()).set_api_url(config.api_url.clone());
    let commands: Vec<BotCommand> =
        crate::commands::COMMANDS.iter().map(|(name, what)| BotCommand::new(*name, *what)).collect();
    crate::send::retrying("setMyCommands", || {
        let req = bot.set_my_commands(commands.clone());
        async move { req.await }
    })
    .await?;
    let ctx = Arc::new(Ctx {
        bot: bot.clone(),
        store: EventStore::open(deps.js.clone()).await.map_err(|e| StartError::Nats(e.to_string()))?,
        sent: Sent::open(&deps.js).await.map_err(|e| StartError::Nats(e.to_string()))?,
        config,
        nats: deps.nats,
        js: deps.js,
        db: deps.db,
        principals: deps.principals,
        refused: Mutex::new(HashSet::new()),
    });
    let stop = consumer::stop_token(shutdown);
    let pushes = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        // One event at a time, in the log's order: a job's messages are edited
        // in the order its events happened, and a rate limit Telegram sets for
        // the whole bot is waited out once, not by four handlers at once.
        let mut spec = ConsumerSpec::new(EVENTS_STREAM, "telegram", SERVICE, 1);
        spec.prefetch = false;
        let js = ctx.js.clone();
        tokio::spawn(async move {
            let handler = move |msg| {
                let ctx = ctx.clone();
                async move { crate::notify::handle(&ctx, msg).await }
            };
            let result = consumer::run(js, spec, handler, stop.cancelled_owned()).await;
            if let Err(e) = &result {
                error!(service = SERVICE, error = %e, "the notification consumer stopped");
            }
            result.map_err(|e| e.to_string())
        })
    };
    let handler = dptree::entry()
        .branch(Update::filter_message().endpoint(crate::chat::on_message))
        .branch(Update::filter_callback_query().endpoint(crate::chat::on_button));
    let mut dispatcher = Dispatcher::builder(bot.clone(), handler)
        .dependencies(dptree::deps![ctx.clone()])
        .default_handler(|_| async {})
        .build();
    let listener = Polling::builder(bot)
        .timeout(Duration::from_secs(u64::from(ctx.config.poll_timeout_secs)))
        .delete_webhook()
        .await
        .build();
    let token = dispatcher.shutdown_token();
    let stopping = stop.clone();
    let stopper = tokio::spawn(async move {
        stopping.cancelled().await;
        // Refused while the dispatcher is still starting: ask again.
        loop {
            match token.shutdown() {
                Ok(done) => {
                    done.await;
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    info!(service = SERVICE, users = ctx.config.users.len(), "telegram bot running");
    let errors = teloxide::error_handlers::LoggingErrorHandler::with_custom_text("telegram");
    let dispatch = dispatcher.dispatch_with_listener(listener, errors);
    let (mut dispatch, mut pushes) = (std::pin::pin!(dispatch), std::pin::pin!(pushes));
    // The bot without its notifications is not running: if the consumer
    // stops, so does the bot (and `skynet up` restarts it).
    let ended = tokio::select! {
        () = &mut dispatch => pushes.await,
        ended = &mut pushes => {
            stop.cancel();
            dispatch.await;
            ended
        }
    };
    stopper.abort();
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StartError::Stopped(format!("the notification consumer: {e}"))),
        Err(e) => Err(StartError::Stopped(format!("the notification consumer panicked: {e}"))),
    }
}
