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
    /// The database answered but a migration failed: retrying will not help.
    #[error("a database migration failed: {0}")]
    Migration(DbErr),
}

impl PersistenceError {
    /// Whether waiting for the database can fix it (it is away), rather than an operator.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PersistenceError::Db(_))
    }
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The login history (`wx_logins`) was just added to a table that had users: the upgrade
    /// needs [`crate::upsert::backfill`] before anything is applied.
    pub login_history_added: bool,
}

/// The migration that introduced `wx_logins`.
const LOGIN_HISTORY: &str = "m20261202_000001_login_history";

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
///
/// Refuses, before changing anything, an upgrade that needs the results stream to backfill
/// (`wxlogin migrate` and the upserter go through [`crate::upsert::prepare`], which does it).
#[tracing::instrument(skip_all)]
pub async fn migrate(url: &str) -> Result<Migrated, PersistenceError> {
    migrate_with(url, false).await
}

/// [`migrate`] for a caller that backfills when told ([`crate::upsert::prepare`]).
pub(super) async fn migrate_with(
    url: &str,
    can_backfill: bool,
) -> Result<Migrated, PersistenceError> {
    let db = Database::connect(options(url, 1)?).await?;
    let pending = Migrator::get_pending_migrations(&db).await?;
    let had_users = match db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT 1 FROM wx_users LIMIT 1",
        ))
        .await
    {
        Ok(row) => row.is_some(),
        // No table yet: a fresh database.
        Err(_) => false,
    };
    let login_history_added = had_users && pending.iter().any(|m| m.name() == LOGIN_HISTORY);
    if login_history_added && !can_backfill {
        db.close().await?;
        return Err(PersistenceError::Migration(DbErr::Custom(
            "this upgrade records the logins already applied from the results stream: run `wxlogin migrate`".into(),
        )));
    }
    Migrator::up(&db, None).await.map_err(|e| match e {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => PersistenceError::Db(e),
        e => PersistenceError::Migration(e),
    })?;
    db.close().await?;
    Ok(Migrated {
        login_history_added,
    })
}

/// The upserter's pool on a migrated database.
pub async fn open(url: &str) -> Result<DatabaseConnection, PersistenceError> {
    let max = if is_sqlite(url) { 4 } else { 16 };
    Ok(Database::connect(options(url, max)?).await?)
}

/// Migrates, then opens the pool: for a database that needs no backfill (a new one, a test's);
/// the roles go through [`crate::upsert::backfill::prepare`], which this refuses to stand in
/// for on an upgrade (see [`migrate`]).
#[tracing::instrument(skip_all)]
pub async fn connect(url: &str) -> Result<DatabaseConnection, PersistenceError> {
    migrate(url).await?;
    open(url).await
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

/// What `/readyz` reports as the database: the ingress never needs it, so it is looked at only
/// here, in the background (at most every few seconds, when asked), never migrated, never made
/// (no empty SQLite file). `/readyz` answers at once from the last look, so a database that
/// hangs cannot make a readiness probe time out; the ingress starts, and stays ready, while the
/// database is away.
pub struct Probe {
    url: String,
    /// 0: not looked yet, 1: answers, 2: does not.
    state: std::sync::atomic::AtomicU8,
    looking: std::sync::atomic::AtomicBool,
    pool: tokio::sync::Mutex<Option<DatabaseConnection>>,
}

impl Probe {
    pub fn new(url: &str) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Probe {
            url: url.to_owned(),
            state: std::sync::atomic::AtomicU8::new(0),
            looking: std::sync::atomic::AtomicBool::new(false),
            pool: tokio::sync::Mutex::new(None),
        })
    }

    /// `ok`, `unavailable`, or `unknown` before the first look ends; starts a look.
    pub fn status(self: &std::sync::Arc<Self>) -> &'static str {
        use std::sync::atomic::Ordering;
        if !self.looking.swap(true, Ordering::AcqRel) {
            let probe = self.clone();
            tokio::spawn(async move {
                let ok = probe.look(Duration::from_secs(2)).await;
                probe.state.store(if ok { 1 } else { 2 }, Ordering::Release);
                // Looks are spaced out however often readiness is asked.
                tokio::time::sleep(Duration::from_secs(2)).await;
                probe.looking.store(false, Ordering::Release);
            });
        }
        match self.state.load(Ordering::Acquire) {
            1 => "ok",
            2 => "unavailable",
            _ => "unknown",
        }
    }

    async fn look(&self, within: Duration) -> bool {
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
