//! Building blocks most service tests start from.

use skynet_bus::{EventStore, Jobs, bootstrap};
use skynet_contract::job::Requested;

use crate::NatsServer;

/// A bootstrapped event log on its own nats-server, and a job repository.
pub struct Log {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    /// Recording as `service`.
    pub jobs: Jobs,
}

impl Log {
    pub async fn start(service: &str) -> anyhow::Result<Log> {
        let server = NatsServer::start()?;
        let client = server.connect().await?;
        let js = bootstrap(&client).await?;
        let jobs = Jobs::new(EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?, service);
        Ok(Log { server, client, js, jobs })
    }
}

/// A `requested` event for request `id` of source `source`, in `/tmp`.
pub fn requested(source: &str, id: &str, intent: &str) -> Requested {
    Requested {
        intent: intent.into(),
        working_dir: Some("/tmp".into()),
        project: None,
        requested_by: None,
        constraints: Default::default(),
        plan: None,
        request_source: source.into(),
        request_id: id.into(),
    }
}
