//! The kill switch and the status: `skynet.cmd.initiative.pause|resume`
//! (a person of the approve role; each an event in the ledger first) and
//! `skynet.initiative.status` (the ledger, the limits, and what an evaluation
//! now would do — computed fresh, by whichever process answers).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use skynet_contract::Envelope;
use skynet_contract::commands::CommandReply;
use skynet_contract::ids::event_id;
use skynet_contract::initiative::{self, InitiativeStatus, StrategyStatus, SwitchInitiative, Switched};
use skynet_contract::principal::PrincipalRole;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;
use crate::evaluate::look;
use crate::ledger::limit_reached;
use crate::service::{Deps, SERVICE};
use crate::store::LedgerStore;
use crate::strategies::{self, Verdict};

/// The longest reason kept with a switch.
const MAX_REASON: usize = 500;

/// Answers pause, resume and status requests on `sub` until `stop`.
pub async fn serve(
    sub: async_nats::Subscriber,
    deps: Deps,
    config: Arc<Config>,
    started: DateTime<Utc>,
    stop: CancellationToken,
) {
    let mut sub = std::pin::pin!(sub.take_until(stop.cancelled_owned()));
    while let Some(msg) = sub.next().await {
        let Some(reply_to) = msg.reply.clone() else { continue };
        let body = match msg.subject.as_str() {
            initiative::STATUS => serde_json::to_vec(&status(&deps, &config, started).await),
            initiative::PAUSE => serde_json::to_vec(&switch(&deps, true, &msg.payload).await),
            initiative::RESUME => serde_json::to_vec(&switch(&deps, false, &msg.payload).await),
            _ => continue,
        };
        if let Ok(body) = body
            && let Err(e) = deps.nats.publish(reply_to, body.into()).await
        {
            warn!(service = SERVICE, error = %e, "reply failed");
        }
    }
}

fn refused(code: &str, message: impl Into<String>) -> CommandReply {
    CommandReply { accepted: false, job_id: None, status: None, code: Some(code.into()), message: message.into() }
}

/// Records a pause (or a resume) by the token's principal.
pub async fn switch(deps: &Deps, pause: bool, payload: &[u8]) -> CommandReply {
    let cmd = match serde_json::from_slice::<SwitchInitiative>(payload) {
        Ok(c) => c,
        Err(e) => return refused("bad_request", format!("not a pause or resume: {e}")),
    };
    if cmd.command_id.is_empty() || cmd.command_id.len() > 200 {
        return refused("bad_request", "command_id: 1 to 200 bytes");
    }
    let by = match deps.principals.verify(&cmd.token).await {
        Ok(Some(p)) if p.has(PrincipalRole::Approve) => p.name,
        Ok(Some(p)) => return refused("forbidden", format!("{} does not hold the approve role", p.name)),
        Ok(None) => return refused("unauthorized", "unknown token"),
        Err(e) => return refused("unavailable", format!("cannot check the token now: {e}")),
    };
    let (ty, subject, word) = if pause {
        (initiative::PAUSED, initiative::PAUSED_SUBJECT, "paused")
    } else {
        (initiative::RESUMED, initiative::RESUMED_SUBJECT, "resumed")
    };
    let reason: String = cmd.reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_REASON).collect();
    let data = Switched { by: by.clone(), reason };
    // A retry of the same command (a lost reply) is the same event, stored once.
    let id = event_id(&["initiative.switch", word, &by, &cmd.command_id]);
    let recorded = match Envelope::new(ty, id, initiative::SOURCE, Some("control".into()), (deps.clock)(), &data) {
        Ok(env) => match LedgerStore::open(deps.js.clone(), deps.nats.clone()).await {
            Ok(store) => store.record(subject, &env).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    match recorded {
        Ok(_) => CommandReply {
            accepted: true,
            job_id: None,
            status: Some(word.into()),
            code: None,
            message: format!("initiative {word} by {by}"),
        },
        Err(e) => refused("unavailable", format!("cannot record it now: {e}")),
    }
}

/// The initiative's state and what an evaluation now would do.
pub async fn status(deps: &Deps, config: &Config, started: DateTime<Utc>) -> InitiativeStatus {
    let now = (deps.clock)();
    let mut out = InitiativeStatus {
        paused: false,
        switched: None,
        counts: Default::default(),
        strategies: Vec::new(),
        facts: None,
        interval_secs: config.interval_secs,
        error: None,
    };
    let store = match LedgerStore::open(deps.js.clone(), deps.nats.clone()).await {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(format!("cannot read the ledger: {e}"));
            return out;
        }
    };
    let seen = match look(deps, &store, config, now, started).await {
        Ok(l) => l,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    let counts = seen.ledger.counts(now, seen.running, &config.limits);
    let limit = limit_reached(&counts);
    for strategy in initiative::Strategy::ALL {
        let verdict = strategies::evaluate(strategy, config, &seen.observed.facts, &seen.ledger, now);
        let now_text = match (&verdict, seen.ledger.paused, &limit) {
            (Verdict::Wait(why), _, _) => format!("waits: {why}"),
            (Verdict::Trigger(why), true, _) => format!("paused; would trigger: {why}"),
            (Verdict::Trigger(why), false, Some(l)) => format!("held by a limit ({l}); triggers: {why}"),
            (Verdict::Trigger(why), false, None) => format!("would submit at the next evaluation: {why}"),
        };
        out.strategies.push(StrategyStatus {
            strategy,
            enabled: config.enabled(strategy),
            last_submitted: seen.ledger.last_submitted.get(&strategy).copied(),
            last_decision: seen.ledger.last_decision.get(&strategy).cloned(),
            now: now_text,
        });
    }
    out.paused = seen.ledger.paused;
    out.switched = seen.ledger.switched.clone();
    out.counts = counts;
    out.facts = Some(seen.observed.facts);
    out
}
