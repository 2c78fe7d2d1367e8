//! A fresh Postgres database per test, dropped afterwards.
//!
//! The server is `$SKYNET_TEST_DATABASE_URL`, else `$DATABASE_URL`, else the local
//! server on 127.0.0.1:5432 as user `postgres` (what `./dev setup` provides).

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// A database that exists for the lifetime of this value.
pub struct TestDb {
    /// Connection URL of the fresh database.
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates an empty database with a unique name.
    pub async fn create() -> anyhow::Result<TestDb> {
        let admin_url = admin_url();
        let name = format!("skynet_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .with_context(|| format!("connecting to Postgres at {admin_url} (run `./dev setup`?)"))?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
        let mut url = url::Url::parse(&admin_url)?;
        url.set_path(&name);
        Ok(TestDb { url: url.to_string(), name, admin_url })
    }

    /// A pool on the fresh database.
    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new().max_connections(5).connect(&self.url).await?)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside any async context we can rely on; a short-lived
        // thread with its own runtime drops the database.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

fn admin_url() -> String {
    std::env::var("SKYNET_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}
