//! The bot's durable consumer: a job starting to wait for approval is pushed,
//! with Approve / Deny buttons, to every allowed user whose principal may
//! approve; a decision or the end of a job edits the messages sent about it;
//! the sentinel's alerts and the system pause reach every allowed user.
//!
//! Idempotent under redelivery: what was sent is in the `SKYNET_TELEGRAM`
//! bucket, checked before each send and written right after it, and edits
//! are made only when the shown state changes. A crash between a send and
//! its record is the one window in which a chat can get a message twice.

use std::sync::Arc;

use async_nats::jetstream::Message;
use skynet_bus::consumer::{self, Disposition, Received};
use skynet_contract::alert::AlertRaised;
use skynet_contract::job::JobEvent;
use skynet_contract::principal::PrincipalRole;
use skynet_contract::system::{self, SystemSwitched};
use skynet_contract::{JobId, owners};
use skynet_job::Status;
use tracing::{Instrument, info, info_span, warn};

use crate::config::AllowedUser;
use crate::kv::{Purpose, SentMessage};
use crate::send;
use crate::service::{Ctx, SERVICE};
use crate::view::{self, JobView};

/// Handles one event, keeping its delivery ours meanwhile (progress acks
/// inside the 30 s ack wait): waiting out Telegram's rate limit must not let
/// the server hand the same event to another handler.
pub async fn handle(ctx: &Arc<Ctx>, msg: Message) -> Disposition {
    let _keep = {
        let msg = msg.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = msg.ack_with(async_nats::jetstream::AckKind::Progress).await {
                    warn!(service = SERVICE, error = %e, "progress ack failed");
                }
            }
        }))
    };
    handle_event(ctx, msg).await
}

/// Stops the progress acks however the handling ends (a panic included).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn handle_event(ctx: &Arc<Ctx>, msg: Message) -> Disposition {
    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
    let subject = msg.subject.to_string();
    if subject == system::CONTROL_SUBJECT || subject.starts_with("skynet.alert.") {
        return broadcast(ctx, &msg, seq).await;
    }
    let Received { env, job, event, .. } = match consumer::receive(&msg, None) {
        Ok(r) => r,
        Err(d) => return d,
    };
    let span = info_span!("notify", service = SERVICE, job_id = %job, event_id = %env.id, kind = event.kind().token());
    async {
        let view = match ctx.view(job).await {
            Ok(Some(v)) => v,
            Ok(None) => return Disposition::Ack,
            Err(e) => return Disposition::Retry(e),
        };
        let result = match event {
            JobEvent::PolicyDecided(_) if view.job.status == Status::AwaitingApproval => ask(ctx, job, &view).await,
            _ => refresh(ctx, job, &view).await,
        };
        match result {
            Ok(()) => Disposition::Ack,
            Err(e) => Disposition::Retry(e),
        }
    }
    .instrument(span)
    .await
}

/// Sends the approval request to every allowed approver not sent it yet.
/// Each chat is tried: one that fails for a while (Telegram down) makes the
/// event come again — the chats already served are skipped then — and one
/// that can never be reached (the user blocked the bot) holds nobody up.
async fn ask(ctx: &Ctx, job: JobId, view: &JobView) -> Result<(), String> {
    let (sent, _) = ctx.sent.job(job).await.map_err(|e| e.to_string())?;
    let text = view::approval_request(view);
    let mut failed = None;
    for user in &ctx.config.users {
        let chat = i64::try_from(user.telegram_id).unwrap_or_default();
        if sent.has(chat, Purpose::Approval) {
            continue;
        }
        match holds(ctx, user, PrincipalRole::Approve).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                failed = Some(e);
                continue;
            }
        }
        let id = match send::send(&ctx.bot, chat, &text, Some(send::decision_buttons(job))).await {
            Ok(id) => id,
            Err(e) if send::undeliverable(&e) => {
                warn!(chat, error = %e, "approval request undeliverable to this chat; skipped");
                continue;
            }
            Err(e) => {
                failed = Some(format!("sending the approval request to {chat}: {e}"));
                continue;
            }
        };
        let record = SentMessage { chat, message_id: id.0, purpose: Purpose::Approval };
        ctx.sent
            .update_job(job, |m| {
                if !m.has(chat, Purpose::Approval) {
                    m.messages.push(record.clone());
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        info!(chat, "approval request sent");
    }
    failed.map_or(Ok(()), Err)
}

/// Edits every message sent about the job to show where it is now: an
/// approval request keeps its buttons while approvals are still missing.
async fn refresh(ctx: &Ctx, job: JobId, view: &JobView) -> Result<(), String> {
    let (sent, _) = ctx.sent.job(job).await.map_err(|e| e.to_string())?;
    let shown = format!("{}:{}", view.job.status.as_str(), view.approvals.len());
    if sent.messages.is_empty() || sent.shown == shown {
        return Ok(());
    }
    let hint = &ctx.config.output_hint;
    for m in &sent.messages {
        let (text, buttons) = match (view.job.status, m.purpose) {
            (s, _) if s.is_terminal() => (view::outcome(view, hint), None),
            (Status::AwaitingApproval, Purpose::Approval) => {
                (view::approval_request(view), Some(send::decision_buttons(job)))
            }
            _ => (view::summary(view, hint), None),
        };
        match send::edit(&ctx.bot, m.chat, m.message_id, &text, buttons).await {
            Ok(()) => {}
            Err(e) if send::undeliverable(&e) => {
                warn!(chat = m.chat, error = %e, "message no longer editable; skipped")
            }
            Err(e) => return Err(format!("editing message {} in {}: {e}", m.message_id, m.chat)),
        }
    }
    ctx.sent.update_job(job, |m| m.shown = shown.clone()).await.map_err(|e| e.to_string())?;
    info!(status = view.job.status.as_str(), messages = sent.messages.len(), "messages updated");
    Ok(())
}

/// An alert raised, or the system paused or resumed: to every allowed user
/// who may read (as `/alerts` needs; a revoked token gets nothing).
async fn broadcast(ctx: &Ctx, msg: &Message, seq: u64) -> Disposition {
    let env = match skynet_bus::codec::decode(msg.headers.as_ref(), &msg.payload) {
        Ok(env) => env,
        Err(e) => return Disposition::DeadLetter { code: "undecodable", reason: e.to_string() },
    };
    let text = if msg.subject.as_str() == system::CONTROL_SUBJECT {
        if env.source != system::SOURCE {
            return Disposition::DeadLetter {
                code: "wrong_source",
                reason: format!("system switch from {}", env.source),
            };
        }
        let Ok(s) = serde_json::from_value::<SystemSwitched>(env.data.clone()) else {
            return Disposition::DeadLetter { code: "invalid_data", reason: "not a system switch".into() };
        };
        match env.ty.as_str() {
            system::PAUSED if s.cancel_running => {
                let reason = view::defang(&s.reason);
                format!(
                    "⛔ EMERGENCY STOP by {}: {reason}\nRunning jobs are cancelled; new jobs wait. /resume lifts it.",
                    s.by
                )
            }
            system::PAUSED => {
                format!("⏸ Dispatching paused by {}: {}\n/resume lifts it.", s.by, view::defang(&s.reason))
            }
            _ => format!("▶️ Resumed by {}: {}", s.by, view::defang(&s.reason)),
        }
    } else {
        if env.source != owners::source_of("sentinel") {
            return Disposition::DeadLetter { code: "wrong_source", reason: format!("alert from {}", env.source) };
        }
        let Ok(a) = serde_json::from_value::<AlertRaised>(env.data.clone()) else {
            return Disposition::DeadLetter { code: "invalid_data", reason: "not an alert".into() };
        };
        if a.muted.is_some() {
            return Disposition::Ack;
        }
        view::defang(&format!("🔔 {} alert: {}\n{}", a.severity.as_str(), a.subject, a.summary))
    };
    let mut failed = None;
    for user in &ctx.config.users {
        let chat = i64::try_from(user.telegram_id).unwrap_or_default();
        let key = format!("note.{seq}.{chat}");
        match ctx.sent.was_sent(&key).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => return Disposition::Retry(e.to_string()),
        }
        match holds(ctx, user, PrincipalRole::Read).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                failed = Some(e);
                continue;
            }
        }
        match send::send(&ctx.bot, chat, &view::fit(text.clone(), ""), None).await {
            Ok(_) => {}
            Err(e) if send::undeliverable(&e) => {
                warn!(service = SERVICE, chat, error = %e, "notification undeliverable to this chat; skipped");
                continue;
            }
            Err(e) => {
                warn!(service = SERVICE, chat, error = %e, "could not send a notification; it will come again");
                failed = Some(e.to_string());
                continue;
            }
        }
        if let Err(e) = ctx.sent.mark_sent(&key).await {
            return Disposition::Retry(e.to_string());
        }
    }
    match failed {
        Some(e) => Disposition::Retry(e),
        None => Disposition::Ack,
    }
}

/// Whether the principal `user` speaks for holds `role` now (a revoked token
/// holds nothing).
async fn holds(ctx: &Ctx, user: &AllowedUser, role: PrincipalRole) -> Result<bool, String> {
    Ok(ctx.principal(user).await?.is_some_and(|p| p.has(role)))
}
