//! `wx_users`: one row per (appid, openid). The session_key is kept only sealed;
//! `last_event_seq` (the result stream's sequence of the newest applied login) makes upserts
//! idempotent and stops an older event from overwriting a newer session_key.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WxUsers {
    Table,
    Id,
    Appid,
    Openid,
    Unionid,
    SessionKeySealed,
    LoginCount,
    LastEventSeq,
    LastLoginId,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WxUsers::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(WxUsers::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WxUsers::Appid).string_len(32).not_null())
                    .col(ColumnDef::new(WxUsers::Openid).string_len(64).not_null())
                    .col(ColumnDef::new(WxUsers::Unionid).string_len(64).null())
                    .col(ColumnDef::new(WxUsers::SessionKeySealed).text().not_null())
                    .col(ColumnDef::new(WxUsers::LoginCount).big_integer().not_null())
                    .col(
                        ColumnDef::new(WxUsers::LastEventSeq)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WxUsers::LastLoginId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WxUsers::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WxUsers::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("wx_users_appid_openid")
                    .table(WxUsers::Table)
                    .col(WxUsers::Appid)
                    .col(WxUsers::Openid)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("wx_users_unionid")
                    .table(WxUsers::Table)
                    .col(WxUsers::Unionid)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WxUsers::Table).to_owned())
            .await
    }
}
