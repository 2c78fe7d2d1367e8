//! A Telegram Bot API double for the bot's tests: a real HTTP server speaking
//! the Bot API's JSON (`/bot<token>/<method>`, method names matched without
//! regard to case, `{"ok": true, "result": ...}` or the error shape with
//! `parameters.retry_after`), long-polled `getUpdates` included. Tests push
//! updates (a user's message, a button press) and read what the bot sent and
//! edited. It can answer the next N `sendMessage` calls with a 429.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// A message the bot sent, as it stands now (edits applied).
#[derive(Debug, Clone)]
pub struct BotMessage {
    pub chat: i64,
    pub message_id: i64,
    pub text: String,
    /// The inline keyboard's callback data, row by row (empty: no buttons).
    pub buttons: Vec<String>,
    /// How many times it was edited.
    pub edits: u32,
}

#[derive(Default)]
struct Inner {
    updates: Vec<Value>,
    next_update: i64,
    messages: BTreeMap<i64, BotMessage>,
    next_message: i64,
    /// Every call: (method, body), in order.
    calls: Vec<(String, Value)>,
    callback_answers: Vec<(String, String)>,
    commands: Vec<String>,
    /// `sendMessage` calls still to refuse with a 429.
    throttle: u32,
    /// When each refused or accepted `sendMessage` arrived (for the retry test).
    send_times: Vec<(tokio::time::Instant, bool)>,
    /// Chats whose user blocked the bot.
    blocked: Vec<i64>,
}

/// The running double.
#[derive(Clone)]
pub struct FakeBotApi {
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
    /// The base URL to give the bot (`TELEGRAM_API_URL`).
    pub url: String,
}

/// The bot token the double accepts.
pub const BOT_TOKEN: &str = "4242:test-bot-token";

impl FakeBotApi {
    pub async fn start() -> anyhow::Result<FakeBotApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let api = FakeBotApi {
            inner: Arc::new(Mutex::new(Inner { next_update: 1, next_message: 100, ..Inner::default() })),
            arrived: Arc::new(Notify::new()),
            url,
        };
        let app =
            axum::Router::new().route("/{bot}/{method}", axum::routing::post(call).get(call)).with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(api)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A private-chat text message from Telegram user `user`.
    pub fn user_says(&self, user: i64, text: &str) -> i64 {
        let chat = json!({"id": user, "type": "private", "first_name": format!("user{user}")});
        self.message(user, chat, text, now())
    }

    /// A private-chat message sent `secs_ago` seconds ago (kept by Telegram
    /// while the bot was away).
    pub fn user_said_long_ago(&self, user: i64, text: &str, secs_ago: i64) -> i64 {
        let chat = json!({"id": user, "type": "private", "first_name": format!("user{user}")});
        self.message(user, chat, text, now() - secs_ago)
    }

    /// A message from `user` in the group chat `group` (a negative id).
    pub fn user_says_in_group(&self, user: i64, group: i64, text: &str) -> i64 {
        self.message(user, json!({"id": group, "type": "group", "title": "ops"}), text, now())
    }

    /// Messages to `chat` fail as if its user had blocked the bot (403).
    pub fn block(&self, chat: i64) {
        self.lock().blocked.push(chat);
    }

    fn message(&self, user: i64, chat: Value, text: &str, date: i64) -> i64 {
        let mut g = self.lock();
        let message_id = g.next_message;
        g.next_message += 1;
        let mut message = json!({
            "message_id": message_id, "date": date,
            "chat": chat,
            "from": {"id": user, "is_bot": false, "first_name": format!("user{user}")},
            "text": text,
        });
        if let Some(cmd) = text.strip_prefix('/') {
            let len = cmd.split_whitespace().next().map_or(0, str::len) + 1;
            message["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        }
        push(&mut g, json!({ "message": message }));
        drop(g);
        self.arrived.notify_waiters();
        message_id
    }

    /// User `user` presses the button with `data` under the bot's message `message_id`.
    pub fn user_presses(&self, user: i64, message_id: i64, data: &str) -> String {
        let mut g = self.lock();
        let msg = g.messages.get(&message_id).cloned();
        let id = format!("cb-{}", g.next_update);
        let message = msg.map(|m| message_json(&m));
        push(
            &mut g,
            json!({ "callback_query": {
                "id": id, "chat_instance": "ci",
                "from": {"id": user, "is_bot": false, "first_name": format!("user{user}")},
                "message": message, "data": data,
            }}),
        );
        drop(g);
        self.arrived.notify_waiters();
        id
    }

    /// Refuse the next `n` `sendMessage` calls with 429, retry after 1 s.
    pub fn throttle_next_sends(&self, n: u32) {
        self.lock().throttle = n;
    }

    /// The bot's messages to `chat`, oldest first.
    pub fn messages_to(&self, chat: i64) -> Vec<BotMessage> {
        self.lock().messages.values().filter(|m| m.chat == chat).cloned().collect()
    }

    /// The answer to the button press `id`, once given.
    pub fn callback_answer(&self, id: &str) -> Option<String> {
        self.lock().callback_answers.iter().find(|(i, _)| i == id).map(|(_, t)| t.clone())
    }

    /// The command names given with `setMyCommands`.
    pub fn commands(&self) -> Vec<String> {
        self.lock().commands.clone()
    }

    /// Every `sendMessage` arrival: (when, refused with 429).
    pub fn send_times(&self) -> Vec<(tokio::time::Instant, bool)> {
        self.lock().send_times.clone()
    }

    /// How many calls of `method` the bot made.
    pub fn calls_of(&self, method: &str) -> usize {
        self.lock().calls.iter().filter(|(m, _)| m.eq_ignore_ascii_case(method)).count()
    }
}

fn push(g: &mut Inner, mut update: Value) {
    update["update_id"] = json!(g.next_update);
    g.next_update += 1;
    g.updates.push(update);
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

const BOT_USER: &str = r#"{"id": 4242, "is_bot": true, "first_name": "SKYNET", "username": "skynet_test_bot"}"#;

fn message_json(m: &BotMessage) -> Value {
    let mut v = json!({
        "message_id": m.message_id, "date": now(),
        "chat": {"id": m.chat, "type": "private", "first_name": format!("user{}", m.chat)},
        "from": serde_json::from_str::<Value>(BOT_USER).unwrap_or_default(),
        "text": m.text,
    });
    if !m.buttons.is_empty() {
        let row: Vec<Value> = m.buttons.iter().map(|d| json!({"text": d, "callback_data": d})).collect();
        v["reply_markup"] = json!({"inline_keyboard": [row]});
    }
    v
}

fn ok(result: Value) -> (axum::http::StatusCode, Json<Value>) {
    (axum::http::StatusCode::OK, Json(json!({"ok": true, "result": result})))
}

fn error(code: u16, description: &str, parameters: Option<Value>) -> (axum::http::StatusCode, Json<Value>) {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::BAD_REQUEST), Json(body))
}

fn buttons_of(body: &Value) -> Vec<String> {
    body["reply_markup"]["inline_keyboard"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                .filter_map(|b| b["callback_data"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn call(
    State(api): State<FakeBotApi>,
    Path((bot, method)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> (axum::http::StatusCode, Json<Value>) {
    if bot != format!("bot{BOT_TOKEN}") {
        return error(401, "Unauthorized", None);
    }
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let method = method.to_lowercase();
    api.lock().calls.push((method.clone(), body.clone()));
    match method.as_str() {
        "getme" => {
            let mut me: Value = serde_json::from_str(BOT_USER).unwrap_or_default();
            for flag in [
                "can_join_groups",
                "can_read_all_group_messages",
                "supports_inline_queries",
                "can_connect_to_business",
                "has_main_web_app",
            ] {
                me[flag] = json!(false);
            }
            ok(me)
        }
        "getwebhookinfo" => ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0})),
        "deletewebhook" | "setmycommands" | "answercallbackquery" => {
            let mut g = api.lock();
            if method == "setmycommands" {
                g.commands = body["commands"]
                    .as_array()
                    .map(|c| c.iter().filter_map(|x| x["command"].as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
            }
            if method == "answercallbackquery" {
                let id = body["callback_query_id"].as_str().unwrap_or_default().to_owned();
                g.callback_answers.push((id, body["text"].as_str().unwrap_or_default().to_owned()));
            }
            ok(json!(true))
        }
        "getupdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            let timeout = body["timeout"].as_u64().unwrap_or(0).min(30);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
            loop {
                let notified = api.arrived.notified();
                {
                    let mut g = api.lock();
                    // Confirmed updates (below the offset) are forgotten, as Telegram does.
                    g.updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    if !g.updates.is_empty() {
                        return ok(Value::Array(g.updates.clone()));
                    }
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return ok(json!([]));
                }
            }
        }
        "sendmessage" => {
            let mut g = api.lock();
            if g.blocked.contains(&body["chat_id"].as_i64().unwrap_or_default()) {
                return error(403, "Forbidden: bot was blocked by the user", None);
            }
            let refuse = g.throttle > 0;
            g.send_times.push((tokio::time::Instant::now(), refuse));
            if refuse {
                g.throttle -= 1;
                return error(429, "Too Many Requests: retry after 1", Some(json!({"retry_after": 1})));
            }
            let message_id = g.next_message;
            g.next_message += 1;
            let m = BotMessage {
                chat: body["chat_id"].as_i64().unwrap_or_default(),
                message_id,
                text: body["text"].as_str().unwrap_or_default().to_owned(),
                buttons: buttons_of(&body),
                edits: 0,
            };
            let json = message_json(&m);
            g.messages.insert(message_id, m);
            ok(json)
        }
        "editmessagetext" | "editmessagereplymarkup" => {
            let mut g = api.lock();
            let id = body["message_id"].as_i64().unwrap_or_default();
            let chat = body["chat_id"].as_i64().unwrap_or_default();
            let Some(m) = g.messages.get_mut(&id).filter(|m| m.chat == chat) else {
                return error(400, "Bad Request: message to edit not found", None);
            };
            let text = body["text"].as_str().map(str::to_owned);
            let buttons = buttons_of(&body);
            if method == "editmessagetext" && text.as_deref() == Some(m.text.as_str()) && buttons == m.buttons {
                return error(
                    400,
                    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                    None,
                );
            }
            if let Some(t) = text {
                m.text = t;
            }
            m.buttons = buttons;
            m.edits += 1;
            let json = message_json(m);
            ok(json)
        }
        other => error(404, &format!("Not Found: method {other}"), None),
    }
}
