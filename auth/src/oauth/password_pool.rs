//! The bounded pool that runs every argon2 password hash and verification: sign-in, `user add`,
//! `user passwd` and the decoy hash of unknown users all go through [`PasswordPool::run`].
//!
//! Argon2 is made to be expensive in CPU and memory (19 MiB a hash by default), so unbounded
//! hashing would let anonymous sign-ins exhaust both: at most `workers` hashes run at once
//! (one per core by default), at most `queue` more wait for a worker, and anything beyond is
//! refused at once with `Unavailable` (the sign-in page answers 503 with `Retry-After`) instead
//! of waiting. Argon2 works in memory the pool owns, one buffer per worker, allocated on first
//! use and reused by every later hash ([`PasswordPool::run_with_memory`]): the memory argon2
//! uses is `workers` × the memory cost (19 MiB by default), however many sign-ins arrive. (With
//! a fresh buffer per hash the allocator kept freed buffers of many threads resident, and a
//! flood of sign-ins grew the process by hundreds of MiB.)
//!
//! A slot is held by the work itself, not by the request that asked for it: a caller that goes
//! away while its hash runs does not free a worker before the hash ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::Block;
use p8fs_core::error::Source;
use p8fs_core::{Error, Result};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::limits::PASSWORD_HASH_QUEUE;

/// The bounded pool of password hashing. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PasswordPool {
    inner: Arc<Inner>,
}

struct Inner {
    workers: usize,
    queue: usize,
    /// One permit per worker.
    permits: Arc<Semaphore>,
    /// Work admitted and not yet finished: running or waiting for a worker.
    admitted: AtomicUsize,
    /// Argon2 memory not in use: at most one buffer per worker ever exists.
    memory: Mutex<Vec<Vec<Block>>>,
}

impl std::fmt::Debug for PasswordPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordPool")
            .field("workers", &self.inner.workers)
            .field("queue", &self.inner.queue)
            .field("busy", &self.busy())
            .finish()
    }
}

impl Default for PasswordPool {
    /// [`PasswordPool::per_core`].
    fn default() -> Self {
        Self::per_core()
    }
}

impl PasswordPool {
    /// A pool of `workers` concurrent hashes (at least 1) and `queue` waiting ones.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                workers,
                queue,
                permits: Arc::new(Semaphore::new(workers)),
                admitted: AtomicUsize::new(0),
                memory: Mutex::new(Vec::new()),
            }),
        }
    }

    /// One worker per core (as the operating system reports them; 1 if it cannot tell) and a
    /// queue of [`PASSWORD_HASH_QUEUE`].
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::new(cores, PASSWORD_HASH_QUEUE)
    }

    /// Hashes that may run at once.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// Hashes that may wait for a worker.
    pub fn queue(&self) -> usize {
        self.inner.queue
    }

    /// Work admitted and not finished (running or waiting).
    pub fn busy(&self) -> usize {
        self.inner.admitted.load(Ordering::Acquire)
    }

    /// Runs `work` on a blocking thread once a worker is free. `Unavailable` at once, without
    /// running it, when `workers` are busy and `queue` more are waiting.
    pub async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let admission = Admission::enter(&self.inner)?;
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| {
                Error::internal(
                    "the password hashing pool is closed",
                    Some(Box::new(e) as Source),
                )
            })?;
        tokio::task::spawn_blocking(move || {
            // Held until the work ends, even if the caller has gone away.
            let _slot = (permit, admission);
            work()
        })
        .await
        .map_err(|e| {
            Error::internal(
                "a password hashing task failed",
                Some(Box::new(e) as Source),
            )
        })
    }
}

impl PasswordPool {
    /// [`PasswordPool::run`] with an argon2 memory buffer of the pool: `work` may grow it (to
    /// the block count of the parameters it uses) and leaves it to the next hash.
    pub(crate) async fn run_with_memory<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    {
        let inner = self.inner.clone();
        self.run(move || {
            let mut memory = inner.memory.lock().pop().unwrap_or_default();
            let out = work(&mut memory);
            inner.memory.lock().push(memory);
            out
        })
        .await
    }

    /// Argon2 memory the pool keeps between hashes, in bytes (not counting buffers in use).
    pub fn memory_bytes(&self) -> usize {
        self.inner
            .memory
            .lock()
            .iter()
            .map(|m| m.len() * Block::SIZE)
            .sum()
    }
}

/// One admitted piece of work; leaving (on drop) frees its place.
struct Admission {
    inner: Arc<Inner>,
}

impl Admission {
    fn enter(inner: &Arc<Inner>) -> Result<Self> {
        let capacity = inner.workers.saturating_add(inner.queue);
        inner
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .map_err(|_| {
                Error::unavailable(
                    "the server is busy checking passwords; retry in a moment",
                    None,
                )
            })?;
        Ok(Self {
            inner: inner.clone(),
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.inner.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use p8fs_core::ErrorKind;

    use super::PasswordPool;

    /// Waits (without a deadline) until `pool` has `busy` pieces of work admitted.
    async fn until_busy(pool: &PasswordPool, busy: usize) {
        while pool.busy() != busy {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_beyond_the_workers_and_the_queue_is_refused_at_once() {
        let pool = PasswordPool::new(2, 3);
        let mut releases = Vec::new();
        let mut running = Vec::new();
        for _ in 0..5 {
            let (release, wait) = mpsc::channel::<()>();
            releases.push(release);
            let pool = pool.clone();
            running.push(tokio::spawn(async move {
                pool.run(move || wait.recv().is_err()).await
            }));
        }
        until_busy(&pool, 5).await;
        let refused = pool.run(|| ()).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        drop(releases);
        for task in running {
            assert!(task.await.unwrap().unwrap());
        }
        assert_eq!(pool.busy(), 0);
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_goes_away_keeps_its_worker_until_the_work_ends() {
        let pool = PasswordPool::new(1, 0);
        let (release, wait) = mpsc::channel::<()>();
        let (started, has_started) = mpsc::channel::<()>();
        let caller = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    let _ = started.send(());
                    let _ = wait.recv();
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || has_started.recv())
            .await
            .unwrap()
            .unwrap();
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(pool.busy(), 1, "the hash still runs");
        assert_eq!(
            pool.run(|| ()).await.unwrap_err().kind(),
            p8fs_core::ErrorKind::Unavailable
        );
        drop(release);
        until_busy(&pool, 0).await;
        pool.run(|| ()).await.unwrap();
    }

    #[tokio::test]
    async fn a_waiting_caller_that_goes_away_frees_its_place() {
        let pool = PasswordPool::new(1, 1);
        let (release, wait) = mpsc::channel::<()>();
        let first = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || wait.recv().is_err()).await })
        };
        until_busy(&pool, 1).await;
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| ()).await })
        };
        until_busy(&pool, 2).await;
        waiting.abort();
        let _ = waiting.await;
        until_busy(&pool, 1).await;
        drop(release);
        assert!(first.await.unwrap().unwrap());
        until_busy(&pool, 0).await;
    }
}
