//! The change log (`p8fs_core::change`) in `p8fs_change_heads` and `p8fs_changes`
//! (`migrations/0004_changes.sql`).
//!
//! Appending is part of each write: the write's statement (or the last statement of its
//! transaction) increments the tenant's head row and inserts its changes at the new cursors
//! (`append_events` in `sql.rs`), so the change commits or rolls back with the write. The head
//! row stays locked until the write commits, which makes cursors dense and ordered as the commits
//! are; a sequence would not (its numbers are taken before commit, and a reader could pass one
//! whose transaction commits later). The lock is taken as the write's last step, so writers of a
//! tenant wait on each other only for the commit itself.
//!
//! Reading is one statement over the head row and the changes after the cursor, so a page and its
//! head are one snapshot. Retention removes a prefix of each log in batches, each batch removing
//! its changes and raising the floor in one statement.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use p8fs_core::change::check_cursor;
use p8fs_core::{
    Change, ChangeCursor, ChangeEvent, ChangeKind, ChangeLog, ChangeOp, ChangePage, Limit, Result,
    Subject, TenantId, Timestamp, Version,
};

use crate::PgBackend;
use crate::error::{classify, corrupt};
use crate::sql;

/// Changes one retention statement removes at most, so that trimming a long log holds the
/// tenant's head row (which its writers need) only briefly at a time.
const TRIM_BATCH: i64 = 1000;

/// Appends `events` for `tenant`, committed at `at`, in the transaction `connection` is in: the
/// last statement of a write that takes several (it takes the tenant's head-row lock, which is
/// then held until the commit).
pub(crate) async fn append_changes(
    connection: &mut PgConnection,
    tenant: &TenantId,
    at: Timestamp,
    events: &[ChangeEvent],
) -> Result<()> {
    let mut kinds = Vec::with_capacity(events.len());
    let mut ops = Vec::with_capacity(events.len());
    let mut parts: [Vec<&str>; 3] = Default::default();
    let mut versions = Vec::with_capacity(events.len());
    for event in events {
        kinds.push(event.subject.kind().as_str());
        ops.push(event.op.as_str());
        for (column, part) in parts.iter_mut().zip(event.subject.parts()) {
            column.push(part);
        }
        versions.push(event.version.map(|v| version_param(v.0)).transpose()?);
    }
    let [a, b, c] = parts;
    sqlx::query(sql::CHANGE_APPEND)
        .bind(tenant.as_str())
        .bind(at)
        .bind(&kinds)
        .bind(&ops)
        .bind(&a)
        .bind(&b)
        .bind(&c)
        .bind(&versions)
        .execute(&mut *connection)
        .await
        .map_err(classify)?;
    Ok(())
}

/// A version as a `bigint`; versions come from a `bigint` sequence, so a larger one was never
/// issued.
fn version_param(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| corrupt("version"))
}

/// A cursor read from a `bigint` column.
fn cursor(raw: i64) -> Result<ChangeCursor> {
    u64::try_from(raw)
        .map(ChangeCursor)
        .map_err(|_| corrupt("change cursor"))
}

/// A cursor as a `bigint` parameter: one beyond `bigint` compares above every stored cursor.
fn cursor_param(cursor: ChangeCursor) -> i64 {
    i64::try_from(cursor.0).unwrap_or(i64::MAX)
}

/// The change in columns `first..first + 7` of `row`: `cursor, at, kind, op, a, b, c, version`.
/// Stored data that does not decode is `Internal`.
fn change(row: &PgRow, first: usize) -> Result<Change> {
    let raw_cursor: i64 = row.try_get(first).map_err(classify)?;
    let at: i64 = row.try_get(first + 1).map_err(classify)?;
    let kind: String = row.try_get(first + 2).map_err(classify)?;
    let op: String = row.try_get(first + 3).map_err(classify)?;
    let a: String = row.try_get(first + 4).map_err(classify)?;
    let b: String = row.try_get(first + 5).map_err(classify)?;
    let c: String = row.try_get(first + 6).map_err(classify)?;
    let version: Option<i64> = row.try_get(first + 7).map_err(classify)?;
    let kind = ChangeKind::parse(&kind, "kind").map_err(|_| corrupt("change kind"))?;
    Ok(Change {
        cursor: cursor(raw_cursor)?,
        at,
        op: ChangeOp::parse(&op, "op").map_err(|_| corrupt("change operation"))?,
        subject: Subject::from_parts(kind, [&a, &b, &c]).map_err(|_| corrupt("change subject"))?,
        version: version
            .map(|v| u64::try_from(v).map(Version))
            .transpose()
            .map_err(|_| corrupt("change version"))?,
    })
}

#[async_trait]
impl ChangeLog for PgBackend {
    async fn changes(
        &self,
        tenant: &TenantId,
        after: ChangeCursor,
        limit: Limit,
    ) -> Result<ChangePage> {
        let rows = sqlx::query(sql::CHANGES_READ)
            .bind(tenant.as_str())
            .bind(cursor_param(after))
            .bind(limit.get() as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        // No head row: the tenant has never written, its log is empty.
        let (floor, head) = match rows.first() {
            None => (ChangeCursor(0), ChangeCursor(0)),
            Some(row) => (
                cursor(row.try_get(0).map_err(classify)?)?,
                cursor(row.try_get(1).map_err(classify)?)?,
            ),
        };
        check_cursor(after, floor, head)?;
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            // The one row of an empty page has NULL change columns.
            let present: Option<i64> = row.try_get(2).map_err(classify)?;
            if present.is_some() {
                changes.push(change(row, 2)?);
            }
        }
        // Dense cursors: the page is exactly `after + 1 ..`, a gap is a broken log.
        let dense = changes
            .iter()
            .zip(after.0.saturating_add(1)..)
            .all(|(change, expected)| change.cursor.0 == expected);
        if !dense {
            return Err(corrupt("change log (a cursor is missing)"));
        }
        let next = changes.last().map_or(after, |c| c.cursor);
        Ok(ChangePage {
            changes,
            next,
            head,
        })
    }

    async fn change_heads(&self) -> Result<Vec<(TenantId, ChangeCursor)>> {
        let rows = sqlx::query(sql::CHANGE_HEADS)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let tenant: String = row.try_get(0).map_err(classify)?;
                Ok((
                    TenantId::new(tenant).map_err(|_| corrupt("change log tenant"))?,
                    cursor(row.try_get(1).map_err(classify)?)?,
                ))
            })
            .collect()
    }

    async fn trim_changes(&self, before: Timestamp) -> Result<u64> {
        let tenants: Vec<String> = sqlx::query_scalar(sql::CHANGES_TRIMMABLE)
            .bind(before)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let mut removed = 0;
        for tenant in &tenants {
            loop {
                let row = sqlx::query(sql::CHANGES_TRIM)
                    .bind(tenant)
                    .bind(before)
                    .bind(TRIM_BATCH)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(classify)?;
                let done: i64 = row.try_get(0).map_err(classify)?;
                let more: bool = row.try_get(1).map_err(classify)?;
                removed += u64::try_from(done).map_err(|_| corrupt("trim count"))?;
                if !more {
                    break;
                }
            }
        }
        Ok(removed)
    }
}
