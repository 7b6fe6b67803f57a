//! Key-value (DESIGN.md, "Key-value" and "Orderings, equality and predicates"): versioned
//! put/get/delete, `put_if_absent` and `compare_and_swap` (also under concurrency), keys ordered
//! by raw UTF-8 bytes, prefix scans with cursors, and `find_by_field`'s JSON equality.

use std::fmt::Debug;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Barrier;

use p8fs_core::kv::{KvPage, find_by_field};
use p8fs_core::{ErrorKind, Key, KeyPrefix, KvEntry, Limit, Result, Version};

use crate::Harness;
use crate::support::{key, limit, operand, path, prefix, value};

/// How many callers race in the atomicity scenarios.
const RACERS: usize = 16;

fn keys_of(entries: &[KvEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.key.as_str()).collect()
}

fn error_kind<T: Debug>(result: Result<T>, what: &str) -> ErrorKind {
    result.expect_err(what).kind()
}

async fn put(h: &Harness, k: &str, v: Value) -> Version {
    h.b()
        .put(&h.tenant, &key(k), &value(v), None)
        .await
        .expect("put succeeds")
}

async fn get(h: &Harness, k: &str) -> Option<KvEntry> {
    h.b().get(&h.tenant, &key(k)).await.expect("get succeeds")
}

/// Every page of a scan, following cursors; checks that each cursor is the last key of its page.
async fn scan_pages(
    h: &Harness,
    pre: &KeyPrefix,
    after: Option<&str>,
    page: Limit,
) -> Vec<Vec<String>> {
    let mut after = after.map(key);
    let mut pages = Vec::new();
    loop {
        let KvPage { items, next } = h
            .b()
            .scan(&h.tenant, pre, after.as_ref(), page)
            .await
            .expect("scan succeeds");
        assert!(
            items.len() <= page.get(),
            "a page holds at most `limit` entries"
        );
        pages.push(keys_of(&items).into_iter().map(str::to_owned).collect());
        match next {
            Some(cursor) => {
                assert_eq!(
                    Some(&cursor),
                    items.last().map(|e| &e.key),
                    "the cursor is the last key of its page"
                );
                after = Some(cursor);
            }
            None => return pages,
        }
        assert!(pages.len() <= 1000, "scan does not terminate");
    }
}

/// All keys under a prefix, in one page of the maximum size.
async fn scan_keys(h: &Harness, pre: &str, after: Option<&str>) -> Vec<String> {
    let after = after.map(key);
    let page = h
        .b()
        .scan(&h.tenant, &prefix(pre), after.as_ref(), Limit::MAX)
        .await
        .expect("scan succeeds");
    assert!(
        page.next.is_none(),
        "a scan with room to spare has no cursor"
    );
    keys_of(&page.items)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Keys holding `operand` at `at`, in one page of the maximum size.
async fn find_keys(h: &Harness, at: &str, operand_value: Value) -> Vec<String> {
    let page = find_by_field(
        h.b(),
        &h.tenant,
        &path(at),
        &operand(operand_value),
        None,
        Limit::MAX,
    )
    .await
    .expect("find_by_field succeeds");
    assert!(
        page.next.is_none(),
        "a find with room to spare has no cursor"
    );
    keys_of(&page.items)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

pub async fn put_then_get_returns_value_and_version(h: &Harness) {
    let v =
        json!({"text": "hello", "list": [1, 2.5, null, true, "x"], "nested": {"deep": {"x": -7}}});
    let version = put(h, "greeting", v.clone()).await;
    let entry = get(h, "greeting")
        .await
        .expect("the record just written is visible");
    assert_eq!(entry.key, key("greeting"), "get returns the key");
    assert_eq!(entry.value, v, "get returns the value as written");
    assert_eq!(
        entry.version, version,
        "get returns the version that put returned"
    );
    assert_eq!(entry.expires_at, None, "a put without ttl never expires");

    for scalar in [
        json!("just a string"),
        json!(42),
        json!(-1.25),
        json!(false),
        json!(null),
        json!([]),
    ] {
        put(h, "scalar", scalar.clone()).await;
        let entry = get(h, "scalar").await.expect("visible");
        assert_eq!(
            entry.value, scalar,
            "any JSON value round-trips, not only objects"
        );
    }
}

pub async fn put_replaces_and_versions_increase(h: &Harness) {
    let mut last: Option<Version> = None;
    for i in 0..5 {
        let version = put(h, "counter", json!({"i": i})).await;
        if let Some(previous) = last {
            assert!(
                version > previous,
                "put {i}: version {version} must exceed {previous}"
            );
        }
        last = Some(version);
    }
    let entry = get(h, "counter").await.expect("visible");
    assert_eq!(entry.value, json!({"i": 4}), "the last put wins");
    assert_eq!(Some(entry.version), last, "get returns the latest version");
}

pub async fn versions_increase_across_delete_and_recreate(h: &Harness) {
    let k = key("token");
    let v1 = put(h, "token", json!(1)).await;
    assert!(
        h.b().delete(&h.tenant, &k).await.expect("delete"),
        "the record existed"
    );
    let v2 = put(h, "token", json!(2)).await;
    assert!(
        v2 > v1,
        "a re-created key gets a greater version ({v2} vs {v1})"
    );
    assert!(
        h.b().delete(&h.tenant, &k).await.expect("delete"),
        "the record existed"
    );
    let v3 = h
        .b()
        .put_if_absent(&h.tenant, &k, &value(json!(3)), None)
        .await
        .expect("put_if_absent on a deleted key");
    assert!(
        v3 > v2,
        "put_if_absent after delete gets a greater version ({v3} vs {v2})"
    );

    for stale in [v1, v2] {
        let kind = error_kind(
            h.b()
                .compare_and_swap(&h.tenant, &k, stale, &value(json!("stale")), None)
                .await,
            "a compare-and-swap against an earlier incarnation must fail",
        );
        assert_eq!(
            kind,
            ErrorKind::Conflict,
            "stale version {stale} of an earlier incarnation"
        );
    }
    let entry = get(h, "token").await.expect("visible");
    assert_eq!(
        (entry.value, entry.version),
        (json!(3), v3),
        "failed swaps changed nothing"
    );
}

pub async fn get_missing_is_none(h: &Harness) {
    assert_eq!(
        get(h, "never-written").await,
        None,
        "a key never written is absent"
    );
    put(h, "ab", json!(1)).await;
    assert_eq!(
        get(h, "a").await,
        None,
        "a prefix of an existing key is a different key"
    );
    assert_eq!(
        get(h, "abc").await,
        None,
        "an extension of an existing key is a different key"
    );
    assert_eq!(get(h, "AB").await, None, "keys are case-sensitive");
    assert_eq!(get(h, "ab ").await, None, "trailing spaces are significant");
}

/// `get_text` (the value as JSON text, for front-ends that answer without re-encoding it) is
/// `get` with the value written out compactly by `serde_json`, byte for byte.
pub async fn get_text_is_get_written_out(h: &Harness) {
    let values = [
        json!({"text": "héllo \u{1F600} \"quoted\"", "z": 1, "a": [1, 2.5, null, true]}),
        json!({"nested": {"deep": {"x": -7, "y": 1e-7, "big": 12345678901234567_u64}}}),
        json!(0.1),
        json!("just a string"),
        json!(null),
        json!([]),
    ];
    for (i, v) in values.into_iter().enumerate() {
        let k = key(&format!("text-{i}"));
        let ttl = if i % 2 == 0 {
            None
        } else {
            crate::support::ttl(3_600_000)
        };
        h.b()
            .put(&h.tenant, &k, &value(v.clone()), ttl)
            .await
            .expect("put succeeds");
        let entry = h
            .b()
            .get(&h.tenant, &k)
            .await
            .expect("get")
            .expect("visible");
        let text = h
            .b()
            .get_text(&h.tenant, &k)
            .await
            .expect("get_text succeeds")
            .expect("visible to get_text too");
        assert_eq!(
            text.value.as_str(),
            serde_json::to_string(&entry.value).expect("serialize"),
            "the text is the value written out"
        );
        assert_eq!(
            serde_json::from_str::<Value>(text.value.as_str()).expect("parses"),
            v,
            "the text parses back to the value as written"
        );
        assert_eq!(text.version, entry.version, "the same version");
        assert_eq!(text.expires_at, entry.expires_at, "the same expiry");
    }
    assert!(
        h.b()
            .get_text(&h.tenant, &key("never-written"))
            .await
            .expect("get_text succeeds")
            .is_none(),
        "a key never written is absent"
    );
}

pub async fn delete_reports_whether_visible(h: &Harness) {
    let k = key("doomed");
    assert!(
        !h.b().delete(&h.tenant, &k).await.expect("delete"),
        "nothing to delete yet"
    );
    put(h, "doomed", json!("x")).await;
    put(h, "survivor", json!("y")).await;
    assert!(
        h.b().delete(&h.tenant, &k).await.expect("delete"),
        "the record was visible"
    );
    assert_eq!(get(h, "doomed").await, None, "a deleted record is absent");
    assert!(
        !h.b().delete(&h.tenant, &k).await.expect("delete"),
        "a second delete finds nothing"
    );
    assert!(
        get(h, "survivor").await.is_some(),
        "delete touches only its key"
    );
}

pub async fn put_if_absent_creates_once(h: &Harness) {
    let k = key("once");
    let v1 = h
        .b()
        .put_if_absent(&h.tenant, &k, &value(json!(1)), None)
        .await
        .expect("the first put_if_absent creates");
    let entry = get(h, "once").await.expect("visible");
    assert_eq!(
        (entry.value, entry.version),
        (json!(1), v1),
        "put_if_absent stored its value"
    );

    let kind = error_kind(
        h.b()
            .put_if_absent(&h.tenant, &k, &value(json!(2)), None)
            .await,
        "a second put_if_absent must fail",
    );
    assert_eq!(kind, ErrorKind::AlreadyExists);
    let entry = get(h, "once").await.expect("visible");
    assert_eq!(
        (entry.value, entry.version),
        (json!(1), v1),
        "the failed put_if_absent changed nothing"
    );

    let v2 = put(h, "once", json!(3)).await;
    let kind = error_kind(
        h.b()
            .put_if_absent(&h.tenant, &k, &value(json!(4)), None)
            .await,
        "put_if_absent over a put record must fail",
    );
    assert_eq!(kind, ErrorKind::AlreadyExists);

    assert!(h.b().delete(&h.tenant, &k).await.expect("delete"));
    let v3 = h
        .b()
        .put_if_absent(&h.tenant, &k, &value(json!(5)), None)
        .await
        .expect("put_if_absent after delete creates again");
    assert!(v3 > v2, "the new incarnation has a greater version");
    assert_eq!(get(h, "once").await.expect("visible").value, json!(5));
}

pub async fn compare_and_swap_semantics(h: &Harness) {
    let k = key("cas");
    let v1 = put(h, "cas", json!("a")).await;
    let v2 = h
        .b()
        .compare_and_swap(&h.tenant, &k, v1, &value(json!("b")), None)
        .await
        .expect("a swap with the current version succeeds");
    assert!(v2 > v1, "a successful swap returns a greater version");
    let entry = get(h, "cas").await.expect("visible");
    assert_eq!(
        (entry.value, entry.version),
        (json!("b"), v2),
        "the swap stored its value"
    );

    let kind = error_kind(
        h.b()
            .compare_and_swap(&h.tenant, &k, v1, &value(json!("c")), None)
            .await,
        "a swap with an old version must fail",
    );
    assert_eq!(
        kind,
        ErrorKind::Conflict,
        "a version mismatch is a conflict"
    );
    let entry = get(h, "cas").await.expect("visible");
    assert_eq!(
        (entry.value, entry.version),
        (json!("b"), v2),
        "a conflict changes nothing"
    );

    assert!(h.b().delete(&h.tenant, &k).await.expect("delete"));
    let kind = error_kind(
        h.b()
            .compare_and_swap(&h.tenant, &k, v2, &value(json!("d")), None)
            .await,
        "a swap on a deleted key must fail",
    );
    assert_eq!(
        kind,
        ErrorKind::NotFound,
        "a swap with no visible record is NotFound"
    );
    assert_eq!(
        get(h, "cas").await,
        None,
        "a failed swap does not create the record"
    );

    let kind = error_kind(
        h.b()
            .compare_and_swap(
                &h.tenant,
                &key("never-written"),
                v2,
                &value(json!("e")),
                None,
            )
            .await,
        "a swap on a key never written must fail",
    );
    assert_eq!(kind, ErrorKind::NotFound);
    assert_eq!(
        get(h, "never-written").await,
        None,
        "a failed swap does not create the record"
    );
}

pub async fn cas_has_exactly_one_winner(h: &Harness) {
    let k = key("refresh-token");
    let mut current = put(h, "refresh-token", json!("initial")).await;
    for round in 0..3 {
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for i in 0..RACERS {
            let (b, tenant, k, barrier) = (
                h.backend.clone(),
                h.tenant.clone(),
                k.clone(),
                barrier.clone(),
            );
            let v = value(json!({"round": round, "racer": i}));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                b.compare_and_swap(&tenant, &k, current, &v, None).await
            }));
        }
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.expect("racer task") {
                Ok(version) => winners.push((i, version)),
                Err(e) => assert_eq!(
                    e.kind(),
                    ErrorKind::Conflict,
                    "round {round}: a losing swap is a conflict: {e}"
                ),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of {RACERS} swaps wins, got {winners:?}"
        );
        let (winner, version) = winners[0];
        assert!(version > current, "the winning version is greater");
        let entry = get(h, "refresh-token").await.expect("visible");
        assert_eq!(
            entry.value,
            json!({"round": round, "racer": winner}),
            "the winner's value is stored"
        );
        assert_eq!(entry.version, version, "the winner's version is stored");
        current = version;
    }
}

pub async fn put_if_absent_has_exactly_one_winner(h: &Harness) {
    for round in 0..3 {
        let k = key(&format!("device-code-{round}"));
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for i in 0..RACERS {
            let (b, tenant, k, barrier) = (
                h.backend.clone(),
                h.tenant.clone(),
                k.clone(),
                barrier.clone(),
            );
            let v = value(json!({"racer": i}));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                b.put_if_absent(&tenant, &k, &v, None).await
            }));
        }
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.expect("racer task") {
                Ok(version) => winners.push((i, version)),
                Err(e) => assert_eq!(
                    e.kind(),
                    ErrorKind::AlreadyExists,
                    "round {round}: a losing create: {e}"
                ),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one of {RACERS} creates wins, got {winners:?}"
        );
        let (winner, version) = winners[0];
        let entry = h
            .b()
            .get(&h.tenant, &k)
            .await
            .expect("get")
            .expect("visible");
        assert_eq!(
            entry.value,
            json!({"racer": winner}),
            "the winner's value is stored"
        );
        assert_eq!(entry.version, version, "the winner's version is stored");
    }
}

pub async fn empty_and_unicode_keys(h: &Harness) {
    let err = Key::new("").expect_err("an empty key must be rejected");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("key"), "the error names the field");

    // Inserted in descending order; raw UTF-8 byte order is "Z" < "a" < "é" < "中" < "🔑".
    let names = ["🔑", "中", "é", "a", "Z"];
    for (i, name) in names.iter().enumerate() {
        put(h, name, json!(i)).await;
    }
    for (i, name) in names.iter().enumerate() {
        let entry = get(h, name)
            .await
            .unwrap_or_else(|| panic!("unicode key {name:?} is visible"));
        assert_eq!(
            entry.value,
            json!(i),
            "unicode key {name:?} holds its own value"
        );
        assert_eq!(
            entry.key.as_str(),
            *name,
            "the key round-trips byte for byte"
        );
    }
    assert_eq!(
        scan_keys(h, "", None).await,
        ["Z", "a", "é", "中", "🔑"],
        "keys ascend by raw UTF-8 bytes"
    );

    // Precomposed and decomposed forms are different byte strings, hence different keys.
    put(h, "e\u{301}", json!("decomposed")).await;
    assert_eq!(
        get(h, "é").await.expect("visible").value,
        json!(2),
        "no Unicode normalisation"
    );
    assert_eq!(
        get(h, "e\u{301}").await.expect("visible").value,
        json!("decomposed")
    );
    assert_eq!(
        scan_keys(h, "", None).await,
        ["Z", "a", "e\u{301}", "é", "中", "🔑"],
        "\"e\\u{{301}}\" (65 CC 81) sorts between \"a\" and \"é\" (C3 A9)"
    );
    assert_eq!(
        scan_keys(h, "中", None).await,
        ["中"],
        "a unicode prefix matches"
    );
}

pub async fn scan_orders_by_raw_bytes(h: &Harness) {
    // Raw UTF-8 byte order. Case-insensitive or locale collations merge or reorder these; UTF-16
    // order would put "🔑" (a surrogate pair) before U+FF61.
    let expected = [
        " ", "A", "B", "Z", "_", "a", "a b", "a-b", "a.b", "a/b", "a0", "aB", "a_", "ab", "b",
        "e\u{301}", "z", "~", "é", "中", "\u{FF61}", "🔑",
    ];
    let mut sorted = expected.to_vec();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(
        sorted, expected,
        "the expected list itself is in byte order"
    );

    // Insert in a scrambled order.
    let n = expected.len();
    for i in 0..n {
        let name = expected[(i * 7 + 3) % n];
        put(h, name, json!(name)).await;
    }
    assert_eq!(
        scan_keys(h, "", None).await,
        expected,
        "scan ascends by raw bytes"
    );
    for name in expected {
        assert_eq!(
            get(h, name).await.expect("visible").value,
            json!(name),
            "{name:?} kept its own value"
        );
    }
}

pub async fn scan_pages_with_cursor(h: &Harness) {
    let names: Vec<String> = (0..25).map(|i| format!("p/{i:02}")).collect();
    for name in names.iter().rev() {
        put(h, name, json!(name)).await;
    }
    put(h, "o", json!("before the prefix")).await;
    put(h, "q", json!("after the prefix")).await;
    let chunk =
        |size: usize| -> Vec<Vec<String>> { names.chunks(size).map(<[String]>::to_vec).collect() };

    let pages = scan_pages(h, &prefix("p/"), None, limit(7)).await;
    assert_eq!(
        pages,
        chunk(7),
        "25 keys in pages of 7: 7, 7, 7, 4, with a cursor on all but the last"
    );

    let pages = scan_pages(h, &prefix("p/"), None, limit(5)).await;
    assert_eq!(
        pages,
        chunk(5),
        "25 keys in pages of 5: no empty sixth page, no cursor on the fifth"
    );

    let pages = scan_pages(h, &prefix("p/"), None, limit(25)).await;
    assert_eq!(
        pages,
        chunk(25),
        "a page exactly as large as the result has no cursor"
    );

    let pages = scan_pages(h, &prefix("p/"), None, limit(24)).await;
    assert_eq!(
        pages,
        chunk(24),
        "one entry past the page gives a cursor and a one-entry page"
    );

    let pages = scan_pages(h, &prefix("p/"), None, limit(1)).await;
    assert_eq!(pages, chunk(1), "pages of one");

    let pages = scan_pages(h, &prefix(""), None, limit(10)).await;
    let mut all = vec!["o".to_owned()];
    all.extend(names.iter().cloned());
    all.push("q".to_owned());
    let expected: Vec<Vec<String>> = all.chunks(10).map(<[String]>::to_vec).collect();
    assert_eq!(pages, expected, "the empty prefix pages through every key");
}

pub async fn scan_prefix_and_start_after(h: &Harness) {
    let names = [
        "a", "a%", "a%c", "a\\b", "a_", "a_b", "ab", "50%", "500", "User", "user", "user/1",
        "user/2", "user0", "users", "中", "中文",
    ];
    for name in names {
        put(h, name, json!(name)).await;
    }
    assert_eq!(scan_keys(h, "user/", None).await, ["user/1", "user/2"]);
    assert_eq!(
        scan_keys(h, "user", None).await,
        ["user", "user/1", "user/2", "user0", "users"],
        "prefix is case-sensitive"
    );
    assert_eq!(
        scan_keys(h, "User", None).await,
        ["User"],
        "prefix is case-sensitive"
    );
    assert_eq!(
        scan_keys(h, "a_", None).await,
        ["a_", "a_b"],
        "`_` is literal, not a LIKE wildcard"
    );
    assert_eq!(
        scan_keys(h, "a%", None).await,
        ["a%", "a%c"],
        "`%` is literal, not a LIKE wildcard"
    );
    assert_eq!(
        scan_keys(h, "50%", None).await,
        ["50%"],
        "`%` is literal, not a LIKE wildcard"
    );
    assert_eq!(
        scan_keys(h, "a\\", None).await,
        ["a\\b"],
        "`\\` is literal, not an escape"
    );
    assert_eq!(
        scan_keys(h, "a", None).await,
        ["a", "a%", "a%c", "a\\b", "a_", "a_b", "ab"]
    );
    assert_eq!(scan_keys(h, "中", None).await, ["中", "中文"]);
    assert_eq!(
        scan_keys(h, "zzz", None).await,
        Vec::<String>::new(),
        "no key has this prefix"
    );
    assert_eq!(
        scan_keys(h, "", None).await.len(),
        names.len(),
        "the empty prefix matches every key"
    );

    assert_eq!(
        scan_keys(h, "user", Some("user/1")).await,
        ["user/2", "user0", "users"],
        "start_after is exclusive"
    );
    assert_eq!(
        scan_keys(h, "user", Some("user")).await,
        ["user/1", "user/2", "user0", "users"],
        "start_after is exclusive"
    );
    assert_eq!(
        scan_keys(h, "user", Some("user/15")).await,
        ["user/2", "user0", "users"],
        "start_after need not exist"
    );
    assert_eq!(
        scan_keys(h, "user", Some("a")).await,
        ["user", "user/1", "user/2", "user0", "users"],
        "start_after before the prefix"
    );
    assert_eq!(
        scan_keys(h, "user", Some("v")).await,
        Vec::<String>::new(),
        "start_after past the prefix"
    );
    assert_eq!(
        scan_keys(h, "user", Some("userr")).await,
        ["users"],
        "start_after inside the prefix range"
    );

    // A cursor stays valid when its key is deleted between pages.
    let first = h
        .b()
        .scan(&h.tenant, &prefix("user"), None, limit(2))
        .await
        .expect("scan");
    assert_eq!(keys_of(&first.items), ["user", "user/1"]);
    let cursor = first.next.expect("more entries follow");
    assert!(h.b().delete(&h.tenant, &cursor).await.expect("delete"));
    let rest = h
        .b()
        .scan(&h.tenant, &prefix("user"), Some(&cursor), limit(2))
        .await
        .expect("scan");
    assert_eq!(
        keys_of(&rest.items),
        ["user/2", "user0"],
        "paging resumes after a deleted cursor key"
    );
    assert_eq!(rest.next, Some(key("user0")));
}

pub async fn find_by_field_json_equality(h: &Harness) {
    let records = [
        ("int", json!({"n": 1})),
        ("float", json!({"n": 1.0})),
        ("str", json!({"n": "1"})),
        ("bool", json!({"n": true})),
        ("false", json!({"n": false})),
        ("zero", json!({"n": 0})),
        ("negzero", json!({"n": -0.0})),
        ("half", json!({"n": 1.5})),
        ("ten", json!({"n": 10})),
        ("arr", json!({"n": [1, "a"]})),
        ("obj", json!({"n": {"a": 1, "b": [true]}})),
        ("big", json!({"n": 9_007_199_254_740_993_u64})),
    ];
    for (k, v) in &records {
        put(h, k, v.clone()).await;
    }
    assert_eq!(
        find_keys(h, "n", json!(1)).await,
        ["float", "int"],
        "1 == 1.0; keys ascending"
    );
    assert_eq!(
        find_keys(h, "n", json!(1.0)).await,
        ["float", "int"],
        "1.0 == 1"
    );
    assert_eq!(find_keys(h, "n", json!("1")).await, ["str"], "1 != \"1\"");
    assert_eq!(find_keys(h, "n", json!(true)).await, ["bool"], "true != 1");
    assert_eq!(
        find_keys(h, "n", json!(false)).await,
        ["false"],
        "false != 0"
    );
    assert_eq!(
        find_keys(h, "n", json!(0)).await,
        ["negzero", "zero"],
        "numbers compare by value: -0.0 == 0"
    );
    assert_eq!(find_keys(h, "n", json!(1.5)).await, ["half"]);
    assert_eq!(
        find_keys(h, "n", json!(15e-1)).await,
        ["half"],
        "numbers compare by value"
    );
    assert_eq!(
        find_keys(h, "n", json!([1.0, "a"])).await,
        ["arr"],
        "arrays compare deeply, numbers by value"
    );
    assert_eq!(
        find_keys(h, "n", json!(["a", 1])).await,
        Vec::<String>::new(),
        "array order matters"
    );
    assert_eq!(
        find_keys(h, "n", json!({"b": [true], "a": 1.0})).await,
        ["obj"],
        "objects compare deeply, key order aside"
    );
    assert_eq!(
        find_keys(h, "n", json!({"a": 1})).await,
        Vec::<String>::new(),
        "a sub-object is not equal"
    );
    assert_eq!(
        find_keys(h, "n", json!(9_007_199_254_740_993_u64)).await,
        ["big"],
        "integers beyond 2^53 compare exactly"
    );
    assert_eq!(
        find_keys(h, "n", json!(9_007_199_254_740_992_u64)).await,
        Vec::<String>::new(),
        "integers beyond 2^53 are not rounded to f64"
    );
}

pub async fn find_by_field_null_matches_only_null(h: &Harness) {
    let records = [
        ("null", json!({"n": null})),
        ("missing", json!({"m": null})),
        ("empty", json!({})),
        ("zero", json!({"n": 0})),
        ("false", json!({"n": false})),
        ("blank", json!({"n": ""})),
        ("string-null", json!({"n": "null"})),
        ("empty-array", json!({"n": []})),
        ("empty-object", json!({"n": {}})),
        ("scalar", json!(null)),
    ];
    for (k, v) in &records {
        put(h, k, v.clone()).await;
    }
    assert_eq!(
        find_keys(h, "n", json!(null)).await,
        ["null"],
        "null matches only a present null"
    );
    assert_eq!(
        find_keys(h, "m", json!(null)).await,
        ["missing"],
        "null matches only a present null"
    );
    assert_eq!(
        find_keys(h, "absent", json!(null)).await,
        Vec::<String>::new(),
        "a missing path never matches"
    );
    assert_eq!(
        find_keys(h, "n.x", json!(null)).await,
        Vec::<String>::new(),
        "a path through a null never matches"
    );
    assert_eq!(find_keys(h, "n", json!("null")).await, ["string-null"]);
    assert_eq!(find_keys(h, "n", json!([])).await, ["empty-array"]);
    assert_eq!(find_keys(h, "n", json!({})).await, ["empty-object"]);
}

pub async fn find_by_field_dot_paths(h: &Harness) {
    let records = [
        ("a", json!({"user": {"name": "ann", "tags": ["x"]}})),
        ("b", json!({"user": {"name": "bob"}})),
        ("c", json!({"user.name": "ann"})),
        ("d", json!({"user": [{"name": "ann"}]})),
        ("e", json!({"user": {"name": {"first": "ann"}}})),
        ("f", json!("ann")),
        ("g", json!({"user": "ann"})),
        ("h", json!({"user": {"profile": {"name": "ann"}}})),
        ("i", json!({"name": "ann"})),
    ];
    for (k, v) in &records {
        put(h, k, v.clone()).await;
    }
    assert_eq!(
        find_keys(h, "user.name", json!("ann")).await,
        ["a"],
        "dots walk object keys, not literal dotted keys"
    );
    assert_eq!(find_keys(h, "user", json!("ann")).await, ["g"]);
    assert_eq!(
        find_keys(h, "name", json!("ann")).await,
        ["i"],
        "a path starts at the top, it is not a recursive search"
    );
    assert_eq!(find_keys(h, "user.name.first", json!("ann")).await, ["e"]);
    assert_eq!(
        find_keys(h, "user.name", json!({"first": "ann"})).await,
        ["e"],
        "the operand may be an object"
    );
    assert_eq!(find_keys(h, "user.profile.name", json!("ann")).await, ["h"]);
    assert_eq!(find_keys(h, "user.tags", json!(["x"])).await, ["a"]);
    assert_eq!(
        find_keys(h, "user.tags.0", json!("x")).await,
        Vec::<String>::new(),
        "no array indexing"
    );
    assert_eq!(
        find_keys(h, "user.0.name", json!("ann")).await,
        Vec::<String>::new(),
        "no array indexing"
    );
    assert_eq!(
        find_keys(h, "user.name.x", json!("ann")).await,
        Vec::<String>::new(),
        "a path through a string never matches"
    );
}

pub async fn find_by_field_pages(h: &Harness) {
    // k00..k19 alternate between matching and not; k20..k24 do not match.
    for i in 0..25 {
        let kind = if i < 20 && i % 2 == 0 { "x" } else { "y" };
        put(h, &format!("k{i:02}"), json!({"kind": kind})).await;
    }
    let matching: Vec<String> = (0..20).step_by(2).map(|i| format!("k{i:02}")).collect();
    let (at, wanted) = (path("kind"), operand(json!("x")));

    for size in [3_usize, 1, 5, 9, 10, 11] {
        let mut pages: Vec<Vec<String>> = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let page = find_by_field(
                h.b(),
                &h.tenant,
                &at,
                &wanted,
                after.as_ref(),
                limit(size as u64),
            )
            .await
            .expect("find_by_field succeeds");
            pages.push(
                keys_of(&page.items)
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            );
            match page.next {
                Some(cursor) => {
                    assert_eq!(
                        Some(&cursor),
                        page.items.last().map(|e| &e.key),
                        "the cursor is the last key of the page"
                    );
                    after = Some(cursor);
                }
                None => break,
            }
            assert!(pages.len() <= 20, "find_by_field paging does not terminate");
        }
        let expected: Vec<Vec<String>> = matching.chunks(size).map(<[String]>::to_vec).collect();
        assert_eq!(
            pages, expected,
            "pages of {size}: a cursor exactly when more matches follow (non-matching records after the last match do not count)"
        );
    }

    let page = find_by_field(h.b(), &h.tenant, &at, &wanted, Some(&key("k05")), limit(3))
        .await
        .expect("find_by_field succeeds");
    assert_eq!(
        keys_of(&page.items),
        ["k06", "k08", "k10"],
        "start_after need not be a match"
    );
    assert_eq!(page.next, Some(key("k10")));
}

pub async fn find_by_field_spans_candidate_pages(h: &Harness) {
    // More records than one candidate page (1000) holds, with matches on both sides of it.
    let hits = [3_usize, 999, 1000, 1204];
    for i in 0..1205 {
        let kind = if hits.contains(&i) { "hit" } else { "miss" };
        put(h, &format!("r{i:04}"), json!({"kind": kind})).await;
    }
    let (at, wanted) = (path("kind"), operand(json!("hit")));
    let all = find_by_field(h.b(), &h.tenant, &at, &wanted, None, limit(10))
        .await
        .expect("find");
    assert_eq!(
        keys_of(&all.items),
        ["r0003", "r0999", "r1000", "r1204"],
        "every match, across candidate pages"
    );
    assert_eq!(all.next, None);

    let first = find_by_field(h.b(), &h.tenant, &at, &wanted, None, limit(2))
        .await
        .expect("find");
    assert_eq!(keys_of(&first.items), ["r0003", "r0999"]);
    assert_eq!(first.next, Some(key("r0999")), "more matches follow");
    let second = find_by_field(
        h.b(),
        &h.tenant,
        &at,
        &wanted,
        first.next.as_ref(),
        limit(2),
    )
    .await
    .expect("find");
    assert_eq!(keys_of(&second.items), ["r1000", "r1204"]);
    assert_eq!(second.next, None, "no match follows the last");
}
