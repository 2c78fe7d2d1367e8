//! NATS and Postgres for a running system: connect to what is configured, or
//! start/create what is not.

use anyhow::Context;
use async_nats::jetstream;
use skynet_bus::server::ManagedServer;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tracing::info;

use crate::settings::Settings;

/// Default read-model database when `DATABASE_URL` is not set.
const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/skynet";

/// Live connections, and the nats-server we started (stopped on drop).
pub struct Infra {
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub db: PgPool,
    pub nats_url: String,
    /// Keeps our own nats-server alive for as long as the system runs.
    pub managed_nats: Option<ManagedServer>,
}

impl Infra {
    /// Connects to (or starts) NATS, bootstraps the streams, and connects to
    /// (or creates) the read-model database.
    pub async fn up(settings: &Settings) -> anyhow::Result<Infra> {
        let (nats_url, managed_nats) = match &settings.nats_url {
            Some(url) => (url.clone(), None),
            None => {
                let dir = settings.data_dir.join("nats");
                let server = ManagedServer::start(&dir, settings.nats_port, settings.durability.into())
                    .context("starting our own nats-server (set SKYNET_NATS_URL to use a running one)")?;
                info!(url = %server.url, store = %dir.display(), durability = ?settings.durability, "started nats-server");
                (server.url.clone(), Some(server))
            }
        };
        let nats = async_nats::ConnectOptions::new()
            .name("skynet")
            .connect(&nats_url)
            .await
            .with_context(|| format!("connecting to NATS at {nats_url}"))?;
        let js =
            skynet_bus::bootstrap(&nats).await.with_context(|| format!("bootstrapping JetStream on {nats_url}"))?;
        let db = connect_db(settings.database_url.as_deref()).await?;
        Ok(Infra { nats, js, db, nats_url, managed_nats })
    }
}

/// Connects to `url`, or to the local default, creating its database when missing.
pub async fn connect_db(url: Option<&str>) -> anyhow::Result<PgPool> {
    let url = url.unwrap_or(LOCAL_POSTGRES);
    ensure_database(url).await?;
    let options = PgPoolOptions::new().max_connections(8).acquire_timeout(std::time::Duration::from_secs(5));
    options.connect(url).await.with_context(|| {
        format!("connecting to Postgres at {url} (run `./dev setup` to install or start a local server)")
    })
}

/// Creates the database named in `url` if it does not exist.
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).with_context(|| format!("DATABASE_URL {url:?} is not a URL"))?;
    let name = parsed.path().trim_start_matches('/').to_string();
    if name.is_empty() || name == "postgres" {
        return Ok(());
    }
    let mut admin_url = parsed.clone();
    admin_url.set_path("/postgres");
    let Ok(mut admin) = PgConnection::connect(admin_url.as_str()).await else {
        // No access to the maintenance database: assume the database was provisioned.
        return Ok(());
    };
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut admin)
        .await?;
    if !exists {
        // Identifiers cannot be bound; quote it.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(&format!("CREATE DATABASE {quoted}")).execute(&mut admin).await?;
        info!(database = %name, "created read-model database");
    }
    Ok(())
}
