//! Retention of the change log (`ChangeLog::trim_changes`): a trim removes, per tenant, the prefix
//! of the log before its first change committed at or after `before`, and returns how many it
//! removed; the last removed cursor becomes the tenant's floor, so reading after an older cursor
//! is `Gone` naming the floor while reading after the floor works; heads never go back, also when
//! a trim removed everything; cursors keep counting. Also here, because they act on every tenant
//! too: purges and reaps append nothing.
//!
//! `trim_changes` removes every tenant's old changes on a shared SQL server, so these scenarios
//! run in [`crate::Purging::Exclusive`] mode, like the purges: their clocks run a month before
//! [`START`], where no shared case writes, and every trim is before [`START`]. Each first trims
//! at `START - 1` what earlier exclusive cases left ([`clean_slate`]), so the counts a later trim
//! returns are the case's own.

use serde_json::json;

use p8fs_core::change::ChangeCursor;
use p8fs_core::vector::upsert;
use p8fs_core::{
    Clock, Error, JsonObject, Limit, Metric, ObjectAttributes, Precondition, ReapPolicy, TenantId,
    Timestamp,
};

use crate::change::{
    Expected, assert_bad_after, bucket_s, collection_s, edge_s, kv_s, node_s, object_s, page,
    vector_s,
};
use crate::object::{bucket, make_bucket, okey, put_with, write_data};
use crate::support::{collection, key, label, limit, node, record, rel, spec, ttl, value, weight};
use crate::{Harness, START};

/// Trims, before [`START`], whatever earlier exclusive cases left on a shared server.
async fn clean_slate(h: &Harness) {
    h.b()
        .trim_changes(START - 1)
        .await
        .expect("trim what earlier exclusive cases left");
}

async fn trim(h: &Harness, before: Timestamp) -> u64 {
    assert!(
        before < START,
        "a trim never reaches a shared case's changes"
    );
    h.b().trim_changes(before).await.expect("trim_changes")
}

async fn put(h: &Harness, log: &mut Expected, k: &str) {
    let v = h
        .b()
        .put(log.tenant(), &key(k), &value(json!(k)), None)
        .await
        .expect("put");
    log.put(h, kv_s(k), Some(v));
}

/// Asserts that reading `tenant`'s log after `after` is `Gone` naming `oldest`.
async fn assert_gone(h: &Harness, tenant: &TenantId, after: u64, oldest: u64, what: &str) {
    match h.b().changes(tenant, ChangeCursor(after), limit(10)).await {
        Err(Error::Gone { oldest: got }) if got == ChangeCursor(oldest) => {}
        other => panic!(
            "{what}: reading after {after}: expected Gone {{ oldest: {oldest} }}, got {other:?}"
        ),
    }
}

/// Asserts that the log read after `floor` is what is expected after it, up to the head.
async fn assert_from(h: &Harness, log: &Expected, floor: u64, what: &str) {
    let read = page(h.b(), log.tenant(), floor, Limit::MAX)
        .await
        .unwrap_or_else(|e| panic!("{what}: reading after the floor {floor}: {e}"));
    assert_eq!(
        (read.changes.as_slice(), read.head.0),
        (log.after(floor), log.head()),
        "{what}: the log after the floor {floor}, and the head"
    );
}

async fn heads(h: &Harness, tenants: &[&TenantId]) -> Vec<(String, u64)> {
    h.b()
        .change_heads()
        .await
        .expect("change_heads")
        .into_iter()
        .filter(|(t, _)| tenants.contains(&t))
        .map(|(t, head)| (t.into_string(), head.0))
        .collect()
}

pub async fn trim_keeps_a_suffix(h: &Harness) {
    clean_slate(h).await;
    let t0 = h.clock.now();
    let mut mine = Expected::new(&h.tenant);
    let mut other = Expected::new(&h.other);
    for k in ["k1", "k2", "k3"] {
        put(h, &mut mine, k).await;
    }
    put(h, &mut other, "o1").await;
    h.advance(10);
    put(h, &mut mine, "k4").await;
    put(h, &mut mine, "k5").await;
    h.advance(5);
    put(h, &mut other, "o2").await;
    h.advance(5);
    put(h, &mut mine, "k6").await;
    mine.check(h, "writes at three times").await;
    other.check(h, "writes at two times").await;

    assert_eq!(trim(h, t0).await, 0, "nothing was committed before t0");
    mine.check(h, "a trim that removed nothing").await;
    other.check(h, "a trim that removed nothing").await;

    // Up to, not including, the first change at or after t0 + 10: k1..k3 and o1.
    assert_eq!(
        trim(h, t0 + 10).await,
        4,
        "three changes of one tenant, one of the other"
    );
    for after in [0, 1, 2] {
        assert_gone(h, &h.tenant, after, 3, "a cursor before the floor").await;
    }
    assert_from(h, &mine, 3, "after the trim").await;
    assert_gone(h, &h.other, 0, 1, "the other tenant, before its own floor").await;
    assert_from(h, &other, 1, "the other tenant after the trim").await;
    let paged = page(h.b(), &h.tenant, 3, limit(2)).await.expect("changes");
    assert_eq!(
        (paged.changes.as_slice(), paged.next.0, paged.head.0),
        (&mine.after(3)[..2], 5, 6),
        "pages after the floor"
    );
    assert_eq!(
        trim(h, t0 + 10).await,
        0,
        "the same trim again removes nothing"
    );
    assert_from(h, &mine, 3, "after the same trim again").await;

    // Everything: the heads stay, readers at the head read empty pages, and a cursor beyond the
    // head is still refused.
    assert_eq!(trim(h, t0 + 21).await, 4, "the rest of both logs");
    assert_gone(h, &h.tenant, 5, 6, "a cursor before the head, all trimmed").await;
    assert_from(h, &mine, 6, "everything trimmed").await;
    assert_from(h, &other, 2, "everything trimmed").await;
    assert_bad_after(
        h.b().changes(&h.tenant, ChangeCursor(7), limit(10)).await,
        "a cursor beyond the head of a trimmed log",
    );
    let mut expected = vec![
        (h.tenant.as_str().to_owned(), 6),
        (h.other.as_str().to_owned(), 2),
    ];
    expected.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    assert_eq!(
        heads(h, &[&h.tenant, &h.other]).await,
        expected,
        "tenants whose logs were trimmed whole keep their heads"
    );

    // Cursors keep counting after the floor.
    h.advance(1);
    put(h, &mut mine, "k7").await;
    assert_from(h, &mine, 6, "a write after everything was trimmed").await;
    assert_eq!(mine.after(6)[0].cursor, ChangeCursor(7));
    assert_eq!(trim(h, START - 1).await, 1, "the new change");
    assert_from(h, &mine, 7, "trimmed again").await;
    assert_gone(h, &h.tenant, 6, 7, "the floor moved to the new change").await;
}

/// A clock that goes back (gateways whose clocks disagree) stamps a later change earlier: a trim
/// still removes only the prefix before the first change at or after its time, so what remains
/// is a suffix and no reader's cursor has a hole after it.
pub async fn trim_keeps_a_suffix_when_clocks_disagree(h: &Harness) {
    clean_slate(h).await;
    let t0 = h.clock.now();
    let mut log = Expected::new(&h.tenant);
    put(h, &mut log, "a").await;
    h.clock.set(t0 + 20);
    put(h, &mut log, "b").await;
    h.clock.set(t0 + 5);
    put(h, &mut log, "c").await;
    h.clock.set(t0 + 30);
    put(h, &mut log, "d").await;
    log.check(h, "writes stamped out of order").await;

    assert_eq!(
        trim(h, t0 + 10).await,
        1,
        "only a: b is the first change at or after t0 + 10, c stays behind it"
    );
    assert_gone(h, &h.tenant, 0, 1, "a trimmed cursor").await;
    assert_from(h, &log, 1, "a suffix of the log").await;
    assert_eq!(
        trim(h, t0 + 25).await,
        2,
        "b and c: d is the first change at or after t0 + 25"
    );
    assert_gone(h, &h.tenant, 1, 3, "a trimmed cursor").await;
    assert_from(h, &log, 3, "a suffix of the log").await;
}

/// Expiry, `purge_expired` and `reap_objects` append nothing, whatever they remove.
pub async fn purge_and_reap_append_nothing(h: &Harness) {
    let (b, t) = (h.b(), &h.tenant);
    let mut log = Expected::new(t);
    let props = &JsonObject::empty();

    put(h, &mut log, "kept").await;
    let v = b
        .put(t, &key("brief"), &value(json!(1)), ttl(10))
        .await
        .expect("put");
    log.put(h, kv_s("brief"), Some(v));
    b.create_collection(t, &spec("c", 2, Metric::L2))
        .await
        .expect("create_collection");
    log.put(h, collection_s("c"), None);
    upsert(
        b,
        t,
        &collection("c"),
        &record("r"),
        vec![1.0, 2.0],
        props,
        ttl(10),
    )
    .await
    .expect("upsert");
    log.put(h, vector_s("c", "r"), None);
    for (id, t_ms) in [("n", Some(10)), ("m", None)] {
        b.put_node(t, &node(id), &label("l"), props, t_ms.and_then(ttl))
            .await
            .expect("put_node");
        log.put(h, node_s(id), None);
    }
    b.put_edge(
        t,
        &node("m"),
        &rel("r"),
        &node("n"),
        weight(1.0),
        props,
        None,
    )
    .await
    .expect("put_edge");
    log.put(h, edge_s("m", "r", "n"), None);

    // Objects: one expiring, one replaced (its first blob freed), an upload left open and a blob
    // never committed, all of which the reaper removes.
    make_bucket(h, t, "bkt").await;
    log.put(h, bucket_s("bkt"), None);
    let expiry = h.clock.now() + 10;
    put_with(
        h,
        t,
        "bkt",
        "brief",
        b"x",
        Some(expiry),
        &Precondition::None,
    )
    .await
    .expect("put_object");
    log.put(h, object_s("bkt", "brief"), None);
    for content in [b"one", b"two"] {
        put_with(h, t, "bkt", "replaced", content, None, &Precondition::None)
            .await
            .expect("put_object");
        log.put(h, object_s("bkt", "replaced"), None);
    }
    let upload = b
        .create_upload(
            t,
            &bucket("bkt"),
            &okey("open"),
            &ObjectAttributes::default(),
            None,
        )
        .await
        .expect("create_upload");
    let part = write_data(h, t, b"part").await;
    b.put_part(
        t,
        &bucket("bkt"),
        upload.id,
        &crate::object::part_of(h, 1, &part),
    )
    .await
    .expect("put_part");
    write_data(h, t, b"never committed").await;
    log.check(h, "writes of every kind").await;

    h.advance(100);
    log.check(h, "expiry").await;
    b.purge_expired().await.expect("purge_expired");
    log.check(h, "purge_expired").await;
    let now = h.clock.now();
    assert!(now < START, "the reap's policy never reaches a shared case");
    b.reap_objects(ReapPolicy {
        abandoned_before: now,
        freed_before: now,
    })
    .await
    .expect("reap_objects");
    log.check(h, "reap_objects").await;
    assert_eq!(
        b.upload(t, &bucket("bkt"), upload.id)
            .await
            .expect("upload"),
        None,
        "the reap removed the open upload"
    );
    assert!(!b.delete(t, &key("brief")).await.expect("delete"));
    assert!(!b.delete_node(t, &node("n")).await.expect("delete_node"));
    log.check(h, "deletes of purged records").await;
}
