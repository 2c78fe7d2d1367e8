//! People in the chat: each message and each button press, from an allowed
//! user, becomes a submission or a command carrying that user's token — so
//! the intake and the policy verify who it is, and the log names them. Anyone
//! else is told no, once, and nothing happens.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use skynet_contract::commands::{self, Approve, Cancel, CommandReply, Deny};
use skynet_contract::principal::PrincipalRole;
use skynet_contract::system::{self, SwitchSystem};
use skynet_contract::task::{TASK_REQUESTED, TaskRequested};
use skynet_contract::{Envelope, JobId, subjects};
use skynet_job::Status;
use teloxide::Bot;
use teloxide::prelude::{Requester, ResponseResult};
use teloxide::types::{CallbackQuery, Message};
use tracing::{Instrument, info, info_span, warn};

use crate::commands::{self as parse, Request};
use crate::config::AllowedUser;
use crate::kv::{Purpose, SentMessage};
use crate::service::{Ctx, SERVICE};
use crate::{reads, send};

const REFUSAL: &str =
    "Sorry, this bot only works in private chats with the people its operator allowed. Nothing was done.";

/// The oldest a message may be and still change anything.
const MAX_COMMAND_AGE_SECS: i64 = 60;

/// One message from a chat.
pub async fn on_message(_bot: Bot, msg: Message, ctx: Arc<Ctx>) -> ResponseResult<()> {
    let Some(from) = msg.from.as_ref() else { return Ok(()) };
    let (chat, user_id) = (msg.chat.id.0, from.id.0);
    let Some(user) = ctx.user(user_id).cloned() else {
        refuse(&ctx, chat, user_id).await;
        return Ok(());
    };
    // Only private chats: in a group, everyday talk would be taken for tasks,
    // and answers (plans, output) would be read by people not on the list.
    if !msg.chat.is_private() {
        warn!(service = SERVICE, telegram_user = user_id, chat, "message in a group chat; ignored");
        refuse(&ctx, chat, user_id).await;
        return Ok(());
    }
    let span = info_span!("chat", service = SERVICE, telegram_user = user_id, message = msg.id.0);
    async {
        let Some(text) = msg.text() else {
            reply(&ctx, chat, "I read text only: send a task, or /help.").await;
            return;
        };
        let request = parse::parse(text);
        // Telegram keeps updates for a day while the bot is away: a stop, a
        // resume or an approval typed then must not take effect now.
        let age = Utc::now().signed_duration_since(msg.date);
        if request.changes_something() && age > chrono::Duration::seconds(MAX_COMMAND_AGE_SECS) {
            let when = msg.date.format("%H:%M:%S UTC");
            reply(
                &ctx,
                chat,
                &format!("Ignored: you sent this at {when}, while I was away. Send it again if you still mean it."),
            )
            .await;
            return;
        }
        // The token may have been revoked since start: every request is checked.
        let principal = match ctx.principal(&user).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return reply(&ctx, chat, "Your SKYNET token is no longer valid; nothing was done. Ask the operator.")
                    .await;
            }
            Err(e) => return reply(&ctx, chat, &format!("Nothing was done: {e}.")).await,
        };
        if request.reads() && !principal.has(PrincipalRole::Read) {
            return reply(&ctx, chat, &format!("{} does not hold the read role.", principal.name)).await;
        }
        let answer = match request {
            Request::Start | Request::Help => parse::help(),
            Request::Invalid(why) => why,
            Request::Task(intent) => return submit(&ctx, &user, chat, msg.id.0, intent).await,
            Request::Status(job) => reads::status(&ctx, job.as_deref()).await,
            Request::Jobs(state) => reads::jobs(&ctx, state.as_deref()).await,
            Request::Cancel(job) => match ctx.resolve_job(&job).await {
                Ok(job) => {
                    let body =
                        Cancel { job_id: job, token: user.token.clone(), reason: "cancelled from Telegram".into() };
                    said(ctx.command(commands::CANCEL, &body).await)
                }
                Err(e) => e,
            },
            Request::Approve(job, confirmation) => match ctx.resolve_job(&job).await {
                Ok(job) => approve(&ctx, &user, chat, job, confirmation).await,
                Err(e) => e,
            },
            Request::Deny(job, reason) => match ctx.resolve_job(&job).await {
                Ok(job) => {
                    said(ctx.command(commands::DENY, &Deny { job_id: job, token: user.token.clone(), reason }).await)
                }
                Err(e) => e,
            },
            Request::Alerts => reads::alerts(&ctx).await,
            Request::EmergencyStop(reason) => switch(&ctx, &user, msg.id.0, true, reason).await,
            Request::Resume(reason) => switch(&ctx, &user, msg.id.0, false, reason).await,
        };
        reply(&ctx, chat, &answer).await;
    }
    .instrument(span)
    .await;
    Ok(())
}

/// A press of an Approve or Deny button.
pub async fn on_button(_bot: Bot, q: CallbackQuery, ctx: Arc<Ctx>) -> ResponseResult<()> {
    let user_id = q.from.id.0;
    let Some(user) = ctx.user(user_id).cloned() else {
        answer(&ctx, &q, REFUSAL).await;
        return Ok(());
    };
    if q.message.as_ref().is_some_and(|m| !m.chat().is_private()) {
        answer(&ctx, &q, REFUSAL).await;
        return Ok(());
    }
    let parsed = q
        .data
        .as_deref()
        .and_then(|d| d.split_once(':'))
        .and_then(|(verb, job)| Some((verb, job.parse::<JobId>().ok()?)));
    let Some((verb, job)) = parsed else {
        answer(&ctx, &q, "This button is not one of mine.").await;
        return Ok(());
    };
    let chat = q.message.as_ref().map(|m| m.chat().id.0).unwrap_or(i64::try_from(user_id).unwrap_or_default());
    let span = info_span!("button", service = SERVICE, telegram_user = user_id, job_id = %job, verb);
    async {
        let text = match verb {
            "a" => {
                let result = approve(&ctx, &user, chat, job, None).await;
                result.lines().next().unwrap_or_default().to_owned()
            }
            "d" => {
                let body = Deny { job_id: job, token: user.token.clone(), reason: "denied from Telegram".into() };
                match ctx.command(commands::DENY, &body).await {
                    Ok(r) if r.accepted => "Denied.".to_owned(),
                    Ok(r) => current_state(&ctx, job, &r.message).await,
                    Err(e) => format!("Not denied: {e}"),
                }
            }
            _ => "This button is not one of mine.".to_owned(),
        };
        answer(&ctx, &q, &text).await;
    }
    .instrument(span)
    .await;
    Ok(())
}

/// Approves as `user`; for an ADMIN job without the confirmation, asks for it
/// in a follow-up message. A refusal says where the job is now.
async fn approve(ctx: &Ctx, user: &AllowedUser, chat: i64, job: JobId, confirmation: Option<String>) -> String {
    let body = Approve { job_id: job, token: user.token.clone(), comment: Some("from Telegram".into()), confirmation };
    match ctx.command(commands::APPROVE, &body).await {
        Ok(r) if r.accepted => format!("Approved. {}", r.message),
        Ok(r) if r.code.as_deref() == Some("confirmation_required") => {
            let phrase = confirmation_of(ctx, job).await.unwrap_or_else(|| "<phrase> <first 8 of the id>".into());
            let ask = format!(
                "Job {job} is ADMIN risk: approving it needs its confirmation. Reply:\n/approve {job} {phrase}"
            );
            reply(ctx, chat, &ask).await;
            "ADMIN job: confirm it in the message I just sent.".into()
        }
        Ok(r) => current_state(ctx, job, &r.message).await,
        Err(e) => format!("Not approved: {e}"),
    }
}

/// The confirmation the policy asks of an ADMIN job (it states it among its reasons).
async fn confirmation_of(ctx: &Ctx, job: JobId) -> Option<String> {
    let view = ctx.view(job).await.ok()??;
    let reasons = view.job.policy?.reasons;
    reasons.iter().find_map(|r| r.split_once("confirm with ").map(|(_, p)| p.trim().trim_matches('"').to_owned()))
}

/// A refusal, with the job's state now ("approved by bob, running").
async fn current_state(ctx: &Ctx, job: JobId, refusal: &str) -> String {
    match ctx.view(job).await {
        Ok(Some(v)) => {
            let by = if v.approvals.is_empty() {
                String::new()
            } else {
                format!(" (approved by {})", v.approvals.join(", "))
            };
            let ending = v.ending.map(|e| format!(": {e}")).unwrap_or_default();
            format!("Nothing changed: the job is {}{by}{ending}. ({refusal})", v.job.status.as_str())
        }
        _ => format!("Nothing changed: {refusal}"),
    }
}

/// `/task`: submits on the client channel with the user's token, waits a
/// little for the plan, answers with the job id and plan, and remembers the
/// answer so it can be edited with the outcome.
async fn submit(ctx: &Ctx, user: &AllowedUser, chat: i64, message: i32, intent: String) {
    // The request id follows from the chat message, so Telegram delivering the
    // update again (a restart before it was confirmed) submits the same job —
    // and from the bot's token, so nobody else can predict it and take the
    // job id first with a submission of their own.
    let source = format!("telegram/{}", user.telegram_id);
    let key = format!("{}:{chat}:{message}", ctx.config.bot_token);
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).to_string();
    let job = JobId::for_request(&source, &id);
    let data = TaskRequested {
        intent,
        working_dir: None,
        project: None,
        requested_by: None,
        constraints: Default::default(),
        plan: None,
    };
    let submitted = async {
        let env =
            Envelope::new(TASK_REQUESTED, id.clone(), &source, None, Utc::now(), &data).map_err(|e| e.to_string())?;
        let (mut headers, payload) = skynet_bus::codec::encode(&env);
        headers.insert("Authorization", format!("Bearer {}", user.token).as_str());
        let msg = async_nats::jetstream::message::PublishMessage::build().headers(headers).payload(payload);
        ctx.js
            .send_publish(subjects::INTAKE_CLIENT, msg)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = submitted.await {
        reply(ctx, chat, &format!("Not submitted: {e}. Try again.")).await;
        return;
    }
    info!(job_id = %job, "task submitted");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ctx.config.plan_wait_ms);
    let mut shown = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(v)) = ctx.view(job).await
            && v.job.status != Status::Requested
        {
            // Only our own submission is shown as ours.
            if v.job.request.request_source != source || v.job.request.request_id != id {
                reply(ctx, chat, &format!("Not submitted: job {job} is someone else's.")).await;
                return;
            }
            shown = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = match &shown {
        Some(v) => crate::view::summary(v, &ctx.config.output_hint),
        None => format!("Submitted as job {job}; it is not planned yet (/status {job})."),
    };
    let Ok(message_id) =
        send::send(&ctx.bot, chat, &text, None).await.inspect_err(|e| warn!(error = %e, "reply failed"))
    else {
        return;
    };
    let record = SentMessage { chat, message_id: message_id.0, purpose: Purpose::Submitted };
    if let Err(e) = ctx
        .sent
        .update_job(job, |m| {
            if !m.has(chat, Purpose::Submitted) {
                m.messages.push(record.clone());
            }
        })
        .await
    {
        warn!(error = %e, "could not remember the reply; it will not be edited with the outcome");
        return;
    }
    // Finished before we remembered the reply? The notifier found nothing to
    // edit then; edit now.
    if let Ok(Some(v)) = ctx.view(job).await
        && v.job.status.is_terminal()
    {
        let _ =
            send::edit(&ctx.bot, chat, message_id.0, &crate::view::outcome(&v, &ctx.config.output_hint), None).await;
    }
}

/// `/emergency_stop` and `/resume`: the system pause, as this user.
async fn switch(ctx: &Ctx, user: &AllowedUser, message: i32, pause: bool, reason: String) -> String {
    let reason = if reason.is_empty() { "from Telegram".to_owned() } else { reason };
    let body = SwitchSystem {
        token: user.token.clone(),
        reason,
        command_id: format!("telegram-{}-{message}", user.telegram_id),
        cancel_running: true,
    };
    said(ctx.command(if pause { system::PAUSE } else { system::RESUME }, &body).await)
}

/// A command's reply in words.
fn said(reply: Result<CommandReply, String>) -> String {
    match reply {
        Ok(r) if r.accepted => format!("Done: {}", r.message),
        Ok(r) => format!("Refused: {}", r.message),
        Err(e) => format!("Not done: {e}"),
    }
}

/// Tells a stranger no, once per process; nothing else happens.
async fn refuse(ctx: &Ctx, chat: i64, user: u64) {
    let first = {
        let mut refused = ctx.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if refused.len() > 10_000 {
            refused.clear();
        }
        refused.insert(user)
    };
    warn!(service = SERVICE, telegram_user = user, first, "message from a user not on the allow-list");
    if first {
        reply(ctx, chat, REFUSAL).await;
    }
}

async fn reply(ctx: &Ctx, chat: i64, text: &str) {
    if let Err(e) = send::send(&ctx.bot, chat, &crate::view::fit(text.to_owned(), ""), None).await {
        warn!(service = SERVICE, error = %e, "could not reply");
    }
}

async fn answer(ctx: &Ctx, q: &CallbackQuery, text: &str) {
    // A callback answer shows at most 200 characters.
    let text: String = text.chars().take(200).collect();
    let result = send::retrying("answerCallbackQuery", || {
        let req = teloxide::payloads::AnswerCallbackQuerySetters::text(
            ctx.bot.answer_callback_query(q.id.clone()),
            text.clone(),
        );
        async move { req.await }
    })
    .await;
    if let Err(e) = result {
        warn!(service = SERVICE, error = %e, "could not answer a button press");
    }
}
