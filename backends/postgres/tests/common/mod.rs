//! What the PostgreSQL tests that make databases of their own share.

/// Drops a test's database. `WITH (FORCE)` ends the sessions of this test still open on it; an
/// autovacuum worker that started on the new database belongs to no role, so a non-superuser's
/// FORCE is refused while it runs (42501): it finishes in moments, so the drop is tried again.
pub(crate) async fn drop_scratch_database(admin: &mut sqlx::PgConnection, database: &str) {
    let mut attempt = 0;
    loop {
        let dropped = sqlx::raw_sql(&format!("DROP DATABASE {database} WITH (FORCE)"))
            .execute(&mut *admin)
            .await;
        match dropped {
            Ok(_) => return,
            Err(_) if attempt < 100 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("drop the test's database {database}: {e}"),
        }
    }
}
