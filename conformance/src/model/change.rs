//! The model's change log: one plain log per tenant, appended to under the same lock as the write
//! it records, so a write and its change are one step and a failed write (which returns before
//! appending) leaves nothing. Each log keeps its `head` (the newest cursor ever given out), its
//! `floor` (the last trimmed cursor) and the changes after the floor in cursor order.

use std::collections::{BTreeMap, VecDeque};

use async_trait::async_trait;

use p8fs_core::change::check_cursor;
use p8fs_core::{
    Change, ChangeCursor, ChangeEvent, ChangeLog, ChangePage, Limit, Result, TenantId, Timestamp,
};

use super::ModelBackend;

/// Every tenant's log. A tenant has a log from its first change on, also once all of it is
/// trimmed.
#[derive(Debug, Default)]
pub(super) struct Changes {
    logs: BTreeMap<TenantId, Log>,
}

#[derive(Debug, Default)]
struct Log {
    /// The cursor of the newest change; `0` before the first.
    head: u64,
    /// The last cursor removed by retention; `0` while nothing was.
    floor: u64,
    /// The changes with cursors `floor + 1 ..= head`, in order.
    kept: VecDeque<Change>,
}

impl Changes {
    /// Appends `event` to `tenant`'s log at the next cursor, committed at `at`.
    pub(super) fn append(&mut self, tenant: &TenantId, at: Timestamp, event: ChangeEvent) {
        let log = self.logs.entry(tenant.clone()).or_default();
        log.head += 1;
        log.kept.push_back(Change {
            cursor: ChangeCursor(log.head),
            at,
            op: event.op,
            subject: event.subject,
            version: event.version,
        });
    }
}

#[async_trait]
impl ChangeLog for ModelBackend {
    async fn changes(
        &self,
        tenant: &TenantId,
        after: ChangeCursor,
        limit: Limit,
    ) -> Result<ChangePage> {
        let state = self.state.lock();
        let empty = Log::default();
        let log = state.changes.logs.get(tenant).unwrap_or(&empty);
        let head = ChangeCursor(log.head);
        check_cursor(after, ChangeCursor(log.floor), head)?;
        let changes: Vec<Change> = log
            .kept
            .iter()
            .filter(|c| c.cursor > after)
            .take(limit.get())
            .cloned()
            .collect();
        let next = changes.last().map_or(after, |c| c.cursor);
        Ok(ChangePage {
            changes,
            next,
            head,
        })
    }

    async fn change_heads(&self) -> Result<Vec<(TenantId, ChangeCursor)>> {
        let state = self.state.lock();
        let mut heads: Vec<(TenantId, ChangeCursor)> = state
            .changes
            .logs
            .iter()
            .map(|(tenant, log)| (tenant.clone(), ChangeCursor(log.head)))
            .collect();
        heads.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(heads)
    }

    async fn trim_changes(&self, before: Timestamp) -> Result<u64> {
        let mut state = self.state.lock();
        let mut removed = 0;
        for log in state.changes.logs.values_mut() {
            // Everything before the first change committed at or after `before` goes, also
            // changes after it stamped earlier: what remains is a suffix of the log.
            let keep_from = log
                .kept
                .iter()
                .position(|c| c.at >= before)
                .unwrap_or(log.kept.len());
            for change in log.kept.drain(..keep_from) {
                log.floor = change.cursor.0;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
