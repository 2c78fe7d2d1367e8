//! Reading the ledger from the log and appending to it under optimistic
//! concurrency. The ledger is every stored `skynet.initiative.>` event; each
//! append expects the newest of them to be the one its writer saw, so of two
//! initiative processes deciding at once one conflicts, reads again, and
//! counts the other's task.

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, stream::Stream};
use chrono::{DateTime, Utc};
use skynet_bus::codec;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_contract::Envelope;
use skynet_contract::initiative::{self, Decided, Strategy, Switched};
use tracing::warn;

use crate::ledger::{Ledger, Recorded};
use crate::service::SERVICE;

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Someone appended to the ledger since it was read.
    #[error("the initiative ledger moved on since it was read")]
    Conflict,
    #[error("appending to the initiative ledger: {0}")]
    Publish(String),
}

#[derive(Clone)]
pub struct LedgerStore {
    js: jetstream::Context,
    nats: async_nats::Client,
    stream: Stream,
}

impl LedgerStore {
    pub async fn open(js: jetstream::Context, nats: async_nats::Client) -> Result<LedgerStore, async_nats::Error> {
        let stream = js.get_stream(EVENTS_STREAM).await?;
        Ok(LedgerStore { js, nats, stream })
    }

    /// The ledger: the newest event of each of its subjects (the switch and
    /// each strategy's last decision, however old) and every event stored
    /// since `since`.
    pub async fn load(&self, since: DateTime<Utc>) -> Result<Ledger, async_nats::Error> {
        let mut ledger = Ledger::default();
        // The newest event of the whole ledger (on a subject this version may
        // not know: another version's strategy) is what the next append must
        // follow, however old.
        let subjects = Strategy::ALL
            .iter()
            .map(|s| initiative::decided_subject(*s))
            .chain([initiative::PAUSED_SUBJECT.to_owned(), initiative::RESUMED_SUBJECT.to_owned()])
            .chain([initiative::LEDGER.to_owned()]);
        for subject in subjects {
            match self.stream.direct_get_last_for_subject(&subject).await {
                Ok(m) => apply(&mut ledger, m.sequence, &m.subject, Some(&m.headers), &m.payload),
                Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => {}
                Err(e) => return Err(format!("reading the last {subject}: {e}").into()),
            }
        }
        for m in skynet_bus::read::read_since(&self.nats, EVENTS_STREAM, initiative::LEDGER, since).await? {
            apply(&mut ledger, m.seq, &m.subject, m.headers.as_ref(), &m.payload);
        }
        Ok(ledger)
    }

    /// Appends `env` on `subject` if the ledger's newest event is still at `expected`.
    pub async fn append(&self, subject: &str, env: &Envelope, expected: u64) -> Result<u64, AppendError> {
        match skynet_bus::publish_expecting(&self.js, subject, env, initiative::LEDGER, expected).await {
            Ok(seq) => Ok(seq),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                // The server checks the expectation before its duplicate
                // window: a retry of an append whose ack was lost conflicts.
                // If the newest event there is this one, it was stored.
                match self.stream.direct_get_last_for_subject(subject).await {
                    Ok(m) if codec::header(Some(&m.headers), "Nats-Msg-Id") == Some(env.id.as_str()) => Ok(m.sequence),
                    _ => Err(AppendError::Conflict),
                }
            }
            Err(e) => Err(AppendError::Publish(e.to_string())),
        }
    }

    /// Appends `env` whatever the ledger holds (a person's switch: it wins
    /// over any evaluation in flight, which then conflicts and reads it).
    pub async fn record(&self, subject: &str, env: &Envelope) -> Result<u64, AppendError> {
        skynet_bus::publish(&self.js, subject, env).await.map_err(|e| AppendError::Publish(e.to_string()))
    }
}

/// Folds one stored message into `ledger`. Only the initiative's own events
/// count: anything else on its subjects (the broker lets no other role publish
/// there, so this is defence in depth) is logged and skipped.
fn apply(ledger: &mut Ledger, seq: u64, subject: &str, headers: Option<&async_nats::HeaderMap>, payload: &[u8]) {
    // Even a skipped event moves the expectation: it is stored, and the next
    // append must come after it.
    ledger.last_seq = ledger.last_seq.max(seq);
    let env = match codec::decode(headers, payload) {
        Ok(env) if env.source == initiative::SOURCE => env,
        Ok(env) => {
            warn!(service = SERVICE, seq, subject, source = %env.source, "ledger event from another source; skipped");
            return;
        }
        Err(e) => {
            warn!(service = SERVICE, seq, subject, error = %e, "undecodable ledger event; skipped");
            return;
        }
    };
    let recorded = match env.ty.as_str() {
        initiative::DECIDED => env.data_as::<Decided>().map(|d| Recorded::Decided(Box::new(d))),
        initiative::PAUSED => env.data_as::<Switched>().map(Recorded::Paused),
        initiative::RESUMED => env.data_as::<Switched>().map(Recorded::Resumed),
        other => {
            warn!(service = SERVICE, seq, subject, ty = other, "unknown ledger event type; skipped");
            return;
        }
    };
    match recorded {
        Ok(r) => ledger.apply(seq, env.time, &env.id, r),
        Err(e) => warn!(service = SERVICE, seq, subject, error = %e, "ledger event with bad data; skipped"),
    }
}
