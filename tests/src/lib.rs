//! Harness for the system tests: starts the whole system exactly as `skynet up`
//! does (same entry point, same wiring), against a real nats-server and a fresh
//! Postgres database. The tests then talk to it only through public surfaces:
//! NATS subjects with a plain async-nats client, and the read-model database.

use std::path::PathBuf;

use skynet_cli::infra::Infra;
use skynet_cli::settings::{DurabilityArg, Settings};
use skynet_cli::up::{self, Service};
use skynet_testkit::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

/// A running system. Dropping it stops the services, the server and the database.
pub struct System {
    pub nats: NatsServer,
    pub db: TestDb,
    /// A plain client, as any user would have.
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl System {
    /// Starts every service.
    pub async fn start() -> anyhow::Result<System> {
        let nats = NatsServer::start()?;
        let db = TestDb::create().await?;
        let settings = Settings {
            nats_url: Some(nats.url.clone()),
            nats_port: 0,
            durability: DurabilityArg::Fast,
            database_url: Some(db.url.clone()),
            data_dir: PathBuf::from("unused"),
        };
        let infra = Infra::up(&settings).await?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move { up::run(&infra, Service::ALL, token).await });
        let client = nats.connect().await?;
        let js = async_nats::jetstream::new(client.clone());
        Ok(System {
            nats,
            db,
            client,
            js,
            stop,
            task: Some(task),
        })
    }

    /// Stops the services and returns how they ended.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
