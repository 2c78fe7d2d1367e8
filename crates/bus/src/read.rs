//! Reading stored messages without creating a consumer: JetStream's batched
//! direct get (`next_by_subj` over a subject filter). Every role that reads the
//! log does it this way — creating consumers is reserved to the roles that need
//! them (see `nats/roles.json`), and an ordered consumer per read also leaks
//! server-side consumers until their inactivity timeout.

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;

use crate::codec;

/// Messages fetched per direct-get request.
const BATCH: usize = 512;
/// How long a read waits for the server to answer one request.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One stored message.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub subject: String,
    /// The message's own headers, plus the server's `Nats-*` ones.
    pub headers: Option<HeaderMap>,
    pub payload: Bytes,
}

/// Every message of `stream` whose subject matches `filter`, from stream
/// sequence `from` on, oldest first. The stream must allow direct get.
pub async fn read_all(
    client: &async_nats::Client,
    stream: &str,
    filter: &str,
    from: u64,
) -> Result<Vec<Stored>, async_nats::Error> {
    read(client, stream, filter, serde_json::json!({ "seq": from.max(1) })).await
}

/// Every message of `stream` whose subject matches `filter` stored at or after
/// `since` (the server's clock), oldest first.
pub async fn read_since(
    client: &async_nats::Client,
    stream: &str,
    filter: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Stored>, async_nats::Error> {
    let start = since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    read(client, stream, filter, serde_json::json!({ "start_time": start })).await
}

async fn read(
    client: &async_nats::Client,
    stream: &str,
    filter: &str,
    mut start: serde_json::Value,
) -> Result<Vec<Stored>, async_nats::Error> {
    let api = format!("$JS.API.DIRECT.GET.{stream}");
    let mut out = Vec::new();
    loop {
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await?;
        let mut req = serde_json::json!({ "next_by_subj": filter, "batch": BATCH });
        if let (Some(req), Some(start)) = (req.as_object_mut(), start.as_object()) {
            req.extend(start.clone());
        }
        client.publish_with_reply(api.clone(), inbox, req.to_string().into()).await?;
        let mut got = 0usize;
        loop {
            let msg = tokio::time::timeout(TIMEOUT, sub.next())
                .await
                .map_err(|_| format!("no answer to a direct get on {stream} within {TIMEOUT:?}"))?
                .ok_or("direct get subscription closed")?;
            if let Some(status) = msg.status {
                match status.as_u16() {
                    // 204: end of this batch; 404: nothing (more) under the filter.
                    204 | 404 => break,
                    code => {
                        let detail = msg.description.unwrap_or_default();
                        return Err(format!("direct get on {stream} failed: {code} {detail}").into());
                    }
                }
            }
            let header = |name| codec::header(msg.headers.as_ref(), name).map(str::to_owned);
            let seq = header("Nats-Sequence")
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("direct get reply without Nats-Sequence")?;
            let subject = header("Nats-Subject").unwrap_or_default();
            out.push(Stored { seq, subject, headers: msg.headers, payload: msg.payload });
            got += 1;
        }
        let _ = sub.unsubscribe().await;
        match out.last() {
            Some(last) if got == BATCH => start = serde_json::json!({ "seq": last.seq + 1 }),
            _ => return Ok(out),
        }
    }
}

/// The executors whose heartbeat is in the `SKYNET_EXECUTORS` bucket now (an
/// entry expires when its executor stops heartbeating), ordered by key; read by
/// direct get, as a client may.
pub async fn executors(
    client: &async_nats::Client,
) -> Result<Vec<skynet_contract::executor::ExecutorStatus>, async_nats::Error> {
    use crate::definitions::EXECUTORS_BUCKET;
    let prefix = format!("$KV.{EXECUTORS_BUCKET}.");
    let stored = read_all(client, &format!("KV_{EXECUTORS_BUCKET}"), &format!("{prefix}>"), 1).await?;
    let mut latest = std::collections::BTreeMap::new();
    for m in stored {
        // A deleted or purged key (an executor that said goodbye) is a marker, not a status.
        let op = m.headers.as_ref().and_then(|h| h.get("KV-Operation")).map(|v| v.as_str().to_owned());
        let key = m.subject.trim_start_matches(&prefix).to_owned();
        match (op.as_deref(), serde_json::from_slice(&m.payload)) {
            (Some("DEL" | "PURGE"), _) => {
                latest.remove(&key);
            }
            (_, Ok(status)) => {
                latest.insert(key, status);
            }
            (_, Err(_)) => {}
        }
    }
    Ok(latest.into_values().collect())
}
