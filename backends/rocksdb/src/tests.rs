//! RocksDB-specific behaviour the shared suite cannot see: what survives closing and reopening
//! the database.

use std::sync::Arc;

use serde_json::json;

use p8fs_core::vector::{search, upsert};
use p8fs_core::{
    CollectionName, CollectionSpec, Filter, GraphStore, JsonObject, JsonValue, Key, KvStore, Label,
    Limit, ManualClock, Metric, NodeId, RecordId, TenantId, VectorStore,
};

use crate::{RocksBackend, RocksOptions};

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> RocksBackend {
    RocksBackend::open(dir, clock.clone(), RocksOptions::default()).expect("open")
}

#[tokio::test]
async fn acknowledged_writes_survive_reopen_and_versions_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let tenant = TenantId::new("t").unwrap();
    let key = Key::new("k").unwrap();
    let first = {
        let db = open(dir.path(), &clock);
        db.put(
            &tenant,
            &key,
            &JsonValue::new(json!({"a": 1})).unwrap(),
            None,
        )
        .await
        .unwrap()
    };
    let db = open(dir.path(), &clock);
    let entry = db
        .get(&tenant, &key)
        .await
        .unwrap()
        .expect("record survives");
    assert_eq!(entry.value, json!({"a": 1}));
    assert_eq!(entry.version, first);
    assert!(db.delete(&tenant, &key).await.unwrap());
    drop(db);
    let db = open(dir.path(), &clock);
    let second = db
        .put(&tenant, &key, &JsonValue::new(json!(2)).unwrap(), None)
        .await
        .unwrap();
    assert!(
        second > first,
        "versions increase across restarts and re-creation"
    );
}

#[tokio::test]
async fn vector_collections_and_graph_reload() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let tenant = TenantId::new("t").unwrap();
    let name = CollectionName::new("c").unwrap();
    {
        let db = open(dir.path(), &clock);
        db.create_collection(&tenant, &CollectionSpec::new("c", 2, Metric::L2).unwrap())
            .await
            .unwrap();
        for (id, v) in [("a", [0.0, 0.0]), ("b", [1.0, 0.0]), ("c", [5.0, 5.0])] {
            upsert(
                &db,
                &tenant,
                &name,
                &RecordId::new(id).unwrap(),
                v.to_vec(),
                &JsonObject::empty(),
                None,
            )
            .await
            .unwrap();
        }
        db.put_node(
            &tenant,
            &NodeId::new("n").unwrap(),
            &Label::new("l").unwrap(),
            &JsonObject::empty(),
            None,
        )
        .await
        .unwrap();
    }
    let db = open(dir.path(), &clock);
    let hits = search(
        &db,
        &tenant,
        &name,
        vec![0.9, 0.0],
        Limit::new(2).unwrap(),
        &Filter::none(),
    )
    .await
    .unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["b", "a"]);
    assert!(
        db.get_node(&tenant, &NodeId::new("n").unwrap())
            .await
            .unwrap()
            .is_some()
    );
}
