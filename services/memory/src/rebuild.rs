//! Rebuilding the memory tables from the log: they are read models, so
//! emptying them and replaying every finished job and every memory event, in
//! log order, gives the same records. Retrieval counts (`memory_usage`) are
//! operational state and are kept.

use skynet_bus::codec;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_contract::memory::{self, MemoryForgotten, MemoryRecorded};

use crate::group::Change;
use crate::service::{Deps, MemoryError, learn_job, migrate};
use crate::store::LOG_TABLES;

/// The terminal kinds, whose events each end a job memory learns from.
const TERMINAL: &[&str] = &["succeeded", "failed", "timed_out", "cancelled", "denied", "planning_failed"];

/// Empties the memory's read models and replays the log into them; returns
/// how many events were applied. Run it with the memory service stopped (it
/// is the tables' single writer).
pub async fn rebuild(deps: &Deps) -> Result<usize, MemoryError> {
    migrate(&deps.db).await?;
    sqlx::query(&format!("TRUNCATE {}", LOG_TABLES.join(", "))).execute(&deps.db).await?;
    let mut stored = Vec::new();
    let filters = TERMINAL
        .iter()
        .map(|k| format!("skynet.job.*.{k}"))
        .chain(["skynet.memory.*.recorded".to_owned(), "skynet.memory.*.forgotten".to_owned()]);
    for filter in filters {
        let got = skynet_bus::read::read_all(&deps.nats, EVENTS_STREAM, &filter, 1)
            .await
            .map_err(|e| MemoryError::Nats(e.to_string().into()))?;
        stored.extend(got);
    }
    stored.sort_by_key(|m| m.seq);
    let mut applied = 0;
    for m in &stored {
        let Ok(env) = codec::decode(m.headers.as_ref(), &m.payload) else { continue };
        let done = if m.subject.starts_with("skynet.memory.") {
            if env.source != "skynet/memory" {
                continue;
            }
            match env.ty.as_str() {
                memory::RECORDED => match env.data_as::<MemoryRecorded>() {
                    Ok(r) => deps.writer.apply(&env.id, Change::Recorded(r, env.time)).await,
                    Err(_) => continue,
                },
                memory::FORGOTTEN => match env.data_as::<MemoryForgotten>() {
                    Ok(f) => deps.writer.apply(&env.id, Change::Forgotten(f)).await,
                    Err(_) => continue,
                },
                _ => continue,
            }
        } else {
            let Ok((job, e)) = env.job_event() else { continue };
            if !skynet_contract::owners::is_owner(e.kind(), &env.source) {
                continue;
            }
            learn_job(deps, job, &env.id, m.seq).await
        };
        done.map_err(|e| MemoryError::Nats(e.into()))?;
        applied += 1;
    }
    Ok(applied)
}
