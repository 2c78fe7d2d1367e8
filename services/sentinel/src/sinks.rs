//! Where alerts go: sinks from a file (`SKYNET_ALERT_SINKS`), each a generic
//! webhook signed per the Standard Webhooks scheme or a Slack-compatible
//! incoming webhook. A delivery is retried with exponential backoff on network
//! errors, 5xx, 408 and 429; other answers fail at once (retrying a 400 helps
//! no one). What still fails is returned, for the caller to record.
//!
//! ```json
//! {"sinks": [
//!   {"name": "ops", "type": "webhook", "url": "https://ops.example/hooks/skynet", "secret_env": "OPS_WEBHOOK_SECRET"},
//!   {"name": "chat", "type": "slack", "url": "https://hooks.slack.com/services/…", "min_severity": "warning"}
//! ]}
//! ```

use std::path::Path;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use skynet_contract::alert::Severity;

/// A sink file that cannot be used (the service refuses to start with it).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a sink file: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("sink {name}: {reason}")]
    Invalid { name: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkFile {
    sinks: Vec<SinkEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkEntry {
    name: String,
    #[serde(rename = "type")]
    kind: SinkKind,
    url: String,
    /// The webhook secret (`whsec_` + base64), or the variable that holds it.
    secret: Option<String>,
    secret_env: Option<String>,
    #[serde(default = "info")]
    min_severity: Severity,
}

fn info() -> Severity {
    Severity::Info
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Webhook,
    Slack,
}

/// A configured sink.
#[derive(Clone)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    pub url: reqwest::Url,
    pub min_severity: Severity,
    secret: Option<String>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, and never the URL's path (Slack's carries the token).
        write!(f, "Sink({} {:?} {})", self.name, self.kind, self.url.host_str().unwrap_or("?"))
    }
}

/// The HTTP client for sinks: bounded time per attempt, no redirects (a sink
/// is the URL configured, not wherever it points).
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).redirect(reqwest::redirect::Policy::none()).build()
}

/// The sinks of the file at `path`.
pub fn load(path: &Path) -> Result<Vec<Sink>, SinkError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SinkError::Read { path: p.clone(), source })?;
    let file: SinkFile = serde_json::from_str(&text).map_err(|source| SinkError::Parse { path: p, source })?;
    file.sinks.into_iter().map(sink).collect()
}

fn sink(e: SinkEntry) -> Result<Sink, SinkError> {
    let invalid = |reason: String| SinkError::Invalid { name: e.name.clone(), reason };
    let url = reqwest::Url::parse(&e.url).map_err(|err| invalid(format!("url: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("url must be http or https, not {}", url.scheme())));
    }
    let secret = match (&e.secret, &e.secret_env) {
        (Some(s), None) => Some(s.clone()),
        (None, Some(var)) => Some(std::env::var(var).map_err(|_| invalid(format!("{var} is not set")))?),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(invalid("secret or secret_env, not both".into())),
    };
    match (e.kind, &secret) {
        (SinkKind::Webhook, None) => return Err(invalid("a webhook needs a secret to sign with".into())),
        (SinkKind::Webhook, Some(s)) => {
            standardwebhooks::Webhook::new(s).map_err(|err| invalid(format!("secret: {err} (want whsec_<base64>)")))?;
        }
        (SinkKind::Slack, _) => {}
    }
    Ok(Sink { name: e.name, kind: e.kind, url, min_severity: e.min_severity, secret })
}

/// What a sink is told: one alert event.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// The alert event's id: the webhook id (receivers de-duplicate on it).
    #[serde(skip)]
    pub id: String,
    /// `alert.raised` or `alert.resolved`.
    #[serde(rename = "type")]
    pub ty: String,
    pub timestamp: DateTime<Utc>,
    pub data: serde_json::Value,
    #[serde(skip)]
    pub severity: Severity,
    #[serde(skip)]
    pub text: String,
}

/// A delivery that failed for good.
#[derive(Debug, Clone)]
pub struct Failed {
    pub attempts: u32,
    pub error: String,
}

/// Sends `notice` to `sink`, retrying; the attempts it took.
pub async fn deliver(
    http: &reqwest::Client,
    sink: &Sink,
    notice: &Notice,
    attempts: usize,
    backoff: Duration,
) -> Result<u32, Failed> {
    let tries = std::sync::atomic::AtomicU32::new(0);
    let once = || async {
        tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        send(http, sink, notice).await
    };
    let policy = ExponentialBuilder::default()
        .with_min_delay(backoff)
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(attempts.saturating_sub(1))
        .with_jitter();
    let result = once.retry(policy).when(|e: &SendError| e.retryable).await;
    let n = tries.load(std::sync::atomic::Ordering::Relaxed);
    result.map(|()| n).map_err(|e| Failed { attempts: n, error: e.message })
}

#[derive(Debug)]
struct SendError {
    retryable: bool,
    message: String,
}

async fn send(http: &reqwest::Client, sink: &Sink, notice: &Notice) -> Result<(), SendError> {
    let request = match sink.kind {
        SinkKind::Webhook => {
            let body =
                serde_json::to_vec(notice).map_err(|e| SendError { retryable: false, message: e.to_string() })?;
            // Signed at each attempt: the timestamp is the attempt's.
            let ts = Utc::now().timestamp();
            let signer = standardwebhooks::Webhook::new(sink.secret.as_deref().unwrap_or_default())
                .map_err(|e| SendError { retryable: false, message: e.to_string() })?;
            let signature = signer
                .sign(&notice.id, ts, &body)
                .map_err(|e| SendError { retryable: false, message: e.to_string() })?;
            http.post(sink.url.clone())
                .header("content-type", "application/json")
                .header("webhook-id", &notice.id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature)
                .body(body)
        }
        SinkKind::Slack => http.post(sink.url.clone()).json(&serde_json::json!({ "text": slack_text(&notice.text) })),
    };
    let response = request.send().await.map_err(|e| SendError { retryable: true, message: without_url(e) })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retryable = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
    Err(SendError { retryable, message: format!("HTTP {status}") })
}

/// A reqwest error without the URL (a Slack URL is a credential).
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

/// Slack's control characters escaped: text from outside (an intent, an
/// executor's message) cannot ping `<!channel>` or forge a link.
pub fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Result<Sink, SinkError> {
        sink(serde_json::from_str(json).map_err(|source| SinkError::Parse { path: "t".into(), source })?)
    }

    #[test]
    fn sink_files_are_checked_before_anything_is_sent() {
        let ok = entry(
            r#"{"name":"ops","type":"webhook","url":"https://h.example/x","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#,
        );
        assert!(ok.is_ok());
        for (bad, why) in [
            (r#"{"name":"a","type":"webhook","url":"https://h.example/x"}"#, "needs a secret"),
            (r#"{"name":"a","type":"webhook","url":"https://h.example/x","secret":"whsec_***"}"#, "secret"),
            (r#"{"name":"a","type":"slack","url":"file:///etc/passwd"}"#, "http or https"),
            (r#"{"name":"a","type":"webhook","url":"https://h","secret_env":"SKYNET_TEST_UNSET_VAR_X"}"#, "is not set"),
        ] {
            let e = entry(bad).map(|_| ()).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(entry(r#"{"name":"a","type":"pager","url":"https://h"}"#).is_err());
        assert!(entry(r#"{"name":"a","type":"slack","url":"https://h","colour":"red"}"#).is_err());
    }

    #[test]
    fn slack_text_cannot_mention_or_link() {
        assert_eq!(
            slack_text("<!channel> & <https://evil|click>"),
            "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;"
        );
    }

    #[test]
    fn debug_hides_secrets_and_paths() {
        let s = entry(r#"{"name":"chat","type":"slack","url":"https://hooks.example/services/T0/B0/SECRETPATH"}"#);
        let shown = format!("{:?}", s.map_err(|e| e.to_string()));
        assert!(!shown.contains("SECRETPATH"), "{shown}");
    }
}
