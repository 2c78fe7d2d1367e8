//! `GET /v1/events`: live events as Server-Sent Events, for audit and
//! dashboards. Filters: a NATS subject (default every job event) and a list of
//! CloudEvent types.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use skynet_bus::codec;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::state::AppState;

/// Filters of the live stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// NATS subject filter under `skynet.` (default `skynet.job.>`; e.g. `skynet.job.<id>.>`).
    pub subject: Option<String>,
    /// Comma-separated CloudEvent types to keep (default: all).
    #[serde(rename = "type")]
    pub types: Option<String>,
}

/// Streams matching events as they are published, one SSE event each
/// (`event:` = CloudEvent type, `id:` = CloudEvent id, `data:` = the CloudEvent).
#[utoipa::path(get, path = "/v1/events", params(EventFilter),
    responses((status = 200, description = "text/event-stream of CloudEvents"), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn live(
    State(s): State<AppState>,
    Query(f): Query<EventFilter>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subject = f.subject.unwrap_or_else(|| "skynet.job.>".into());
    if !subject.starts_with("skynet.") || subject.contains(' ') {
        return Err(ApiError::Invalid(format!("subject {subject:?} must be a NATS subject under skynet.")));
    }
    let types: Vec<String> = f
        .types
        .map(|t| t.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    // A bounded number of live streams, each with a bounded buffer: over the
    // cap the answer is 503, and a reader too slow to keep up is dropped
    // rather than buffered without end.
    let permit = s.sse.clone().try_acquire_owned().map_err(|_| {
        ApiError::Unavailable(format!(
            "{} live event streams are open, the most allowed; retry later",
            s.config.max_sse
        ))
    })?;
    let mut sub = s.nats.subscribe(subject).await.map_err(|e| ApiError::Unavailable(format!("subscribing: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(s.config.sse_buffer.max(1));
    tokio::spawn(async move {
        let _permit = permit; // released when this stream ends
        loop {
            let msg = tokio::select! {
                () = tx.closed() => break, // the client went away
                m = sub.next() => match m { Some(m) => m, None => break },
            };
            let Some(env) = codec::decode(msg.headers.as_ref(), &msg.payload)
                .ok()
                .filter(|env| types.is_empty() || types.contains(&env.ty))
            else {
                continue;
            };
            let data = serde_json::to_string(&env.to_cloudevent()).unwrap_or_default();
            match tx.try_send(Event::default().event(env.ty).id(env.id).data(data)) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(service = "api", "a live-event reader fell behind its buffer; dropping it");
                    break;
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        let _ = sub.unsubscribe().await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
