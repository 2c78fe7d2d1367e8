//! The bot's settings: its Telegram token, the Bot API's address (Telegram's,
//! a self-hosted Bot API server, or a test double), and the allow-list: each
//! Telegram user id with the SKYNET API token of the principal it speaks for.
//! The principal's name and roles come from SKYNET's principal store, never
//! from this file, and every command carries the token so the service that
//! acts verifies it again.

use std::fmt;

/// The Bot API Telegram itself runs.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// Settings of the Telegram bot.
#[derive(Clone)]
pub struct Config {
    /// The bot's token from @BotFather (`TELEGRAM_BOT_TOKEN`).
    pub bot_token: String,
    /// The Bot API base URL (`TELEGRAM_API_URL`).
    pub api_url: url::Url,
    /// Who may use the bot (`TELEGRAM_USERS`).
    pub users: Vec<AllowedUser>,
    /// Long-poll timeout of `getUpdates`, in seconds.
    pub poll_timeout_secs: u32,
    /// How long `/task` waits for the plan before answering without it.
    pub plan_wait_ms: u64,
    /// Where people read full output (shown when output is cut to fit a message).
    pub output_hint: String,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens stay out of logs.
        f.debug_struct("Config")
            .field("api_url", &self.api_url.as_str())
            .field("users", &self.users.iter().map(|u| u.telegram_id).collect::<Vec<_>>())
            .field("poll_timeout_secs", &self.poll_timeout_secs)
            .finish_non_exhaustive()
    }
}

/// One allowed Telegram user and the SKYNET token it acts with.
#[derive(Clone, PartialEq, Eq)]
pub struct AllowedUser {
    pub telegram_id: u64,
    pub token: String,
}

impl fmt::Debug for AllowedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowedUser").field("telegram_id", &self.telegram_id).finish_non_exhaustive()
    }
}

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("TELEGRAM_USERS entry {0:?}: expected <telegram user id>=<SKYNET API token>")]
    BadUser(String),
    #[error("TELEGRAM_USERS lists Telegram user {0} twice")]
    Duplicate(u64),
    #[error("TELEGRAM_API_URL {0:?} is not a URL: {1}")]
    BadUrl(String, url::ParseError),
    #[error("TELEGRAM_BOT_TOKEN is empty")]
    NoToken,
}

impl Config {
    /// Settings from their textual forms: `users` is a comma-separated list of
    /// `<telegram user id>=<token>`.
    pub fn new(bot_token: &str, api_url: Option<&str>, users: &str) -> Result<Config, ConfigError> {
        if bot_token.trim().is_empty() {
            return Err(ConfigError::NoToken);
        }
        let raw = api_url.filter(|u| !u.trim().is_empty()).unwrap_or(TELEGRAM_API);
        let api_url = url::Url::parse(raw).map_err(|e| ConfigError::BadUrl(raw.to_owned(), e))?;
        Ok(Config {
            bot_token: bot_token.trim().to_owned(),
            api_url,
            users: parse_users(users)?,
            poll_timeout_secs: 10,
            plan_wait_ms: 5_000,
            // What exists: the dashboard's job page (and the API route for each step's output).
            output_hint: "the job page /jobs/<id> of the dashboard, or GET /v1/jobs/<id>/steps/<n>/output".into(),
        })
    }
}

/// Parses `TELEGRAM_USERS`.
pub fn parse_users(text: &str) -> Result<Vec<AllowedUser>, ConfigError> {
    let mut users: Vec<AllowedUser> = Vec::new();
    for entry in text.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty()) {
        let (id, token) = entry.split_once('=').ok_or_else(|| ConfigError::BadUser(redact(entry)))?;
        let telegram_id = id.trim().parse::<u64>().map_err(|_| ConfigError::BadUser(redact(entry)))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(ConfigError::BadUser(redact(entry)));
        }
        if users.iter().any(|u| u.telegram_id == telegram_id) {
            return Err(ConfigError::Duplicate(telegram_id));
        }
        users.push(AllowedUser { telegram_id, token: token.to_owned() });
    }
    Ok(users)
}

/// An entry as it may be shown in an error: the id, never the token.
fn redact(entry: &str) -> String {
    match entry.split_once('=') {
        Some((id, _)) => format!("{id}=…"),
        None => entry.chars().take(24).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_and_errors_never_show_a_token() {
        let users = parse_users(" 42=tok-a, 7=tok-b\n").expect("parses");
        assert_eq!(
            users.iter().map(|u| (u.telegram_id, u.token.as_str())).collect::<Vec<_>>(),
            [(42, "tok-a"), (7, "tok-b")]
        );
        let e = parse_users("alice=secret-token").expect_err("not an id").to_string();
        assert!(!e.contains("secret-token") && e.contains("alice"), "{e}");
        assert!(matches!(parse_users("1=a,1=b"), Err(ConfigError::Duplicate(1))));
        assert!(parse_users("1=").is_err());
        assert!(Config::new(" ", None, "").is_err());
        let c = Config::new("123:abc", Some("http://127.0.0.1:9/"), "1=t").expect("ok");
        assert!(!format!("{c:?}").contains("123:abc") && !format!("{c:?}").contains("\"t\""));
    }
}
