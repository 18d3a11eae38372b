//! A PostgreSQL schema of a test's own, for the tests that run Warmline on
//! PostgreSQL (`#[path]`-included by them; feature `postgres`).

use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn server_url() -> String {
    std::env::var("WARMLINE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Connects to the server, or fails the test saying why.
pub async fn connect(url: &str) -> PgConnection {
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "PostgreSQL at {url} is unreachable: {e}. The store tests need it \
             (set WARMLINE_TEST_POSTGRES_URL to point elsewhere)."
        ),
        Err(_) => panic!(
            "PostgreSQL at {url} did not answer within 10 s. The store tests need it \
             (set WARMLINE_TEST_POSTGRES_URL to point elsewhere)."
        ),
    }
}

/// A schema of the test's own (`wl_test_<hex>`), and the URL that puts the
/// store's connections in it. Dropped, with everything in it, when this is.
pub struct Schema {
    pub name: String,
    pub url: String,
    server: String,
}

impl Schema {
    pub async fn create() -> Schema {
        let server = server_url();
        let name = format!("wl_test_{:016x}", rand::random::<u64>());
        let mut conn = connect(&server).await;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("create schema {name}: {e}"));
        let _ = conn.close().await;
        // libpq's `options` (`-c search_path=...`), and the schema as the
        // application name so the cleanup can find the store's connections.
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-c%20search_path%3D{name}&application_name={name}");
        Schema { name, url, server }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop may run while the test's runtime unwinds: clean up on a thread
        // of its own with a runtime of its own.
        let (server, name) = (self.server.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            runtime.block_on(async move {
                let mut conn = PgConnection::connect(&server).await?;
                // Connections the store left open (a failed test, a pool not
                // closed) would hold locks the DROP waits for.
                sqlx::query(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
                     WHERE application_name = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&name)
                .execute(&mut conn)
                .await?;
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.name),
            Err(_) => eprintln!("dropping test schema {} panicked", self.name),
        }
    }
}
