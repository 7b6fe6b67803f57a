//! Cursors under change (DESIGN.md, "Key-value" `scan`, and the listings of vectors and nodes):
//! a cursor is a position in the raw-byte order, not a snapshot. Between two pages, records are
//! inserted before and after the cursor, records expire, and the record the cursor names itself
//! expires or is deleted; the next page continues strictly after the cursor with what is visible
//! then. So no record appears twice, and none that was visible on both pages is skipped.

use serde_json::json;

use p8fs_core::vector::upsert;
use p8fs_core::{JsonObject, Metric};

use crate::Harness;
use crate::support::{
    collection, key, label, limit, node, object, prefix, record, spec, ttl, value,
};

/// The records before the first page: (id, ttl in ms). `04` (the first page's cursor), `05` and
/// `08` expire between the pages.
const BEFORE: [(&str, Option<i64>); 6] = [
    ("02", None),
    ("04", Some(100)),
    ("05", Some(100)),
    ("06", None),
    ("08", Some(100)),
    ("10", None),
];

/// Written between the pages: two before the cursor, one after it.
const BETWEEN: [&str; 3] = ["01", "03", "07"];

/// The pages expected with a page size of 2: the first before the change, the rest after it.
const PAGES: [&[&str]; 3] = [&["02", "04"], &["06", "07"], &["10"]];

/// One kind of listing, written so the scenario runs the same on each.
trait Listing {
    /// Writes the record `id` with an optional ttl.
    async fn write(&self, h: &Harness, id: &str, ttl_ms: Option<i64>);
    /// Deletes the record `id`; returns whether it was visible.
    async fn remove(&self, h: &Harness, id: &str) -> bool;
    /// One page of at most 2 ids after `after`, and its cursor.
    async fn page(&self, h: &Harness, after: Option<&str>) -> (Vec<String>, Option<String>);
}

/// Checks the pages of `listing` while records change between them.
async fn pages_under_change(h: &Harness, listing: &impl Listing, what: &str) {
    for (id, ttl_ms) in BEFORE {
        listing.write(h, id, ttl_ms).await;
    }
    let (first, cursor) = listing.page(h, None).await;
    assert_eq!(first, PAGES[0], "{what}: first page");
    assert_eq!(
        cursor.as_deref(),
        Some("04"),
        "{what}: the cursor is the last id"
    );

    for id in BETWEEN {
        listing.write(h, id, None).await;
    }
    h.advance(100);

    let mut seen = first;
    let mut after = cursor;
    for (n, expected) in PAGES.iter().enumerate().skip(1) {
        let (items, next) = listing.page(h, after.as_deref()).await;
        assert_eq!(items, *expected, "{what}: page {n}");
        seen.extend(items);
        after = next;
    }
    assert_eq!(after, None, "{what}: the last page has no cursor");
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen, "{what}: no id twice, in order");

    // The cursor's own record deleted between pages: the next page still starts after it.
    let (first, cursor) = listing.page(h, Some("02")).await;
    assert_eq!(first, ["03", "06"], "{what}: page after 02");
    assert_eq!(cursor.as_deref(), Some("06"));
    assert!(listing.remove(h, "06").await, "{what}: 06 was visible");
    listing.write(h, "065", None).await;
    let (next, _) = listing.page(h, cursor.as_deref()).await;
    assert_eq!(
        next,
        ["065", "07"],
        "{what}: the page after a deleted cursor"
    );
}

struct Scan;

impl Listing for Scan {
    async fn write(&self, h: &Harness, id: &str, ttl_ms: Option<i64>) {
        h.b()
            .put(
                &h.tenant,
                &key(&format!("k/{id}")),
                &value(json!(id)),
                ttl_ms.and_then(ttl),
            )
            .await
            .expect("put");
    }

    async fn remove(&self, h: &Harness, id: &str) -> bool {
        h.b()
            .delete(&h.tenant, &key(&format!("k/{id}")))
            .await
            .expect("delete")
    }

    async fn page(&self, h: &Harness, after: Option<&str>) -> (Vec<String>, Option<String>) {
        let after = after.map(|id| key(&format!("k/{id}")));
        let page = h
            .b()
            .scan(&h.tenant, &prefix("k/"), after.as_ref(), limit(2))
            .await
            .expect("scan");
        let strip = |k: &str| k.trim_start_matches("k/").to_owned();
        (
            page.items.iter().map(|e| strip(e.key.as_str())).collect(),
            page.next.map(|k| strip(k.as_str())),
        )
    }
}

struct Vectors;

impl Listing for Vectors {
    async fn write(&self, h: &Harness, id: &str, ttl_ms: Option<i64>) {
        upsert(
            h.b(),
            &h.tenant,
            &collection("c"),
            &record(id),
            vec![1.0, 2.0],
            &object(json!({"id": id})),
            ttl_ms.and_then(ttl),
        )
        .await
        .expect("upsert");
    }

    async fn remove(&self, h: &Harness, id: &str) -> bool {
        h.b()
            .delete_vector(&h.tenant, &collection("c"), &record(id))
            .await
            .expect("delete_vector")
    }

    async fn page(&self, h: &Harness, after: Option<&str>) -> (Vec<String>, Option<String>) {
        let after = after.map(record);
        let page = h
            .b()
            .list_vectors(&h.tenant, &collection("c"), after.as_ref(), limit(2))
            .await
            .expect("list_vectors");
        (
            page.items.into_iter().map(|r| r.id.into_string()).collect(),
            page.next.map(|id| id.into_string()),
        )
    }
}

struct Nodes;

impl Listing for Nodes {
    async fn write(&self, h: &Harness, id: &str, ttl_ms: Option<i64>) {
        h.b()
            .put_node(
                &h.tenant,
                &node(id),
                &label("thing"),
                &JsonObject::empty(),
                ttl_ms.and_then(ttl),
            )
            .await
            .expect("put_node");
    }

    async fn remove(&self, h: &Harness, id: &str) -> bool {
        h.b()
            .delete_node(&h.tenant, &node(id))
            .await
            .expect("delete_node")
    }

    async fn page(&self, h: &Harness, after: Option<&str>) -> (Vec<String>, Option<String>) {
        let after = after.map(node);
        let page = h
            .b()
            .list_nodes(&h.tenant, after.as_ref(), limit(2))
            .await
            .expect("list_nodes");
        (
            page.items.into_iter().map(|n| n.id.into_string()).collect(),
            page.next.map(|id| id.into_string()),
        )
    }
}

pub async fn scan_cursor_under_change(h: &Harness) {
    pages_under_change(h, &Scan, "scan").await;
}

pub async fn list_vectors_cursor_under_change(h: &Harness) {
    h.b()
        .create_collection(&h.tenant, &spec("c", 2, Metric::L2))
        .await
        .expect("create");
    pages_under_change(h, &Vectors, "list_vectors").await;
}

pub async fn list_nodes_cursor_under_change(h: &Harness) {
    pages_under_change(h, &Nodes, "list_nodes").await;
}
