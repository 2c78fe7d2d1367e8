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
    let api = format!("$JS.API.DIRECT.GET.{stream}");
    let mut out = Vec::new();
    let mut from = from.max(1);
    loop {
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await?;
        let req = serde_json::json!({ "seq": from, "next_by_subj": filter, "batch": BATCH });
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
            Some(last) if got == BATCH => from = last.seq + 1,
            _ => return Ok(out),
        }
    }
}
