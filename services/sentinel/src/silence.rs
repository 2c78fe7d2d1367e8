//! `skynet.cmd.alert.silence`: a person with the approve role mutes alerts by
//! label for a time. The silence is an event in the log first; the consumer
//! puts it in the table the evaluation loop reads.

use chrono::Utc;
use futures::StreamExt;
use skynet_contract::Envelope;
use skynet_contract::alert::{self, MAX_SILENCE_SECS, SilenceAlerts, Silenced};
use skynet_contract::commands::CommandReply;
use skynet_contract::principal::PrincipalRole;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::service::{Deps, SERVICE, SOURCE};

/// Answers silence commands until `stop`.
pub async fn serve(sub: async_nats::Subscriber, deps: Deps, stop: CancellationToken) {
    let mut sub = std::pin::pin!(sub.take_until(stop.cancelled_owned()));
    while let Some(msg) = sub.next().await {
        let Some(reply_to) = msg.reply.clone() else { continue };
        let reply = silence(&deps, &msg.payload).await;
        if let Ok(body) = serde_json::to_vec(&reply)
            && let Err(e) = deps.nats.publish(reply_to, body.into()).await
        {
            warn!(service = SERVICE, error = %e, "reply failed");
        }
    }
}

fn refused(code: &str, message: impl Into<String>) -> CommandReply {
    CommandReply { accepted: false, job_id: None, status: None, code: Some(code.into()), message: message.into() }
}

/// Most matchers, and longest label, a silence may have.
const MAX_MATCHERS: usize = 8;
const MAX_LABEL: usize = 200;

async fn silence(deps: &Deps, payload: &[u8]) -> CommandReply {
    let cmd = match serde_json::from_slice::<SilenceAlerts>(payload) {
        Ok(c) => c,
        Err(e) => return refused("bad_request", format!("not a silence: {e}")),
    };
    let by = match deps.principals.verify(&cmd.token).await {
        Ok(Some(p)) if p.has(PrincipalRole::Approve) => p.name,
        Ok(Some(p)) => return refused("forbidden", format!("{} does not hold the approve role", p.name)),
        Ok(None) => return refused("unauthorized", "unknown token"),
        Err(e) => return refused("unavailable", format!("cannot check the token now: {e}")),
    };
    if cmd.matchers.is_empty() || cmd.matchers.len() > MAX_MATCHERS {
        return refused("bad_request", format!("say what to silence: 1 to {MAX_MATCHERS} label=value matchers"));
    }
    if cmd.matchers.iter().any(|(k, v)| k.is_empty() || k.len() > MAX_LABEL || v.len() > MAX_LABEL) {
        return refused("bad_request", format!("labels and values of at most {MAX_LABEL} bytes, labels not empty"));
    }
    if cmd.duration_secs == 0 || cmd.duration_secs > MAX_SILENCE_SECS {
        return refused("bad_request", format!("a silence lasts 1 s to {} days", MAX_SILENCE_SECS / 86_400));
    }
    let now = Utc::now();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let data = Silenced {
        id: id.clone(),
        matchers: cmd.matchers,
        until: now + chrono::Duration::seconds(i64::try_from(cmd.duration_secs).unwrap_or(0)),
        reason: crate::findings::cap(&cmd.reason, 500),
        silenced_by: by,
    };
    let recorded =
        match Envelope::new(alert::SILENCED, uuid::Uuid::new_v4().to_string(), SOURCE, Some(id.clone()), now, &data) {
            Ok(env) => {
                skynet_bus::publish(&deps.js, &alert::silence_subject(&id), &env).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
    match recorded {
        Ok(_) => CommandReply {
            accepted: true,
            job_id: None,
            status: None,
            code: None,
            message: format!("silence {id} until {}", data.until.format("%Y-%m-%d %H:%M:%S UTC")),
        },
        Err(e) => refused("unavailable", format!("cannot record the silence now: {e}")),
    }
}
