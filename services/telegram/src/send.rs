//! Talking to the Bot API: every request the bot makes on its own (pushes,
//! edits, answers) goes through [`retrying`], which honours Telegram's rate
//! limit — a 429 with `retry_after` — by waiting that long and trying again,
//! a few times. Other errors go back to the caller: a push is then retried by
//! the consumer's redelivery, an answer is logged.

use std::future::Future;
use std::time::Duration;

use teloxide::RequestError;
use teloxide::payloads::{EditMessageTextSetters, SendMessageSetters};
use teloxide::prelude::Requester;
use teloxide::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId};
use teloxide::{ApiError, Bot};
use tracing::warn;

/// Attempts of one request while Telegram says to slow down.
const ATTEMPTS: u32 = 5;
/// The longest wait Telegram may ask of us before we give up on a request.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Runs `request` until it succeeds, fails otherwise, or was rate-limited
/// [`ATTEMPTS`] times.
pub async fn retrying<T, F, Fut>(what: &str, request: F) -> Result<T, RequestError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, RequestError>>,
{
    let mut attempt = 1;
    loop {
        match request().await {
            Err(RequestError::RetryAfter(after)) if attempt < ATTEMPTS && after.duration() <= MAX_WAIT => {
                warn!(service = "telegram", what, retry_after = ?after.duration(), attempt, "rate limited by Telegram; waiting");
                tokio::time::sleep(after.duration()).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The Approve / Deny buttons of a job. Callback data is `a:<job id>` or
/// `d:<job id>`: 38 bytes, well under Telegram's 64.
pub fn decision_buttons(job: skynet_contract::JobId) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(vec![vec![
        InlineKeyboardButton::callback("✅ Approve", format!("a:{job}")),
        InlineKeyboardButton::callback("🚫 Deny", format!("d:{job}")),
    ]])
}

/// Sends `text` to `chat` (plain text: nothing in it is markup), with buttons.
pub async fn send(
    bot: &Bot,
    chat: i64,
    text: &str,
    buttons: Option<InlineKeyboardMarkup>,
) -> Result<MessageId, RequestError> {
    let m = retrying("sendMessage", || {
        let req = bot.send_message(ChatId(chat), text);
        let req = match buttons.clone() {
            Some(b) => req.reply_markup(b),
            None => req,
        };
        async move { req.await }
    })
    .await?;
    Ok(m.id)
}

/// Replaces a message's text (and removes its buttons unless given again).
/// A message already showing exactly this is not an error.
pub async fn edit(
    bot: &Bot,
    chat: i64,
    message: i32,
    text: &str,
    buttons: Option<InlineKeyboardMarkup>,
) -> Result<(), RequestError> {
    let result = retrying("editMessageText", || {
        let req = bot.edit_message_text(ChatId(chat), MessageId(message), text);
        let req = match buttons.clone() {
            Some(b) => req.reply_markup(b),
            None => req,
        };
        async move { req.await }
    })
    .await;
    match result {
        Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
        // Deleted by the user, or too old to edit: nothing to update.
        Err(RequestError::Api(ApiError::MessageToEditNotFound | ApiError::MessageCantBeEdited)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a send failed for good for this chat (the user blocked the bot,
/// never started it, or is gone): retrying will not help, and it must not
/// hold up the others.
pub fn undeliverable(e: &RequestError) -> bool {
    matches!(
        e,
        RequestError::Api(
            ApiError::BotBlocked
                | ApiError::ChatNotFound
                | ApiError::UserDeactivated
                | ApiError::CantInitiateConversation
                | ApiError::CantTalkWithBots
        )
    )
}
