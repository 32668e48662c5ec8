//! The database: connection (SQLite in WAL mode with a busy timeout, or PostgreSQL) and
//! migrations. The `wx_users` upsert that the consumer and replays share is in
//! [`super::users`].

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    /// The database could not be reached or refused the statement; the caller retries later.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("unsupported database URL (use sqlite://… or postgres://…)")]
    UnsupportedUrl,
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

fn options(url: &str, max_connections: u32) -> Result<ConnectOptions, PersistenceError> {
    if !(is_sqlite(url) || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(PersistenceError::UnsupportedUrl);
    }
    let mut opt = ConnectOptions::new(url.to_string());
    opt.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    if is_sqlite(url) {
        // Without WAL and a busy timeout, concurrent writers fail with "database is locked".
        opt.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .create_if_missing(true)
        });
    }
    Ok(opt)
}

/// Applies pending migrations on a pool of its own. Migrating on the application's
/// multi-connection SQLite pool made later upserts fail intermittently (see stack notes).
#[tracing::instrument(skip_all)]
pub async fn migrate(url: &str) -> Result<(), PersistenceError> {
    let db = Database::connect(options(url, 1)?).await?;
    Migrator::up(&db, None).await?;
    db.close().await?;
    Ok(())
}

/// Migrates, then opens the application's pool.
#[tracing::instrument(skip_all)]
pub async fn connect(url: &str) -> Result<DatabaseConnection, PersistenceError> {
    migrate(url).await?;
    let max = if is_sqlite(url) { 4 } else { 16 };
    Ok(Database::connect(options(url, max)?).await?)
}

/// Cheap liveness probe for `/readyz`.
pub async fn ping(db: &DatabaseConnection) -> Result<(), PersistenceError> {
    db.execute_unprepared("SELECT 1").await?;
    Ok(())
}

/// A redacted form of a database URL for logs: scheme, host and database, no password.
pub fn describe_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if !is_sqlite(url) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.path()
        ),
        _ => url.split('?').next().unwrap_or(url).to_string(),
    }
}
