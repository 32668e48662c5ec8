//! Exact, order-free upserts: `wx_logins` records every applied login by its id (so a login
//! counts once however often, in whatever order and from whichever stream it is delivered), and
//! `wx_users.key_at_ms` stamps the kept session_key with its exchange's time (so "newest" is
//! what the events say, not the order a stream published them in).
//!
//! Backfill: each user's last applied login goes into `wx_logins`, and `key_at_ms` is that
//! login's time (`updated_at`, which the first upserter set to it); the other logins the first
//! upserter applied are recorded from the results stream by `wxlogin::upsert::backfill` (it
//! needs NATS). Upgrade with the old upserters stopped.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WxUsers {
    Table,
    KeyAtMs,
}

#[derive(DeriveIden)]
enum WxLogins {
    Table,
    LoginId,
    Appid,
    Openid,
    FinishedAt,
    StreamSeq,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WxLogins::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(WxLogins::LoginId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WxLogins::Appid).string_len(32).not_null())
                    .col(ColumnDef::new(WxLogins::Openid).string_len(64).not_null())
                    .col(
                        ColumnDef::new(WxLogins::FinishedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WxLogins::StreamSeq).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // SQLite runs a migration outside a transaction: one that failed after this step must
        // find it done when it runs again.
        if !manager.has_column("wx_users", "key_at_ms").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(WxUsers::Table)
                        .add_column(
                            ColumnDef::new(WxUsers::KeyAtMs)
                                .big_integer()
                                .not_null()
                                .default(0),
                        )
                        .to_owned(),
                )
                .await?;
        }
        let db = manager.get_connection();
        let epoch_ms = match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                "CAST(ROUND(EXTRACT(EPOCH FROM updated_at) * 1000) AS BIGINT)"
            }
            // SQLite keeps timestamps as RFC 3339 text, which julianday() reads.
            _ => "CAST(ROUND((julianday(updated_at) - 2440587.5) * 86400000.0) AS INTEGER)",
        };
        // (COALESCE: a time the database cannot read leaves 0, "older than any login".)
        db.execute_unprepared(&format!(
            "UPDATE wx_users SET key_at_ms = COALESCE({epoch_ms}, 0)"
        ))
        .await?;
        // (`WHERE true`: SQLite needs it to read `ON CONFLICT` after a `SELECT`.)
        db.execute_unprepared(
            "INSERT INTO wx_logins (login_id, appid, openid, finished_at, stream_seq) \
             SELECT last_login_id, appid, openid, updated_at, last_event_seq FROM wx_users \
             WHERE true ON CONFLICT (login_id) DO NOTHING",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WxUsers::Table)
                    .drop_column(WxUsers::KeyAtMs)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(WxLogins::Table).to_owned())
            .await
    }
}
