//! Following a tenant's change log live: [`Follower`] reads pages after its cursor, hands out
//! the changes its filter accepts one at a time, and when caught up waits on the gateway's
//! [`ChangeSignal`], never past the caller's access-token expiry, at which it ends with
//! `Unauthorized`. Every live front-end (the REST event stream, GraphQL subscriptions) follows
//! the log through it.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::change::{Change, ChangeCursor, ChangeFilter, ChangeSignal, read_filtered};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::types::{Limit, TenantId, Timestamp};

/// One live follower of one tenant's log.
pub struct Follower {
    backend: Arc<dyn Backend>,
    signal: Arc<dyn ChangeSignal>,
    clock: Arc<dyn Clock>,
    tenant: TenantId,
    expires_at: Timestamp,
    filter: ChangeFilter,
    after: ChangeCursor,
    pending: std::vec::IntoIter<Change>,
    done: bool,
}

impl Follower {
    /// A follower of `tenant`'s changes after `after` that pass `filter`, ending at
    /// `expires_at` (milliseconds since the epoch, on `clock`).
    pub fn new(
        backend: Arc<dyn Backend>,
        signal: Arc<dyn ChangeSignal>,
        clock: Arc<dyn Clock>,
        tenant: TenantId,
        expires_at: Timestamp,
        filter: ChangeFilter,
        after: ChangeCursor,
    ) -> Self {
        Follower {
            backend,
            signal,
            clock,
            tenant,
            expires_at,
            filter,
            after,
            pending: Vec::new().into_iter(),
            done: false,
        }
    }

    /// The next change, waiting for one. `None` after the follower has ended: with an
    /// `Unauthorized` error at the expiry, or with the error of a read that failed.
    pub async fn next(&mut self) -> Option<Result<Change>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(change) = self.pending.next() {
                return Some(Ok(change));
            }
            let remaining = self.expires_at.saturating_sub(self.clock.now());
            if remaining <= 0 {
                self.done = true;
                return Some(Err(Error::Unauthorized(
                    "the access token expired; follow again with a fresh one after the last cursor seen"
                        .into(),
                )));
            }
            let page = read_filtered(
                self.backend.as_ref(),
                &self.tenant,
                self.after,
                Limit::MAX,
                &self.filter,
            )
            .await;
            match page {
                Ok(page) => {
                    let caught_up = page.next >= page.head;
                    self.after = page.next;
                    self.pending = page.changes.into_iter();
                    if self.pending.len() == 0 && caught_up {
                        let wait = Duration::from_millis(u64::try_from(remaining).unwrap_or(0));
                        // Woken by the signal, or at the expiry to end.
                        let _ = tokio::time::timeout(
                            wait,
                            self.signal.changed(&self.tenant, self.after),
                        )
                        .await;
                    }
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
    }
}
