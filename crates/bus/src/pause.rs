//! Following the system-wide pause (the emergency stop): the newest event on
//! `skynet.system.control` in the log, read by direct get at start, again on
//! every live message of that subject, and every two seconds in case a live
//! message was missed (a reconnect). Services that act on it — the dispatcher
//! holds approved jobs, executors stop running work — see a switch within
//! milliseconds, and within the period at worst.

use std::time::Duration;

use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use futures::StreamExt;
use skynet_contract::system::{self, SystemState, SystemSwitched};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::codec;
use crate::definitions::EVENTS_STREAM;

/// How often the state is read again without a live message.
const PERIOD: Duration = Duration::from_secs(2);

/// The current system state, kept up to date by a background task that lives
/// as long as any clone of this.
#[derive(Clone, Debug)]
pub struct PauseWatch {
    rx: watch::Receiver<SystemState>,
    tx: std::sync::Arc<watch::Sender<SystemState>>,
    /// The log, for a fresh read (none: a state that never changes).
    stream: Option<jetstream::stream::Stream>,
}

impl PauseWatch {
    /// Reads the state and follows it.
    pub async fn follow(js: jetstream::Context, nats: async_nats::Client) -> Result<PauseWatch, async_nats::Error> {
        let stream = js.get_stream(EVENTS_STREAM).await?;
        let mut live = nats.subscribe(system::CONTROL_SUBJECT).await?;
        let initial = current(&stream).await?;
        let (tx, rx) = watch::channel(initial);
        let tx = std::sync::Arc::new(tx);
        let watch = PauseWatch { rx, tx: tx.clone(), stream: Some(stream.clone()) };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PERIOD);
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    m = live.next() => if m.is_none() { return },
                    _ = tick.tick() => {}
                }
                match current(&stream).await {
                    Ok(state) => forward(&tx, state),
                    Err(e) => debug!(error = %e, "reading the system pause failed; keeping the last state"),
                }
            }
        });
        Ok(watch)
    }

    /// A state that never changes (running), for code paths without NATS.
    pub fn never() -> PauseWatch {
        let (tx, rx) = watch::channel(SystemState::default());
        PauseWatch { rx, tx: std::sync::Arc::new(tx), stream: None }
    }

    /// The state now.
    pub fn current(&self) -> SystemState {
        self.rx.borrow().clone()
    }

    /// A receiver to wait on.
    pub fn receiver(&self) -> watch::Receiver<SystemState> {
        self.rx.clone()
    }

    /// Returns once the system is not paused.
    pub async fn running(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|s| !s.paused).await;
    }

    /// The state read from the log now (the last known one if it cannot be
    /// read: a stop stays in force until the log says otherwise).
    pub async fn refresh(&self) -> SystemState {
        if let Some(stream) = &self.stream {
            match current(stream).await {
                Ok(state) => forward(&self.tx, state),
                Err(e) => debug!(error = %e, "reading the system pause failed; keeping the last state"),
            }
        }
        self.current()
    }

    /// Returns once running work must stop (an emergency stop in force),
    /// confirmed by a fresh read: a copy that has not seen a resume yet does
    /// not cancel work dispatched after it.
    pub async fn stopping(&self) {
        let mut rx = self.rx.clone();
        loop {
            if rx.wait_for(SystemState::stops_running).await.is_err() {
                std::future::pending::<()>().await;
            }
            if self.refresh().await.stops_running() {
                return;
            }
            rx.borrow_and_update();
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Takes `state` if it is newer than the one held: an answer from before a
/// newer one changes nothing.
fn forward(tx: &watch::Sender<SystemState>, state: SystemState) {
    tx.send_if_modified(|held| {
        let newer = state.seq > held.seq;
        if newer {
            info!(paused = state.paused, seq = state.seq, "system pause switched");
            *held = state.clone();
        }
        newer
    });
}

/// The state the newest control event in the log gives (running when none).
pub async fn current(stream: &jetstream::stream::Stream) -> Result<SystemState, async_nats::Error> {
    let m = match stream.direct_get_last_for_subject(system::CONTROL_SUBJECT).await {
        Ok(m) => m,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(SystemState::default()),
        Err(e) => return Err(e.into()),
    };
    let env = codec::decode(Some(&m.headers), &m.payload)?;
    // Only the policy service records switches (the broker enforces it); a
    // message from anyone else is not the state, and the state stays unknown
    // (the last one held is kept) rather than read as "running".
    if env.source != system::SOURCE {
        warn!(source = %env.source, seq = m.sequence, "system control event from another source");
        return Err(format!(
            "the newest system control event (seq {}) comes from {}, not the policy",
            m.sequence, env.source
        )
        .into());
    }
    let data: SystemSwitched = serde_json::from_value(env.data)?;
    Ok(SystemState::apply(&env.ty, data, env.time, m.sequence).unwrap_or_default())
}
