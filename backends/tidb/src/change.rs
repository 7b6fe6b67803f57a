//! The change log (`p8fs_core::change`) in `p8fs_change_heads` (per tenant: the newest cursor,
//! `head`, and the last trimmed one, `floor`) and `p8fs_changes` (keyed by tenant and cursor).
//!
//! Appending: every write calls [`TidbBackend::append`] as the last step of its own transaction,
//! and only once it knows the write happened. It advances the tenant's head with an upsert and
//! inserts its changes under the new numbers. The upsert locks the head row until the commit, so
//! the writes of one tenant take their cursors one after another, in the order they commit, with
//! no gaps; a write that rolls back (a failed check, a lost conflict that is then run again)
//! takes its increment back with it. A SQL sequence or an auto-increment column would not do:
//! their numbers are handed out before the commit, so a reader could pass a number whose write
//! commits later, and they leave gaps behind rollbacks. The lock is taken just before the commit
//! so the per-tenant critical section is a few statements long; writes of different tenants
//! never wait for each other here.
//!
//! Reading: one statement reads the head row and the page of changes (a join), so both come from
//! the same snapshot: a reader never sees a head without the changes of its write, nor a floor
//! from a different moment than the rows. InnoDB takes that snapshot while others commit, so it
//! may for a moment hold a write and not the one that took its cursors just before; a reader
//! returns the changes before such a gap, or waits briefly for it to fill (see [`Page`]).
//!
//! Trimming: the server picks the tenants with work (their oldest stored change was committed
//! before the cutoff, or lies at or below the floor), a page of them per statement, so a trim
//! costs round trips per tenant trimmed, not per tenant that ever wrote. Then per tenant, a short
//! transaction locks the head row (so no change of the tenant commits meanwhile), finds the
//! first change after the floor committed at or after the cutoff and raises the floor to just
//! before it. Readers then never look at or below the floor, so the rows there are deleted
//! afterwards in batches, outside any lock; a trim interrupted between the two steps leaves rows
//! that the next trim deletes.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Transaction, Value};

use p8fs_core::change::check_cursor;
use p8fs_core::{
    Change, ChangeCursor, ChangeEvent, ChangeKind, ChangeLog, ChangeOp, ChangePage, Limit, Result,
    Subject, TenantId, Timestamp, Version,
};

use crate::error::{classify, corrupt};
use crate::schema::{self, bytes};
use crate::{TidbBackend, TxError, sql, transaction};

/// Changes inserted per statement (a `delete_node` may remove many edges).
const INSERT_BATCH: usize = 500;
/// Tenants picked per statement, and changes deleted per statement, when trimming.
const TRIM_BATCH: u64 = 1000;

impl TidbBackend {
    /// Appends `events` to the tenant's log, in order, inside the write's transaction `tx`: the
    /// last thing a write does before its commit (see the module docs). Appends nothing for no
    /// events.
    pub(crate) async fn append(
        &self,
        tx: &mut Transaction<'_>,
        tenant: &TenantId,
        events: &[ChangeEvent],
    ) -> Result<(), TxError> {
        if events.is_empty() {
            return Ok(());
        }
        let at = self.now();
        let n = events.len() as u64;
        tx.exec_drop(sql::CHANGE_HEAD_ADVANCE, (bytes(tenant.as_str()), n))
            .await?;
        let head: Option<u64> = tx
            .exec_first(sql::CHANGE_HEAD_GET, (bytes(tenant.as_str()),))
            .await?;
        let head = head.ok_or_else(|| corrupt("change head"))?;
        // The head was just advanced by `n`, so it is at least `n`.
        let first = head
            .checked_sub(n - 1)
            .filter(|first| *first > 0)
            .ok_or_else(|| corrupt("change head"))?;
        let mut cursor = first;
        for batch in events.chunks(INSERT_BATCH) {
            let mut params = Vec::with_capacity(batch.len() * sql::CHANGES_INSERT_PARAMS);
            for event in batch {
                let [a, b, c] = event.subject.parts();
                params.extend([
                    bytes(tenant.as_str()),
                    Value::from(cursor),
                    Value::from(at),
                    Value::from(event.subject.kind().as_str()),
                    Value::from(event.op.as_str()),
                    bytes(a),
                    bytes(b),
                    bytes(c),
                    Value::from(event.version.map(|v| v.0)),
                ]);
                cursor += 1;
            }
            tx.exec_drop(sql::changes_insert(batch.len()), params)
                .await?;
        }
        Ok(())
    }

    /// Trims one tenant's log (see [`ChangeLog::trim_changes`]), one that
    /// [`sql::CHANGE_TENANTS_TRIMMABLE`] picked; returns how many changes it deleted. A
    /// concurrent trim may have done the work since: then the floor stays and nothing is deleted.
    async fn trim_tenant(&self, tenant: &[u8], before: Timestamp) -> Result<u64> {
        let floor = transaction!(self, tx => {
            let locked: Option<Row> = tx.exec_first(sql::CHANGE_HEAD_LOCK, (tenant,)).await?;
            let mut locked = locked.ok_or_else(|| corrupt("change head"))?;
            let head: u64 = schema::column(&mut locked, 0, "change head")?;
            let floor: u64 = schema::column(&mut locked, 1, "change head")?;
            let kept: Option<u64> = tx
                .exec_first(sql::CHANGES_FIRST_KEPT, (tenant, floor, before))
                .await?;
            // Up to the first change to keep, or the whole log when none is that recent.
            let raised = kept.map_or(head, |seq| seq.saturating_sub(1));
            if raised > floor {
                tx.exec_drop(sql::CHANGE_FLOOR_RAISE, (raised, tenant)).await?;
                raised
            } else {
                floor
            }
        })?;
        let mut removed = 0;
        let mut conn = self.conn().await?;
        loop {
            conn.exec_drop(sql::CHANGES_DELETE_TRIMMED, (tenant, floor, TRIM_BATCH))
                .await
                .map_err(classify)?;
            let affected = conn.affected_rows();
            removed += affected;
            if affected < TRIM_BATCH {
                return Ok(removed);
            }
        }
    }
}

/// How long a reader waits, one wait after another, for the change after its cursor when a
/// later one is already visible (see [`Page::Gap`]); a gap still there after the last wait is
/// damage.
const GAP_WAITS: [std::time::Duration; 5] = [
    std::time::Duration::from_millis(1),
    std::time::Duration::from_millis(5),
    std::time::Duration::from_millis(25),
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(500),
];

/// One read of a page of the log.
enum Page {
    /// Every change after the cursor up to the page's end, none missing.
    Dense(ChangePage),
    /// A change after the cursor was missing while a later one was visible: only the changes
    /// before the gap. A statement's snapshot in InnoDB is taken while other transactions
    /// commit, so for a moment it can hold a write that took its cursor after another write
    /// and not that other one, although the head row's lock made them commit in cursor order.
    /// The missing change is committed or about to be, so the changes before it are final and
    /// a read a moment later fills the gap; one that never fills is damage.
    Gap(ChangePage),
}

impl TidbBackend {
    /// Reads the head row and up to `limit` changes after `after` in one statement, and keeps
    /// the dense run of them (see [`Page`]).
    async fn changes_page(
        &self,
        tenant: &TenantId,
        after: ChangeCursor,
        limit: Limit,
    ) -> Result<Page> {
        let rows: Vec<Row> = self
            .conn()
            .await?
            .exec(
                sql::CHANGES_PAGE,
                (
                    bytes(tenant.as_str()),
                    after.0,
                    limit.get() as u64,
                    bytes(tenant.as_str()),
                ),
            )
            .await
            .map_err(classify)?;
        // No row: the tenant has never written, its log is empty at cursor 0.
        let mut head = ChangeCursor(0);
        let mut floor = ChangeCursor(0);
        let mut rows_with_changes = Vec::with_capacity(rows.len());
        for mut row in rows {
            head = ChangeCursor(schema::column(&mut row, 0, "change head")?);
            floor = ChangeCursor(schema::column(&mut row, 1, "change head")?);
            let seq: Option<u64> = schema::column(&mut row, 2, "change")?;
            if let Some(seq) = seq {
                rows_with_changes.push((seq, row));
            }
        }
        check_cursor(after, floor, head)?;
        let mut changes = Vec::with_capacity(rows_with_changes.len());
        let mut gap = false;
        for (seq, mut row) in rows_with_changes {
            // Cursors are dense and nothing above the floor is ever deleted.
            if seq != after.0 + changes.len() as u64 + 1 || seq > head.0 {
                gap = true;
                break;
            }
            changes.push(change(seq, &mut row)?);
        }
        let next = changes.last().map_or(after, |c| c.cursor);
        let page = ChangePage {
            changes,
            next,
            head,
        };
        Ok(if gap {
            Page::Gap(page)
        } else {
            Page::Dense(page)
        })
    }
}

/// A change from the columns `committed_at, kind, op, a, b, c, version` at 3..=9 of a
/// [`sql::CHANGES_PAGE`] row.
fn change(cursor: u64, row: &mut Row) -> Result<Change> {
    let at: Timestamp = schema::column(row, 3, "change")?;
    let kind: String = schema::column(row, 4, "change")?;
    let op: String = schema::column(row, 5, "change")?;
    let a = schema::text(row, 6, "change")?;
    let b = schema::text(row, 7, "change")?;
    let c = schema::text(row, 8, "change")?;
    let version: Option<u64> = schema::column(row, 9, "change")?;
    let kind = ChangeKind::parse(&kind, "change").map_err(|_| corrupt("change"))?;
    let op = ChangeOp::parse(&op, "change").map_err(|_| corrupt("change"))?;
    let subject = Subject::from_parts(kind, [&a, &b, &c]).map_err(|_| corrupt("change"))?;
    Ok(Change {
        cursor: ChangeCursor(cursor),
        at,
        op,
        subject,
        version: version.map(Version),
    })
}

#[async_trait]
impl ChangeLog for TidbBackend {
    async fn changes(
        &self,
        tenant: &TenantId,
        after: ChangeCursor,
        limit: Limit,
    ) -> Result<ChangePage> {
        let mut waits = GAP_WAITS.iter();
        loop {
            match self.changes_page(tenant, after, limit).await? {
                Page::Dense(page) => return Ok(page),
                Page::Gap(page) if !page.changes.is_empty() => return Ok(page),
                Page::Gap(_) => match waits.next() {
                    Some(wait) => tokio::time::sleep(*wait).await,
                    None => return Err(corrupt("change log")),
                },
            }
        }
    }

    async fn change_heads(&self) -> Result<Vec<(TenantId, ChangeCursor)>> {
        let rows: Vec<Row> = self
            .conn()
            .await?
            .query(sql::CHANGE_HEADS)
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|mut row| {
                let tenant = schema::text(&mut row, 0, "change head")?;
                let tenant = TenantId::new(tenant).map_err(|_| corrupt("change head"))?;
                let head: u64 = schema::column(&mut row, 1, "change head")?;
                Ok((tenant, ChangeCursor(head)))
            })
            .collect()
    }

    async fn trim_changes(&self, before: Timestamp) -> Result<u64> {
        let mut removed = 0;
        let mut after: Vec<u8> = Vec::new();
        loop {
            let rows: Vec<Row> = self
                .conn()
                .await?
                .exec(
                    sql::CHANGE_TENANTS_TRIMMABLE,
                    (Value::Bytes(after.clone()), before, TRIM_BATCH),
                )
                .await
                .map_err(classify)?;
            let fetched = rows.len() as u64;
            for mut row in rows {
                let tenant: Vec<u8> = schema::column(&mut row, 0, "change head")?;
                removed += self.trim_tenant(&tenant, before).await?;
                after = tenant;
            }
            if fetched < TRIM_BATCH {
                return Ok(removed);
            }
        }
    }
}
