//! Building blocks most service tests start from.

use skynet_bus::{EventStore, Jobs, Outcome, bootstrap};
use skynet_contract::JobId;
use skynet_contract::Risk;
use skynet_contract::job::{PolicyDecided, Requested};
use skynet_job::{Command, decide};

use crate::NatsServer;

/// A bootstrapped event log on its own nats-server, and a job repository.
pub struct Log {
    pub server: NatsServer,
    /// Connected under the service's own role: what the service under test gets.
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    /// Recording as `service`, with its role's rights.
    pub jobs: Jobs,
    /// A store with the admin role, for fixtures the service could not write
    /// itself (see [`record`]).
    pub admin: EventStore,
}

impl Log {
    pub async fn start(service: &str) -> anyhow::Result<Log> {
        let server = NatsServer::start()?;
        let admin_js = bootstrap(&server.connect().await?).await?;
        let admin = EventStore::open(admin_js).await.map_err(|e| anyhow::anyhow!(e))?;
        let client = server.connect_as(service).await?;
        let js = async_nats::jetstream::new(client.clone());
        let jobs = Jobs::new(EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?, service);
        Ok(Log { server, client, js, jobs, admin })
    }
}

/// A `requested` event for request `id` of source `source`, in `/tmp`.
pub fn requested(source: &str, id: &str, intent: &str) -> Requested {
    Requested {
        intent: intent.into(),
        working_dir: Some("/tmp".into()),
        project: None,
        // A principal asked (an anonymous requester's WRITE jobs cannot be approved).
        requested_by: Some("alice".into()),
        constraints: Default::default(),
        plan: None,
        request_source: source.into(),
        request_id: id.into(),
    }
}

/// A policy decision that lets a READ_ONLY plan of `steps` steps run unapproved.
pub fn auto_approved(steps: usize) -> PolicyDecided {
    PolicyDecided {
        allowed: true,
        risk: Risk::ReadOnly,
        step_risks: vec![Risk::ReadOnly; steps],
        requires_approval: false,
        approvals_required: 0,
        auto_approved: true,
        reasons: vec!["overall risk READ_ONLY: approved automatically by policy".into()],
        blocked_steps: vec![],
        approval_timeout_secs: None,
    }
}

/// Records `cmd` on `job` as the service that owns the events it yields, so a
/// fixture's history is what the services would have written (consumers skip
/// events recorded under any other `source`).
pub async fn record(store: &EventStore, job: JobId, cause: &str, cmd: Command) -> anyhow::Result<Outcome> {
    let (state, _) = Jobs::new(store.clone(), "test").load(job).await?;
    let events = decide(state.as_ref(), cmd.clone()).map_err(|r| anyhow::anyhow!("{cmd:?} refused: {r}"))?;
    let owner = events.first().map_or("test", |e| skynet_contract::owners::owners(e.kind())[0]);
    let jobs = Jobs::new(store.clone(), owner);
    Ok(jobs.execute(job, cause, chrono::Utc::now(), |s| decide(s, cmd.clone())).await?)
}
