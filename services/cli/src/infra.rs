//! NATS and Postgres for a running system: connect to what is configured, or
//! start/create what is not.

use std::path::PathBuf;

use anyhow::Context;
use skynet_bus::auth::{self, Credential};
use skynet_bus::principals::Principals;
use skynet_bus::server::ManagedServer;
use skynet_contract::principal::{Principal, PrincipalRole};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tracing::{info, warn};

use crate::settings::Settings;

/// Default read-model database when `DATABASE_URL` is not set.
const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/skynet";

/// How this process authenticates to NATS, per role.
#[derive(Debug, Clone)]
pub enum NatsAuth {
    /// A directory with one credential per role: `<role>.creds` (an operator's
    /// JWT credentials) or `<role>.nk` (an nkey seed, as `skynet up` generates).
    Dir(PathBuf),
    /// One credential for every connection of this process (`skynet run
    /// executor` with the executor's credential).
    Single(Credential),
    /// No credential: a server without authorization.
    None,
}

impl NatsAuth {
    /// The credential `role` connects with.
    pub fn credential(&self, role: &str) -> Credential {
        match self {
            NatsAuth::Dir(dir) => {
                let creds = dir.join(format!("{role}.creds"));
                if creds.exists() {
                    Credential::CredsFile(creds)
                } else {
                    Credential::SeedFile(dir.join(format!("{role}.nk")))
                }
            }
            NatsAuth::Single(c) => c.clone(),
            NatsAuth::None => Credential::None,
        }
    }

    /// Whether this process holds the admin role (to create streams and consumers).
    fn has_admin(&self) -> bool {
        match self {
            NatsAuth::Dir(dir) => dir.join("admin.creds").exists() || dir.join("admin.nk").exists(),
            NatsAuth::Single(_) => false,
            NatsAuth::None => true,
        }
    }
}

/// Where NATS is and how to connect to it, the read-model database, and the
/// nats-server we started (stopped on drop).
pub struct Infra {
    pub nats_url: String,
    pub nats_auth: NatsAuth,
    pub db: PgPool,
    /// Keeps our own nats-server alive for as long as the system runs.
    pub managed_nats: Option<ManagedServer>,
    db_url: Option<String>,
}

impl Infra {
    /// Connects to (or starts, secured) NATS, bootstraps the streams when it
    /// holds the admin role, and connects to (or creates) the read-model database.
    pub async fn up(settings: &Settings) -> anyhow::Result<Infra> {
        let (nats_url, nats_auth, managed_nats) = match &settings.nats_url {
            Some(url) => (url.clone(), settings.nats_auth(), None),
            None => {
                let dir = settings.data_dir.join("nats");
                let creds = settings.data_dir.join("nats-creds");
                let server = ManagedServer::start(&dir, &creds, settings.nats_port, settings.durability.into())
                    .context("starting our own nats-server (set SKYNET_NATS_URL to use a running one)")?;
                info!(url = %server.url, store = %dir.display(), creds = %creds.display(), durability = ?settings.durability, "started nats-server");
                (server.url.clone(), NatsAuth::Dir(creds), Some(server))
            }
        };
        let infra = Infra {
            nats_url,
            nats_auth,
            db: lazy_db(settings.database_url.as_deref())?,
            managed_nats,
            db_url: settings.database_url.clone(),
        };
        if infra.nats_auth.has_admin() {
            let admin = infra.connect(auth::ADMIN).await?;
            let js = skynet_bus::bootstrap(&admin)
                .await
                .with_context(|| format!("bootstrapping JetStream on {}", infra.nats_url))?;
            // The first principal: `admin`, holding the configured or generated
            // token (`<data-dir>/api-token`); others come from `skynet principal add`.
            let principals = Principals::open(&js).await.map_err(|e| anyhow::anyhow!(e))?;
            // Its previous token (a rotated SKYNET_API_TOKEN) stops working.
            let first = Principal { name: "admin".into(), roles: vec![PrincipalRole::Admin] };
            principals.remove("admin").await.map_err(|e| anyhow::anyhow!(e))?;
            principals.put(&settings.api_token()?, &first).await.map_err(|e| anyhow::anyhow!(e))?;
        } else {
            info!("no admin credential: using the streams and consumers the operator created (`skynet bootstrap`)");
        }
        Ok(infra)
    }

    /// A connection under `role`, with that role's credential and inbox. A
    /// server that is not reachable yet is waited for (with backoff, saying so)
    /// rather than given up on; a refused credential is an error at once.
    pub async fn connect(&self, role: &str) -> anyhow::Result<async_nats::Client> {
        let name = format!("skynet-{role}");
        let credential = self.nats_auth.credential(role);
        let attempt = || auth::connect(&self.nats_url, &credential, role, &name);
        Ok(attempt
            .retry(ExponentialBuilder::default().with_max_delay(Duration::from_secs(5)).with_max_times(60))
            .when(|e| e.is_unreachable())
            .notify(|e, wait| warn!(url = %self.nats_url, role, error = %e, ?wait, "NATS not reachable yet; waiting"))
            .await?)
    }

    /// The read-model database, once it answers: created when missing (a
    /// concurrent creator is fine), migrated, waited for with backoff while
    /// Postgres is down. Only services that use it call this.
    pub async fn database(&self) -> anyhow::Result<&PgPool> {
        let url = self.db_url.as_deref().unwrap_or(LOCAL_POSTGRES);
        let ready = || async {
            ensure_database(url).await?;
            sqlx::query("SELECT 1").execute(&self.db).await.context("Postgres does not answer")?;
            anyhow::Ok(())
        };
        ready
            .retry(ExponentialBuilder::default().with_max_delay(Duration::from_secs(5)).with_max_times(60))
            .notify(|e, wait| warn!(%url, error = format!("{e:#}"), ?wait, "Postgres not ready yet; waiting"))
            .await?;
        skynet_projector::migrate(&self.db).await.context("applying database migrations")?;
        Ok(&self.db)
    }
}

/// A pool that connects on first use: a service that never touches Postgres
/// never needs it, and one that does waits for it (see [`Infra::database`]).
fn lazy_db(url: Option<&str>) -> anyhow::Result<PgPool> {
    let url = url.unwrap_or(LOCAL_POSTGRES);
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
        .with_context(|| format!("DATABASE_URL {url:?} is not a Postgres URL"))
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
        match sqlx::query(&format!("CREATE DATABASE {quoted}")).execute(&mut admin).await {
            Ok(_) => {}
            // Another process created it between our check and our create.
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        info!(database = %name, "created read-model database");
    }
    Ok(())
}
