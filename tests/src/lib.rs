//! Harness for the system tests: starts the whole system exactly as `skynet up`
//! does (same entry point, same wiring), against a real nats-server and a fresh
//! Postgres database. The tests then talk to it only through public surfaces:
//! NATS subjects with a plain async-nats client, and the read-model database.

pub mod browser;
pub mod telegram;

use skynet_cli::infra::Infra;
use skynet_cli::settings::Settings;
use skynet_cli::up::{self, Service};
use skynet_testkit::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

/// A running system. Dropping it stops the services, the server and the database.
pub struct System {
    pub nats: NatsServer,
    pub db: TestDb,
    /// A project directory (a Makefile and a requirements.txt) for steps that
    /// run the project's own tests, lint, build or install.
    project: tempfile::TempDir,
    /// A plain client, as any user would have.
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    stop: StopOnDrop,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Cancels the services when the system is dropped (a failing test included).
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl System {
    /// Starts every service.
    pub async fn start() -> anyhow::Result<System> {
        Self::start_with(NatsServer::start()?, TestDb::create().await?, |_| {}).await
    }

    /// Starts every service on the given server and database, with settings
    /// adjusted by `tune` (policy file, planner backend, timeouts).
    pub async fn start_with(nats: NatsServer, db: TestDb, tune: impl FnOnce(&mut Settings)) -> anyhow::Result<System> {
        Self::start_without(nats, db, tune, &[]).await
    }

    /// [`System::start_with`] without some services (e.g. the executor, which
    /// a test starts and stops itself with [`System::settings`]).
    pub async fn start_without(
        nats: NatsServer,
        db: TestDb,
        tune: impl FnOnce(&mut Settings),
        without: &[Service],
    ) -> anyhow::Result<System> {
        let mut settings = Settings::new(Some(nats.url.clone()), Some(db.url.clone()));
        // Every service connects under its own role, as with `skynet up`.
        settings.nats_creds_dir = Some(nats.creds().dir.clone());
        // The first admin principal's token (as `skynet up` makes it).
        settings.api_token = Some(ADMIN_TOKEN.into());
        tune(&mut settings);
        let infra = Infra::up(&settings).await?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        // The API is started per test on a free port (see `System::api`).
        let services: Vec<Service> = Service::ALL
            .iter()
            .copied()
            .filter(|s| *s != Service::Api && !without.contains(s) && s.in_up(&settings))
            .collect();
        let task = tokio::spawn(async move { up::run(&infra, &settings, &services, token).await });
        // The tests are users: the `client` role's rights, nothing more.
        let client = nats.connect_as(skynet_bus::auth::CLIENT).await?;
        let js = async_nats::jetstream::new(client.clone());
        // Ready when the request/reply services answer (consumers exist from bootstrap).
        skynet_testkit::eventually(WAIT, "the policy service to answer", || async {
            client
                .request("skynet.policy.check", br#"{"action":"git_status"}"#.as_slice().into())
                .await
                .ok()
                .map(|_| ())
        })
        .await?;
        // The people of the tests: each an approver and submitter who may read,
        // with the token `token-<name>` (see [`token`]).
        let store =
            skynet_bus::principals::Principals::open(&async_nats::jetstream::new(nats.connect().await?)).await?;
        for name in PEOPLE {
            use skynet_contract::principal::{Principal, PrincipalRole as R};
            let p = Principal { name: (*name).into(), roles: vec![R::Submit, R::Approve, R::Read] };
            store.put(&self::token(name), &p).await?;
        }
        let project = tempfile::tempdir()?;
        std::fs::write(
            project.path().join("Makefile"),
            "test:\n\t@echo tests passed\nlint:\n\t@true\nall:\n\t@true\n",
        )?;
        std::fs::write(project.path().join("requirements.txt"), "")?;
        Ok(System { nats, db, project, client, js, stop: StopOnDrop(stop), task })
    }

    /// Settings as the harness gives the services (before a test's tuning).
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::new(Some(self.nats.url.clone()), Some(self.db.url.clone()));
        settings.nats_creds_dir = Some(self.nats.creds().dir.clone());
        settings.api_token = Some(ADMIN_TOKEN.into());
        settings
    }

    /// The test project's directory.
    pub fn project(&self) -> String {
        self.project.path().display().to_string()
    }

    /// Stops the services and returns how they ended.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop_services().await.map(|_| ())
    }

    /// Stops the services but keeps the server and the database, for a restart.
    pub async fn stop_services(self) -> anyhow::Result<(NatsServer, TestDb)> {
        self.stop.0.cancel();
        self.task.await??;
        drop(self.project);
        Ok((self.nats, self.db))
    }
}

/// Principals every test system knows (see [`token`]).
pub const PEOPLE: &[&str] = &["alice", "bob", "carol", "ann"];

/// The API token of one of [`PEOPLE`].
pub fn token(name: &str) -> String {
    format!("token-{name}")
}

/// The token of the first admin principal of every test system.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Where tasks are submitted.
pub const INTAKE: &str = "skynet.intake.task";
/// The `source` of tasks submitted by these tests.
pub const SOURCE: &str = "tests/system";
/// How long any one expected effect may take.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The documented job-id derivation (README): UUIDv5 in SKYNET's namespace over
/// `source + "\0" + id`, computed without SKYNET code.
pub fn job_id(source: &str, id: &str) -> uuid::Uuid {
    let ns = uuid::Uuid::from_u128(0x6b1f_0d4e_93a2_4c57_8f0e_5d2a_c3b1_7e90);
    uuid::Uuid::new_v5(&ns, format!("{source}\0{id}").as_bytes())
}

/// A structured-mode task CloudEvent.
pub fn task(id: &str, data: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "specversion": "1.0", "id": id, "source": SOURCE,
        "type": "skynet.task.requested.v1", "datacontenttype": "application/json", "data": data
    }))
    .unwrap_or_default()
}

/// A stored message: subject, headers, payload.
pub type Stored = (String, Option<async_nats::HeaderMap>, bytes::Bytes);

impl System {
    /// Submits a task with a plain client, as alice (her token in the
    /// `Authorization` header, as `skynet task` sends it); returns its job id.
    pub async fn submit(&self, id: &str, data: serde_json::Value) -> anyhow::Result<uuid::Uuid> {
        self.submit_as(&token("alice"), id, data).await
    }

    /// Submits a task with no token: its requester is only a claim.
    pub async fn submit_anonymous(&self, id: &str, data: serde_json::Value) -> anyhow::Result<uuid::Uuid> {
        self.client.publish(INTAKE, task(id, data).into()).await?;
        self.client.flush().await?;
        Ok(job_id(SOURCE, id))
    }

    /// Submits a task authenticated as the principal holding `token` (the
    /// `Authorization` header); returns its job id.
    pub async fn submit_as(&self, token: &str, id: &str, data: serde_json::Value) -> anyhow::Result<uuid::Uuid> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Authorization", format!("Bearer {token}").as_str());
        self.client.publish_with_headers(INTAKE, headers, task(id, data).into()).await?;
        self.client.flush().await?;
        Ok(job_id(SOURCE, id))
    }

    /// Every message stored under `filter` in `stream`, oldest first (read by
    /// direct get, as a client may).
    pub async fn read_all(&self, stream: &str, filter: &str) -> anyhow::Result<Vec<Stored>> {
        let all = skynet_bus::read::read_all(&self.client, stream, filter, 1).await.map_err(|e| anyhow::anyhow!(e))?;
        Ok(all.into_iter().map(|m| (m.subject, m.headers, m.payload)).collect())
    }

    /// The stream sequence of the first message on `filter` whose type is `ty`.
    pub async fn seq_of(&self, filter: &str, ty: &str) -> anyhow::Result<u64> {
        let stored = skynet_bus::read::read_all(&self.client, "SKYNET_EVENTS", filter, 1)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        stored
            .iter()
            .find(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).is_ok_and(|v| v["type"] == ty))
            .map(|m| m.seq)
            .ok_or_else(|| anyhow::anyhow!("no {ty} on {filter}"))
    }

    /// A job's events as CloudEvent JSON, oldest first.
    pub async fn job_events(&self, job: uuid::Uuid) -> anyhow::Result<Vec<serde_json::Value>> {
        let msgs = self.read_all("SKYNET_EVENTS", &format!("skynet.job.{job}.>")).await?;
        // A message that is not JSON at all (a forged one) is not an event.
        Ok(msgs.iter().filter_map(|(_, _, p)| serde_json::from_slice(p).ok()).collect())
    }

    /// Waits for the job's first event of `ty` (e.g. `skynet.job.dispatched.v1`).
    pub async fn wait_for(&self, job: uuid::Uuid, ty: &str) -> anyhow::Result<serde_json::Value> {
        skynet_testkit::eventually(WAIT, &format!("{ty} of job {job}"), || async {
            self.job_events(job).await.ok()?.into_iter().find(|e| e["type"] == ty)
        })
        .await
    }

    /// Waits until submission number `n` (0-based) of this test has been handled
    /// by the intake: its job exists, or `n` rejections were recorded before it.
    pub async fn wait_for_any(&self, job: uuid::Uuid, n: usize) -> anyhow::Result<()> {
        skynet_testkit::eventually(WAIT, &format!("submission {n} to be handled"), || async {
            let opened = !self.job_events(job).await.ok()?.is_empty();
            let rejected =
                self.read_all("SKYNET_EVENTS", "skynet.task.rejected").await.ok()?.iter().any(|(_, _, p)| {
                    serde_json::from_slice::<serde_json::Value>(p).is_ok_and(|v| v["data"]["job_id"] == job.to_string())
                });
            (opened || rejected).then_some(())
        })
        .await
    }

    /// Who approved the job, in order (from its `approved` events).
    pub async fn approvers(&self, job: uuid::Uuid) -> anyhow::Result<Vec<serde_json::Value>> {
        Ok(self
            .job_events(job)
            .await?
            .iter()
            .filter(|e| e["type"] == "skynet.job.approved.v1")
            .map(|e| e["data"]["approver"].clone())
            .collect())
    }

    /// The types of the job's events, in order.
    pub async fn types(&self, job: uuid::Uuid) -> anyhow::Result<Vec<String>> {
        Ok(self.job_events(job).await?.iter().map(|e| e["type"].as_str().unwrap_or_default().to_owned()).collect())
    }

    /// Serves the HTTP API on a free port (under the `api` role); returns its base URL.
    pub async fn api(&self, config: skynet_api::Config) -> anyhow::Result<String> {
        let nats = self.nats.connect_as("api").await?;
        let js = async_nats::jetstream::new(nats.clone());
        let store = skynet_bus::EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?;
        let principals = std::sync::Arc::new(skynet_bus::principals::Principals::open(&js).await?);
        let deps = skynet_api::Deps { nats, js, store, db: self.db.pool().await?, principals };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = skynet_api::router(config, deps).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(url)
    }

    /// Registers `token` for principal `name` with `roles`, as an operator
    /// does with `skynet principal add` (admin role).
    pub async fn principal(
        &self,
        name: &str,
        token: &str,
        roles: &[skynet_contract::principal::PrincipalRole],
    ) -> anyhow::Result<()> {
        let js = async_nats::jetstream::new(self.nats.connect().await?);
        let store = skynet_bus::principals::Principals::open(&js).await?;
        let p = skynet_contract::principal::Principal { name: name.into(), roles: roles.to_vec() };
        store.put(token, &p).await?;
        Ok(())
    }

    /// The bytes of an object in one of SKYNET's object stores (read as an
    /// operator would, with the server's own credentials).
    pub async fn object(&self, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let js = async_nats::jetstream::new(self.nats.connect().await?);
        let mut obj = js.get_object_store(bucket).await?.get(key).await?;
        let mut bytes = Vec::new();
        obj.read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    /// The stdout of a finished step: inline in its result event, or stored.
    pub async fn step_stdout(&self, job: uuid::Uuid, step: u64) -> anyhow::Result<String> {
        let events = self.job_events(job).await?;
        let done = events
            .iter()
            .find(|e| {
                matches!(e["type"].as_str(), Some("skynet.job.step_succeeded.v1" | "skynet.job.step_failed.v1"))
                    && e["data"]["step"] == step
            })
            .ok_or_else(|| anyhow::anyhow!("step {step} of job {job} has not finished"))?;
        if let Some(text) = done["data"]["stdout"].as_str() {
            return Ok(text.to_owned());
        }
        match done["data"]["output_ref"].as_str() {
            Some(r) => Ok(String::from_utf8(
                self.object(skynet_bus::definitions::OUTPUT_BUCKET, &format!("{r}/stdout")).await?,
            )?),
            None => Ok(String::new()),
        }
    }

    /// Sends a command (or any request) and returns the JSON reply.
    pub async fn request(&self, subject: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let reply = self.client.request(subject.to_owned(), serde_json::to_vec(&body)?.into()).await?;
        Ok(serde_json::from_slice(&reply.payload)?)
    }
}
