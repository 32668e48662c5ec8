//! Database migrations for wxlogin, applied by `wxlogin migrate` and by the upserter (and so
//! `wxlogin up`) before it writes; the ingress and the workers never touch the database.
pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_wx_users;
mod m20261202_000001_login_history;
mod m20261203_000001_phone_numbers;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_wx_users::Migration),
            Box::new(m20261202_000001_login_history::Migration),
            Box::new(m20261203_000001_phone_numbers::Migration),
        ]
    }
}
