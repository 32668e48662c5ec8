//! Database migrations for wxlogin, applied by `wxlogin migrate` and by every role at start.
pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_wx_users;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261121_000001_create_wx_users::Migration)]
    }
}
