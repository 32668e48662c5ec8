//! Phone numbers (`POST /v1/phone`): each user row keeps its newest number sealed under the
//! master key (`phone_sealed`), a keyed hash of it for indexes and lookups (`phone_hash`, never
//! the number), and when it was exchanged (`phone_at_ms`, what "newest" goes by). Nullable
//! columns only: rows of earlier versions are valid as they are, and an upserter of the previous
//! version keeps writing the other columns (it parks phone events: they are results of `v` 2).
//!
//! The index is not unique: WeChat can give the same number to two accounts (a recycled
//! number), and a constraint would make the upserter park a true event.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WxUsers {
    Table,
    Appid,
    PhoneSealed,
    PhoneHash,
    PhoneAtMs,
}

const INDEX: &str = "wx_users_appid_phone_hash";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite runs a migration outside a transaction: each step must find itself done when a
        // failed run is repeated.
        let columns = [
            (
                "phone_sealed",
                ColumnDef::new(WxUsers::PhoneSealed)
                    .text()
                    .null()
                    .to_owned(),
            ),
            (
                "phone_hash",
                ColumnDef::new(WxUsers::PhoneHash)
                    .string_len(64)
                    .null()
                    .to_owned(),
            ),
            (
                "phone_at_ms",
                ColumnDef::new(WxUsers::PhoneAtMs)
                    .big_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ),
        ];
        for (name, mut column) in columns {
            if !manager.has_column("wx_users", name).await? {
                manager
                    .alter_table(
                        Table::alter()
                            .table(WxUsers::Table)
                            .add_column(&mut column)
                            .to_owned(),
                    )
                    .await?;
            }
        }
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(WxUsers::Table)
                    .col(WxUsers::Appid)
                    .col(WxUsers::PhoneHash)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(WxUsers::Table).to_owned())
            .await?;
        for column in [WxUsers::PhoneSealed, WxUsers::PhoneHash, WxUsers::PhoneAtMs] {
            manager
                .alter_table(
                    Table::alter()
                        .table(WxUsers::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
