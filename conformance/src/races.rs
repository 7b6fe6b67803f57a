//! Races over keys that just expired or were deleted (DESIGN.md, "Key-value": `put_if_absent`
//! and `compare_and_swap` are atomic, with exactly one winner among concurrent callers; versions
//! strictly increase per key, across delete and expiry). A backend that checks existence and
//! writes in two steps, or that treats an expired row as present (or a deleted one as still
//! holding its version), lets two callers win or a stale version succeed here.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Barrier;

use p8fs_core::{ErrorKind, Key, Result, Version};

use crate::Harness;
use crate::support::{key, ttl, value};

/// How many callers race.
const RACERS: usize = 16;

/// What one racer calls.
#[derive(Clone, Copy, Debug)]
enum Call {
    PutIfAbsent,
    Swap(Version),
    Put,
}

/// Runs the calls at once (released by one barrier) on key `k`; racer `i` writes
/// `{"racer": i}`. Returns each racer's result, in racer order.
async fn race(h: &Harness, k: &Key, calls: &[Call]) -> Vec<Result<Version>> {
    let barrier = Arc::new(Barrier::new(calls.len()));
    let mut tasks = Vec::new();
    for (i, call) in calls.iter().copied().enumerate() {
        let (b, tenant, k, barrier) = (
            h.backend.clone(),
            h.tenant.clone(),
            k.clone(),
            barrier.clone(),
        );
        let v = value(json!({"racer": i}));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            match call {
                Call::PutIfAbsent => b.put_if_absent(&tenant, &k, &v, None).await,
                Call::Swap(expected) => b.compare_and_swap(&tenant, &k, expected, &v, None).await,
                Call::Put => b.put(&tenant, &k, &v, None).await,
            }
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("racer task"));
    }
    results
}

/// The one winner among `results`: its racer index and version. Every loser failed with one of
/// `losing`.
fn one_winner(results: &[Result<Version>], losing: &[ErrorKind], what: &str) -> (usize, Version) {
    let mut winners = Vec::new();
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(version) => winners.push((i, *version)),
            Err(e) => assert!(
                losing.contains(&e.kind()),
                "{what}: racer {i} lost with {e}, expected one of {losing:?}"
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{what}: exactly one of {} wins, got {winners:?}",
        results.len()
    );
    winners[0]
}

/// Checks that the stored record is the winner's.
async fn stored_is(h: &Harness, k: &Key, winner: usize, version: Version, what: &str) {
    let entry = h
        .b()
        .get(&h.tenant, k)
        .await
        .expect("get")
        .expect("the winner's record is visible");
    assert_eq!(
        (entry.value, entry.version),
        (json!({"racer": winner}), version),
        "{what}: the winner's value and version are stored"
    );
}

/// How the old incarnation of the key ends before a round.
#[derive(Clone, Copy, Debug)]
enum End {
    /// Its ttl runs out exactly now (`now == expires_at`).
    Expires,
    Deleted,
}

/// Writes the key's old incarnation with a ttl of 100 ms and ends it; returns its version.
async fn old_incarnation(h: &Harness, k: &Key, end: End) -> Version {
    let version = h
        .b()
        .put(&h.tenant, k, &value(json!("old")), ttl(100))
        .await
        .expect("put");
    match end {
        End::Expires => {
            h.advance(100);
        }
        End::Deleted => {
            assert!(h.b().delete(&h.tenant, k).await.expect("delete"));
        }
    }
    version
}

pub async fn put_if_absent_races_over_ended_key(h: &Harness) {
    for (round, end) in [End::Expires, End::Deleted, End::Expires, End::Deleted]
        .into_iter()
        .enumerate()
    {
        let what = format!("round {round} ({end:?})");
        let k = key(&format!("device-code-{}", round % 2));
        let old = old_incarnation(h, &k, end).await;
        let results = race(h, &k, &[Call::PutIfAbsent; RACERS]).await;
        let (winner, version) = one_winner(&results, &[ErrorKind::AlreadyExists], &what);
        assert!(version > old, "{what}: {version} > {old}");
        stored_is(h, &k, winner, version, &what).await;
        // End the winner's record too, so the next round over this key starts from a visible
        // record of its own.
        assert!(h.b().delete(&h.tenant, &k).await.expect("delete"));
    }
}

pub async fn creates_and_stale_swaps_race_over_ended_key(h: &Harness) {
    for (round, end) in [End::Expires, End::Deleted].into_iter().enumerate() {
        let what = format!("round {round} ({end:?})");
        let k = key(&format!("refresh-{round}"));
        let old = old_incarnation(h, &k, end).await;
        // Half create, half swap against the version of the incarnation that ended: the swaps
        // can never win (no record, or a newer one), exactly one create does.
        let calls: Vec<Call> = (0..RACERS)
            .map(|i| {
                if i % 2 == 0 {
                    Call::PutIfAbsent
                } else {
                    Call::Swap(old)
                }
            })
            .collect();
        let results = race(h, &k, &calls).await;
        let (winner, version) = one_winner(
            &results,
            &[
                ErrorKind::AlreadyExists,
                ErrorKind::NotFound,
                ErrorKind::Conflict,
            ],
            &what,
        );
        assert_eq!(winner % 2, 0, "{what}: a create wins, never a stale swap");
        assert!(version > old, "{what}: {version} > {old}");
        stored_is(h, &k, winner, version, &what).await;

        // Then swaps against the new version: exactly one wins.
        let results = race(h, &k, &[Call::Swap(version); RACERS]).await;
        let (winner, swapped) = one_winner(&results, &[ErrorKind::Conflict], &what);
        assert!(swapped > version, "{what}: {swapped} > {version}");
        stored_is(h, &k, winner, swapped, &what).await;
    }
}

pub async fn swaps_race_over_ended_key_and_all_lose(h: &Harness) {
    for (round, end) in [End::Expires, End::Deleted].into_iter().enumerate() {
        let what = format!("round {round} ({end:?})");
        let k = key(&format!("code-{round}"));
        let old = old_incarnation(h, &k, end).await;
        let results = race(h, &k, &[Call::Swap(old); RACERS]).await;
        for (i, result) in results.iter().enumerate() {
            assert_eq!(
                result.as_ref().map_err(|e| e.kind()).err(),
                Some(ErrorKind::NotFound),
                "{what}: racer {i} swaps a key with no visible record"
            );
        }
        assert_eq!(h.b().get(&h.tenant, &k).await.expect("get"), None);
    }
}

pub async fn versions_increase_when_puts_and_swaps_race(h: &Harness) {
    let k = key("counter");
    let mut last = h
        .b()
        .put(&h.tenant, &k, &value(json!("start")), None)
        .await
        .expect("put");
    for round in 0..4 {
        let what = format!("round {round}");
        // Half put unconditionally, half swap against the version before the round: every put
        // wins, and at most one swap (only one that runs before any put).
        let calls: Vec<Call> = (0..RACERS)
            .map(|i| {
                if i % 2 == 0 {
                    Call::Put
                } else {
                    Call::Swap(last)
                }
            })
            .collect();
        let results = race(h, &k, &calls).await;
        let mut versions: Vec<(Version, usize)> = Vec::new();
        for (i, result) in results.iter().enumerate() {
            match (calls[i], result) {
                (_, Ok(version)) => versions.push((*version, i)),
                (Call::Swap(_), Err(e)) => assert_eq!(
                    e.kind(),
                    ErrorKind::Conflict,
                    "{what}: a losing swap is a conflict"
                ),
                (call, Err(e)) => panic!("{what}: racer {i} ({call:?}) failed: {e}"),
            }
        }
        let swaps_won = versions.iter().filter(|(_, i)| i % 2 == 1).count();
        assert!(
            swaps_won <= 1,
            "{what}: {swaps_won} swaps of one version won"
        );
        assert_eq!(versions.len(), RACERS / 2 + swaps_won);
        versions.sort();
        for pair in versions.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{what}: two writes got version {}",
                pair[0].0
            );
        }
        let (newest, racer) = *versions.last().expect("puts always win");
        assert!(versions[0].0 > last, "{what}: every version is new");
        // The record kept is the write with the greatest version.
        stored_is(h, &k, racer, newest, &what).await;
        last = newest;
    }
}
