//! Group commit of what memory learns: every change the consumer applies goes
//! through one writer task, which applies all the changes waiting at that
//! moment in one transaction.
//!
//! Why: jobs of the same plan shape update one success-strategy record, so
//! their transactions serialise on its lock, each holding it through its own
//! commit's WAL flush. Under a burst of same-shaped jobs memory learned at half
//! the rate jobs finished (one commit, one flush, per job). Applied together,
//! a batch takes each record's lock once and flushes once.
//!
//! Nothing changes in what a delivery means: each change's caller gets its own
//! result only after the transaction holding it committed (then the message is
//! acked), and a change already applied (a redelivery) is skipped inside the
//! batch as before. A change Postgres refuses must not take its batch with it:
//! when a batch is refused (a data or constraint error: one change's doing),
//! each of its changes is applied again alone, so only the refused one fails
//! (and is retried, then dead-lettered, by the consumer). When Postgres is
//! away, restarting or in a deadlock, the whole batch fails at once and the
//! consumer retries each change later.
//!
//! Record locks are taken up front, sorted, for the whole batch, so two memory
//! processes never wait on each other's aggregate records in opposite orders;
//! rows of different events may still meet in opposite orders (a redelivery
//! in the other process), which Postgres detects as a deadlock: that batch
//! fails and is retried, nothing is lost.
//!
//! A writer task that stopped (a panic) is started again by the next change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use skynet_contract::memory::{MemoryForgotten, MemoryRecorded};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::learn::Lesson;
use crate::store;

/// Changes applied in one transaction at most.
const MAX_BATCH: usize = 128;

/// What one event changes.
#[derive(Debug)]
pub enum Change {
    Lesson(Lesson),
    Recorded(MemoryRecorded, DateTime<Utc>),
    Forgotten(MemoryForgotten),
}

struct Request {
    event_id: String,
    change: Change,
    done: oneshot::Sender<Result<(), String>>,
}

/// The handle of the writer task (cheap to clone; the task starts with the
/// first change and ends when the last handle is dropped).
#[derive(Clone)]
pub struct Writer {
    db: PgPool,
    queue: Arc<Mutex<Option<mpsc::UnboundedSender<Request>>>>,
    transactions: Arc<AtomicU64>,
}

impl Writer {
    /// A writer into `db` (nothing runs until the first change).
    pub fn new(db: PgPool) -> Writer {
        Writer { db, queue: Arc::default(), transactions: Arc::default() }
    }

    /// Applies `change` once, marking `event_id` applied in the same
    /// transaction; a change whose event was applied before does nothing.
    pub async fn apply(&self, event_id: &str, change: Change) -> Result<(), String> {
        let queue = {
            let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*queue {
                Some(q) if !q.is_closed() => q.clone(),
                stopped => {
                    if stopped.is_some() {
                        error!(service = "memory", "the memory writer stopped; starting it again");
                    }
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(run(self.db.clone(), rx, self.transactions.clone()));
                    queue.insert(tx).clone()
                }
            }
        };
        let (done, result) = oneshot::channel();
        queue
            .send(Request { event_id: event_id.to_owned(), change, done })
            .map_err(|_| "memory writer stopped".to_owned())?;
        result.await.unwrap_or_else(|_| Err("memory writer stopped".to_owned()))
    }

    /// Transactions committed or tried so far (batches, and changes retried
    /// alone after their batch failed).
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }
}

async fn run(db: PgPool, mut rx: mpsc::UnboundedReceiver<Request>, transactions: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        transactions.fetch_add(1, Ordering::Relaxed);
        let all = batch.iter().map(|r| (r.event_id.as_str(), &r.change)).collect::<Vec<_>>();
        match apply_all(&db, &all).await {
            Ok(()) => batch.drain(..).for_each(|r| {
                let _ = r.done.send(Ok(()));
            }),
            // Postgres unreachable, or a batch of one: nothing to gain from
            // trying each alone (during an outage that would wait out the
            // pool's timeout once per change), so each is retried later.
            Err(e) if batch.len() == 1 || !refused(&e) => batch.drain(..).for_each(|r| {
                let _ = r.done.send(Err(db_error(&e)));
            }),
            Err(e) => {
                warn!(service = "memory", error = %e, changes = batch.len(), "a batch was refused; applying its changes one by one");
                // Once Postgres is away, the rest fail at once.
                let mut away: Option<String> = None;
                for r in batch.drain(..) {
                    let result = match &away {
                        Some(reason) => Err(reason.clone()),
                        None => retry_alone(&db, &r, &transactions).await.map_err(|e| {
                            let reason = db_error(&e);
                            if !refused(&e) {
                                away = Some(reason.clone());
                            }
                            reason
                        }),
                    };
                    let _ = r.done.send(result);
                }
            }
        }
    }
}

async fn retry_alone(db: &PgPool, r: &Request, transactions: &AtomicU64) -> Result<(), sqlx::Error> {
    transactions.fetch_add(1, Ordering::Relaxed);
    apply_all(db, &[(r.event_id.as_str(), &r.change)]).await
}

/// Whether Postgres refused what a change wrote — a data exception (a NUL, a
/// number out of range), a constraint, a statement it cannot run, a limit
/// (nesting too deep) — which may be one change's doing. Not: a connection
/// lost, the server shutting down or read-only, a deadlock, out of resources.
fn refused(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code());
    matches!(code.as_deref().and_then(|c| c.get(..2)), Some("22" | "23" | "42" | "54"))
}

fn db_error(e: &sqlx::Error) -> String {
    format!("memory database: {e}")
}

/// Applies `changes` in one transaction: every record lock first, sorted, then
/// each change whose event is applied for the first time.
async fn apply_all(db: &PgPool, changes: &[(&str, &Change)]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut locks: Vec<String> = changes
        .iter()
        .flat_map(|(_, c)| match c {
            Change::Lesson(l) => store::lesson_locks(l),
            // A record added or forgotten may be one a lesson updates in
            // place (forgetting a plan shape while another process counts it).
            Change::Recorded(r, _) => vec![r.id.clone()],
            Change::Forgotten(f) => vec![f.id.clone()],
        })
        .collect();
    locks.sort_unstable();
    locks.dedup();
    store::lock_all(&mut tx, &locks).await?;
    // Plan-shape runs commute with each other, so the batch counts them
    // together — but not past a record added or forgotten, which may be a
    // shape's record: those are applied in their place, after the runs
    // before them.
    let mut runs = Vec::new();
    for (event_id, change) in changes {
        if !store::first_time(&mut tx, event_id).await? {
            continue;
        }
        match change {
            Change::Lesson(l) => {
                store::apply_execution(&mut tx, l).await?;
                runs.push(&l.execution);
            }
            Change::Recorded(r, at) => {
                store::apply_runs(&mut tx, &std::mem::take(&mut runs)).await?;
                store::apply_recorded(&mut tx, r, *at).await?;
            }
            Change::Forgotten(f) => {
                store::apply_runs(&mut tx, &std::mem::take(&mut runs)).await?;
                store::apply_forgotten(&mut tx, f).await?;
            }
        }
    }
    store::apply_runs(&mut tx, &runs).await?;
    tx.commit().await
}
