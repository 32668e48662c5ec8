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

/// Migrates, then opens the application's pool (the upserter's).
#[tracing::instrument(skip_all)]
pub async fn connect(url: &str) -> Result<DatabaseConnection, PersistenceError> {
    migrate(url).await?;
    let max = if is_sqlite(url) { 4 } else { 16 };
    Ok(Database::connect(options(url, max)?).await?)
}

/// Why the database refused a statement for what it holds (a value too long or not valid text,
/// a constraint), if that is why it failed; `None` when it could not run it at all (down,
/// locked, a deadlock, a serialization conflict): that is retried, a refusal never will pass.
/// The reason is the database's own message, which names no value.
pub fn refusal(e: &DbErr) -> Option<String> {
    use sea_orm::{RuntimeErr, sqlx};
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = e else {
        return None;
    };
    let sqlx::Error::Database(db) = e.as_ref() else {
        return None;
    };
    let code = db.code().unwrap_or_default().to_string();
    let refused = if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        // SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation).
        code.starts_with("22") || code.starts_with("23")
    } else {
        // SQLite's primary result codes (the low byte of an extended one): TOOBIG,
        // CONSTRAINT, MISMATCH, RANGE.
        code.parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
    };
    refused.then(|| format!("{} ({code})", db.message()))
}

/// What `/readyz` reports as the database: the ingress never needs it, so it is looked at
/// only here, connecting on first use (and again after a failure), never migrating, never
/// making an empty SQLite file. The ingress starts, and stays ready, while the database is away.
pub struct Probe {
    url: String,
    pool: tokio::sync::Mutex<Option<DatabaseConnection>>,
}

impl Probe {
    pub fn new(url: &str) -> Self {
        Probe {
            url: url.to_owned(),
            pool: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether the database answers within `within`.
    pub async fn answers(&self, within: Duration) -> bool {
        let look = async {
            let mut pool = self.pool.lock().await;
            if pool.is_none() {
                let mut opt = options(&self.url, 1).ok()?;
                opt.min_connections(0).connect_timeout(within);
                if is_sqlite(&self.url) {
                    opt.map_sqlx_sqlite_opts(|o| o.create_if_missing(false));
                }
                *pool = Some(Database::connect(opt).await.ok()?);
            }
            let ok = ping(pool.as_ref()?).await.is_ok();
            if !ok {
                *pool = None;
            }
            Some(ok)
        };
        matches!(tokio::time::timeout(within, look).await, Ok(Some(true)))
    }
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
