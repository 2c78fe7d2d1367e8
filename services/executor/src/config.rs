//! Executor configuration.

use serde::Deserialize;

use crate::providers::{Provider, docker::Docker, local::Local, mock::Mock, openclaw::OpenClaw, ssh::Ssh};

/// Which providers this executor offers, with their settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvidersConfig {
    pub mock: Option<Mock>,
    pub local: Option<Local>,
    pub ssh: Option<Ssh>,
    pub docker: Option<Docker>,
    pub openclaw: Option<OpenClaw>,
}

impl ProvidersConfig {
    /// The configured providers.
    pub fn build(&self) -> Vec<Provider> {
        let mut v = Vec::new();
        v.extend(self.mock.clone().map(Provider::Mock));
        v.extend(self.local.clone().map(Provider::Local));
        v.extend(self.ssh.clone().map(Provider::Ssh));
        v.extend(self.docker.clone().map(Provider::Docker));
        v.extend(self.openclaw.clone().map(Provider::OpenClaw));
        v
    }
}

/// Settings of one executor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Unique id; default `executor-<host>-<random>`.
    pub id: String,
    /// Jobs run at once.
    pub capacity: usize,
    pub providers: ProvidersConfig,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
    /// Provider health is re-checked every this many heartbeats.
    pub health_every: u32,
    /// Period of progress acks (must stay well under the consumer's 5 s ack wait).
    pub progress_ms: u64,
    /// The lease: the executor consumer's ack wait (`nats/consumers/SKYNET_EVENTS/executor.json`).
    /// A progress ack not confirmed within half of it counts as the lease lost.
    pub lease_ms: u64,
    /// Largest live-output chunk (one `step_output` event).
    pub live_chunk_bytes: usize,
    /// Live-output events per step; later output is only in the stored log.
    pub live_chunks_per_step: u32,
    /// Steps that end within this many milliseconds are not streamed live.
    pub live_delay_ms: u64,
    /// Output up to this many bytes per stream of such a quick step is kept in
    /// its result event instead of the object store.
    pub inline_output_bytes: usize,
    /// How often containers left by dead executors are looked for (docker only).
    pub orphan_sweep_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "host".into());
        Config {
            id: format!("executor-{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            capacity: 8,
            providers: ProvidersConfig { local: Some(Local::default()), ..ProvidersConfig::default() },
            heartbeat_ms: 2000,
            health_every: 5,
            progress_ms: 1000,
            lease_ms: 5000,
            live_chunk_bytes: 4096,
            live_chunks_per_step: 64,
            live_delay_ms: 250,
            inline_output_bytes: 4096,
            orphan_sweep_ms: 10_000,
        }
    }
}
