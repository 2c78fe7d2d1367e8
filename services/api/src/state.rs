//! Shared state of the API's handlers.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use skynet_bus::EventStore;
use sqlx::PgPool;

use crate::config::Config;
use crate::guard::Limiter;

/// Cloned into every handler.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Core NATS: commands and request/reply.
    pub nats: async_nats::Client,
    /// JetStream: submissions, object stores, KV.
    pub js: jetstream::Context,
    /// The event log, for history.
    pub store: EventStore,
    /// The read models.
    pub db: PgPool,
    pub limiter: Arc<Limiter>,
    /// Who holds which token.
    pub principals: Arc<skynet_bus::principals::Principals>,
    /// Permits for live event streams (`Config::max_sse`).
    pub sse: Arc<tokio::sync::Semaphore>,
    /// The dashboard's signed-in browsers.
    pub sessions: Arc<crate::ui::session::Sessions>,
    /// The dashboard's live streams per viewer.
    pub live: Arc<crate::ui::live::Viewers>,
}

impl AppState {
    /// How long to wait for a service.
    pub fn service_timeout(&self) -> Duration {
        Duration::from_millis(self.config.service_timeout_ms)
    }

    /// A NATS request with the service timeout; no answer within it is 503.
    /// "No responders" means nobody received the request (the service is
    /// starting or restarting), so it is sent again, with backoff, until the
    /// timeout: a restart of a service is a slow answer, not an error.
    pub async fn request(&self, subject: &str, body: Vec<u8>) -> Result<bytes::Bytes, crate::error::ApiError> {
        use async_nats::RequestErrorKind;
        use backon::{ExponentialBuilder, Retryable};
        let unavailable = |what: String| crate::error::ApiError::Unavailable(format!("{subject}: {what}"));
        let body = bytes::Bytes::from(body);
        let send = || self.nats.request(subject.to_owned(), body.clone());
        let retried = send
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(20))
                    .with_max_delay(Duration::from_millis(500))
                    .without_max_times(),
            )
            .when(|e: &async_nats::RequestError| e.kind() == RequestErrorKind::NoResponders);
        match tokio::time::timeout(self.service_timeout(), retried).await {
            Ok(Ok(m)) => Ok(m.payload),
            Ok(Err(e)) => Err(unavailable(format!("no service answered ({e})"))),
            Err(_) => Err(unavailable(format!("no answer within {:?}", self.service_timeout()))),
        }
    }

    /// Sends a command and returns the service's reply when it took effect,
    /// or its refusal as the matching HTTP error.
    pub async fn command(
        &self,
        subject: &str,
        body: &impl serde::Serialize,
    ) -> Result<skynet_contract::commands::CommandReply, crate::error::ApiError> {
        let raw = self.request(subject, serde_json::to_vec(body).unwrap_or_default()).await?;
        let reply: skynet_contract::commands::CommandReply = serde_json::from_slice(&raw)
            .map_err(|e| crate::error::ApiError::Internal(format!("unreadable reply on {subject}: {e}")))?;
        if reply.accepted {
            return Ok(reply);
        }
        Err(crate::error::ApiError::refused(reply.code.as_deref(), reply.message))
    }
}
