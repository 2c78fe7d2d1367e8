//! The memory service's request/reply subjects: the planner's similar-jobs
//! question, people's searches and stats, and the add and forget commands
//! (each verified against the token's principal, each change an event first).

use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use skynet_contract::Envelope;
use skynet_contract::memory::{
    self, AddMemory, ForgetMemory, MemoryForgotten, MemoryKind, MemoryQuery, MemoryRecorded, MemoryReply, PastJob,
    SimilarJobs, SimilarQuery,
};
use skynet_contract::principal::PrincipalRole;
use tracing::warn;

use crate::config::Config;
use crate::service::{Deps, SERVICE, SOURCE};
use crate::store;

/// Answers one request subject until `stop`.
pub(crate) async fn serve(
    sub: async_nats::Subscriber,
    deps: Deps,
    config: Arc<Config>,
    stop: tokio_util::sync::CancellationToken,
) {
    // Several at a time: one slow query must not hold the planner's next
    // question past its budget.
    let sub = sub.take_until(stop.cancelled_owned());
    sub.for_each_concurrent(config.concurrency.max(1), |msg| {
        let (deps, config) = (deps.clone(), config.clone());
        async move {
            let Some(reply_to) = msg.reply.clone() else { return };
            let body = match msg.subject.as_str() {
                memory::SIMILAR_SUBJECT => serde_json::to_vec(&similar(&deps, &config, &msg.payload).await),
                memory::QUERY_SUBJECT => serde_json::to_vec(&query(&deps, &msg.payload).await),
                memory::ADD => serde_json::to_vec(&add(&deps, &msg.payload).await),
                _ => serde_json::to_vec(&forget(&deps, &msg.payload).await),
            };
            if let Ok(body) = body
                && let Err(e) = deps.nats.publish(reply_to, body.into()).await
            {
                warn!(service = SERVICE, error = %e, "reply failed");
            }
        }
    })
    .await;
}

/// The planner's question: past runs like this intent, and failures seen in its directory.
async fn similar(deps: &Deps, config: &Config, payload: &[u8]) -> SimilarJobs {
    let empty = SimilarJobs { jobs: vec![], failures: vec![] };
    let Ok(q) = serde_json::from_slice::<SimilarQuery>(payload) else { return empty };
    let now = Utc::now();
    let (kind, window, limit) = (MemoryKind::TaskExecution, config.planner_window, q.limit.min(20));
    // No past runs asked for (the rule planner): only the directory's failures.
    let searched =
        if limit == 0 { Ok(vec![]) } else { store::search_recent(&deps.db, &q.intent, kind, window, limit, now).await };
    let hits = match searched {
        Ok(h) => h,
        Err(e) => {
            warn!(service = SERVICE, error = %e, "similar jobs unavailable");
            return empty;
        }
    };
    deps.retrievals.add(hits.iter().map(|h| h.id.clone()));
    let jobs = hits
        .into_iter()
        .map(|h| PastJob {
            intent: h.content["intent"].as_str().unwrap_or_default().to_owned(),
            succeeded: h.content["outcome"] == "succeeded",
            summary: h.content["summary"].as_str().map(str::to_owned),
            error: h.content["error"].as_str().map(str::to_owned),
            duration_secs: h.content["duration_ms"].as_f64().map(|ms| ms / 1000.0),
            id: Some(h.id),
            score: Some(h.importance),
        })
        .collect();
    let failures = match q.working_dir.as_deref() {
        Some(asked_dir) => match deps.known_failures.get(asked_dir) {
            Ok(held) => held,
            Err(asked) => {
                let dir = canonical_dir(asked_dir);
                match store::failures_in(&deps.db, &dir, config.failures_per_query).await {
                    Ok(found) => {
                        deps.known_failures.put(asked_dir, asked, &found);
                        found
                    }
                    Err(e) => {
                        warn!(service = SERVICE, error = %e, "known failures unavailable");
                        vec![]
                    }
                }
            }
        },
        None => vec![],
    };
    SimilarJobs { jobs, failures }
}

/// Directories as the dispatcher records them (canonical), when they resolve here.
fn canonical_dir(dir: &str) -> String {
    let expanded = match (dir.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::PathBuf::from(home).join(rest),
        _ => std::path::PathBuf::from(dir),
    };
    std::fs::canonicalize(&expanded).map_or_else(|_| dir.to_owned(), |p| p.display().to_string())
}

async fn principal_with(deps: &Deps, token: &str, role: PrincipalRole) -> Result<String, MemoryReply> {
    match deps.principals.verify(token).await {
        Ok(Some(p)) if p.has(role) => Ok(p.name),
        Ok(Some(p)) => {
            Err(MemoryReply::refused("forbidden", format!("{} does not hold the {} role", p.name, role.as_str())))
        }
        Ok(None) => Err(MemoryReply::refused("unauthorized", "unknown token")),
        Err(e) => Err(MemoryReply::refused("unavailable", format!("cannot check the token now: {e}"))),
    }
}

async fn query(deps: &Deps, payload: &[u8]) -> MemoryReply {
    let q = match serde_json::from_slice::<MemoryQuery>(payload) {
        Ok(q) => q,
        Err(e) => return MemoryReply::refused("bad_request", format!("not a memory query: {e}")),
    };
    let token = match &q {
        MemoryQuery::Search { token, .. } | MemoryQuery::Stats { token } => token,
    };
    if let Err(r) = principal_with(deps, token, PrincipalRole::Read).await {
        return r;
    }
    match q {
        MemoryQuery::Search { text, kind, limit, .. } => {
            if text.trim().is_empty() {
                return MemoryReply::refused("bad_request", "say what to search for");
            }
            match store::search(&deps.db, &text, kind, limit, Utc::now()).await {
                Ok(hits) => MemoryReply { hits, ..MemoryReply::ok(String::new()) },
                Err(e) => MemoryReply::refused("unavailable", format!("memory database: {e}")),
            }
        }
        MemoryQuery::Stats { .. } => match store::counts(&deps.db).await {
            Ok(rows) => {
                let mut counts: std::collections::BTreeMap<String, u64> =
                    MemoryKind::ALL.iter().map(|k| (k.as_str().to_owned(), 0)).collect();
                for (k, n) in rows {
                    counts.insert(k, u64::try_from(n).unwrap_or(0));
                }
                MemoryReply {
                    counts,
                    storage: Some("postgresql (full-text search + pg_trgm, fused by reciprocal rank)".into()),
                    embedding_provider: Some("none".into()),
                    ..MemoryReply::ok(String::new())
                }
            }
            Err(e) => MemoryReply::refused("unavailable", format!("memory database: {e}")),
        },
    }
}

/// Most text one record may hold.
const MAX_TEXT: usize = 16 * 1024;

async fn add(deps: &Deps, payload: &[u8]) -> MemoryReply {
    let a = match serde_json::from_slice::<AddMemory>(payload) {
        Ok(a) => a,
        Err(e) => return MemoryReply::refused("bad_request", format!("not a memory to add: {e}")),
    };
    let by = match principal_with(deps, &a.token, PrincipalRole::Submit).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    if !a.kind.added_by_people() {
        return MemoryReply::refused(
            "bad_request",
            format!("{} records come from the log; people add user_preference or environment_fact", a.kind.as_str()),
        );
    }
    if a.text.trim().is_empty() || a.text.len() > MAX_TEXT || a.text.contains('\0') {
        return MemoryReply::refused("bad_request", format!("the text must be 1 to {MAX_TEXT} bytes, without NUL"));
    }
    let id = format!("mem-{}", uuid::Uuid::new_v4().simple());
    let data = MemoryRecorded { id: id.clone(), kind: a.kind, text: a.text, labels: a.labels, recorded_by: by };
    match record(deps, &id, memory::RECORDED, "recorded", &data).await {
        Ok(()) => MemoryReply { id: Some(id.clone()), ..MemoryReply::ok(format!("recorded {id}")) },
        Err(e) => MemoryReply::refused("unavailable", e),
    }
}

async fn forget(deps: &Deps, payload: &[u8]) -> MemoryReply {
    let f = match serde_json::from_slice::<ForgetMemory>(payload) {
        Ok(f) => f,
        Err(e) => return MemoryReply::refused("bad_request", format!("not a memory to forget: {e}")),
    };
    let by = match principal_with(deps, &f.token, PrincipalRole::Approve).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    match store::exists(&deps.db, &f.id).await {
        Ok(true) => {}
        Ok(false) => return MemoryReply::refused("not_found", format!("no memory {}", f.id)),
        Err(e) => return MemoryReply::refused("unavailable", format!("memory database: {e}")),
    }
    let data = MemoryForgotten { id: f.id.clone(), reason: f.reason, forgotten_by: by };
    match record(deps, &f.id, memory::FORGOTTEN, "forgotten", &data).await {
        Ok(()) => MemoryReply::ok(format!("forgot {}", f.id)),
        Err(e) => MemoryReply::refused("unavailable", e),
    }
}

/// Appends a memory event to the log (the tables follow from it).
pub(crate) async fn record<T: serde::Serialize>(
    deps: &Deps,
    id: &str,
    ty: &str,
    verb: &str,
    data: &T,
) -> Result<(), String> {
    let env = Envelope::new(ty, uuid::Uuid::new_v4().to_string(), SOURCE, Some(id.to_owned()), Utc::now(), data)
        .map_err(|e| e.to_string())?;
    skynet_bus::publish(&deps.js, &memory::subject(id, verb), &env)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot record in the log now: {e}"))
}
