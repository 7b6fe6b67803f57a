//! Object listings: the `list_objects` primitive (raw byte order, inclusive `from` that need not
//! be UTF-8, limit) and ListObjectsV2 through `core::object::list_objects_v2` (prefix, delimiters
//! of one and more characters, start-after, continuation, max-keys), every page walk compared
//! with a reference computed here from the set of keys.

use std::collections::BTreeMap;

use p8fs_core::object::{from_after, list_objects_v2};
use p8fs_core::{Limit, ObjectMeta, ObjectPrefix};

use super::{bucket, get, keys_in, make_bucket, oprefix, put, store};
use crate::Harness;
use crate::support::limit;

/// Keys whose byte order differs from UTF-16 order (U+FFFF sorts before U+10000 as bytes, after
/// it as UTF-16), from a collation ignoring trailing spaces or case, and from one ignoring
/// control characters; and trees of `/`.
const KEYS: &[&str] = &[
    "a",
    "a\u{1}",
    "a ",
    "a!",
    "a-b",
    "a.b",
    "a/",
    "a//x",
    "a/b",
    "a/b//e",
    "a/b/c",
    "a/b/c/d/e",
    "a/b/d",
    "a/c",
    "ab",
    "A",
    "B",
    "b",
    "b/x/y",
    "é",
    "é/1",
    "z\u{e000}",
    "z\u{ffff}",
    "z\u{10000}",
    "z\u{10000}/q",
    "~",
];

/// One entry of a listing page: an object's key or a common prefix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    Key(String),
    Prefix(String),
}

impl Entry {
    fn text(&self) -> &str {
        match self {
            Entry::Key(s) | Entry::Prefix(s) => s,
        }
    }
}

/// ListObjectsV2 as S3 defines it, from the set of visible keys: every key under `prefix` whose
/// bytes are `>= from`, ascending by bytes, a key holding `delimiter` after the prefix replaced
/// by the common prefix ending at its first occurrence, repeats of a common prefix merged.
fn reference(keys: &[&str], prefix: &str, delimiter: Option<&str>, from: &[u8]) -> Vec<Entry> {
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut entries: Vec<Entry> = Vec::new();
    for key in sorted {
        if !key.starts_with(prefix) || key.as_bytes() < from {
            continue;
        }
        let rest = &key[prefix.len()..];
        let entry = match delimiter.and_then(|d| rest.find(d).map(|at| at + d.len())) {
            Some(end) => Entry::Prefix(key[..prefix.len() + end].to_owned()),
            None => Entry::Key(key.to_owned()),
        };
        if entries.last() != Some(&entry) {
            entries.push(entry);
        }
    }
    entries
}

/// Every page of a ListObjectsV2 walk from `from`, following `next_from`; checks that each page
/// holds at most `max_keys` entries, that its objects and its common prefixes are each
/// ascending, and that every object listed is the one `objects` holds.
async fn walk(
    h: &Harness,
    bucket_name: &str,
    prefix: &str,
    delimiter: Option<&str>,
    from: &[u8],
    max_keys: u32,
    objects: &BTreeMap<String, ObjectMeta>,
) -> Vec<Vec<Entry>> {
    let what =
        format!("prefix {prefix:?}, delimiter {delimiter:?}, from {from:?}, max-keys {max_keys}");
    let mut pages = Vec::new();
    let mut from = from.to_vec();
    loop {
        let page = list_objects_v2(
            store(h),
            &h.tenant,
            &bucket(bucket_name),
            &oprefix(prefix),
            delimiter,
            &from,
            max_keys,
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: list_objects_v2: {e}"));
        for meta in &page.objects {
            assert_eq!(
                objects.get(meta.key.as_str()),
                Some(meta),
                "{what}: a listed object is the object stored"
            );
        }
        let keys: Vec<&str> = page.objects.iter().map(|m| m.key.as_str()).collect();
        assert!(
            keys.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()),
            "{what}: keys ascending by bytes: {keys:?}"
        );
        assert!(
            page.common_prefixes
                .windows(2)
                .all(|w| w[0].as_bytes() < w[1].as_bytes()),
            "{what}: common prefixes ascending by bytes: {:?}",
            page.common_prefixes
        );
        let mut entries: Vec<Entry> = page
            .objects
            .iter()
            .map(|m| Entry::Key(m.key.as_str().to_owned()))
            .chain(page.common_prefixes.iter().cloned().map(Entry::Prefix))
            .collect();
        entries.sort_by(|a, b| a.text().as_bytes().cmp(b.text().as_bytes()));
        assert!(
            entries.len() <= max_keys as usize,
            "{what}: a page holds at most max-keys entries: {entries:?}"
        );
        pages.push(entries);
        match page.next_from {
            Some(next) => from = next,
            None => return pages,
        }
        assert!(
            pages.len() <= objects.len() + 1,
            "{what}: the walk does not end"
        );
    }
}

/// Puts every key of [`KEYS`] in bucket `list` and returns the committed objects by key.
async fn put_keys(h: &Harness) -> BTreeMap<String, ObjectMeta> {
    make_bucket(h, &h.tenant, "list").await;
    let mut objects = BTreeMap::new();
    for (i, key) in KEYS.iter().enumerate() {
        let meta = put(h, &h.tenant, "list", key, key.as_bytes()).await;
        assert_eq!(meta.size as usize, key.len(), "{i}");
        objects.insert((*key).to_owned(), meta);
    }
    objects
}

pub async fn list_objects_orders_by_raw_bytes(h: &Harness) {
    let objects = put_keys(h).await;
    let mut expected: Vec<&str> = KEYS.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(
        keys_in(h, &h.tenant, "list").await,
        expected,
        "keys ascending by raw bytes"
    );
    let listed = |prefix: &'static str, from: Vec<u8>, n: u64| async move {
        store(h)
            .list_objects(
                &h.tenant,
                &bucket("list"),
                &oprefix(prefix),
                &from,
                limit(n),
            )
            .await
            .expect("list_objects succeeds")
            .into_iter()
            .map(|m| m.key.into_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed("", b"a/b".to_vec(), 3).await,
        ["a/b", "a/b//e", "a/b/c"],
        "from is inclusive"
    );
    assert_eq!(
        listed("", from_after("a/b"), 2).await,
        ["a/b//e", "a/b/c"],
        "from_after excludes the key"
    );
    assert_eq!(
        listed("a/", b"".to_vec(), 1000).await,
        [
            "a/",
            "a//x",
            "a/b",
            "a/b//e",
            "a/b/c",
            "a/b/c/d/e",
            "a/b/d",
            "a/c"
        ]
    );
    assert_eq!(
        listed("a/", b"zz".to_vec(), 1000).await,
        Vec::<String>::new(),
        "from past the prefix"
    );
    assert_eq!(
        listed("a/b/", b"a".to_vec(), 1000).await,
        ["a/b//e", "a/b/c", "a/b/c/d/e", "a/b/d"],
        "from before the prefix"
    );
    assert_eq!(
        listed("z", b"".to_vec(), 1000).await,
        ["z\u{e000}", "z\u{ffff}", "z\u{10000}", "z\u{10000}/q"]
    );
    // `from` need not be UTF-8: here the first byte of a four-byte sequence.
    assert_eq!(
        listed("", vec![b'z', 0xf0], 1000).await,
        ["z\u{10000}", "z\u{10000}/q", "~", "é", "é/1"]
    );
    assert_eq!(
        listed("", vec![b'a', 0xff], 1).await,
        ["b"],
        "0xff is above every byte of UTF-8"
    );
    assert_eq!(
        listed("a", vec![b'a', 0], 2).await,
        ["a\u{1}", "a "],
        "U+0001 sorts before space"
    );
    assert_eq!(listed("A", b"".to_vec(), 1000).await, ["A"], "case matters");
    assert_eq!(
        listed("a ", b"".to_vec(), 1000).await,
        ["a "],
        "a trailing space matters"
    );
    let all = store(h)
        .list_objects(
            &h.tenant,
            &bucket("list"),
            &ObjectPrefix::all(),
            b"",
            Limit::MAX,
        )
        .await
        .expect("list_objects");
    assert_eq!(
        all,
        objects.values().cloned().collect::<Vec<_>>(),
        "whole metadata, in key order"
    );
}

pub async fn list_v2_matches_reference(h: &Harness) {
    let objects = put_keys(h).await;
    let prefixes = ["", "a", "a/", "a/b/", "z", "é", "nothing"];
    let delimiters = [None, Some("/"), Some("//"), Some("b/"), Some("\u{10000}")];
    let starts: [Option<&str>; 4] = [None, Some("a/b"), Some("a"), Some("z\u{ffff}")];
    for prefix in prefixes {
        for delimiter in delimiters {
            for start in starts {
                let from = start.map(from_after).unwrap_or_default();
                let expected = reference(KEYS, prefix, delimiter, &from);
                for max_keys in [1u32, 2, 3, 1000] {
                    let pages = walk(h, "list", prefix, delimiter, &from, max_keys, &objects).await;
                    let expected_pages: Vec<Vec<Entry>> = if expected.is_empty() {
                        vec![Vec::new()]
                    } else {
                        expected
                            .chunks(max_keys as usize)
                            .map(<[Entry]>::to_vec)
                            .collect()
                    };
                    assert_eq!(
                        pages, expected_pages,
                        "prefix {prefix:?}, delimiter {delimiter:?}, start-after {start:?}, \
                         max-keys {max_keys}: the pages (left) and the reference (right)"
                    );
                }
            }
        }
    }

    // An empty delimiter is no delimiter, as S3 treats it.
    let all = ObjectPrefix::all();
    let plain = list_objects_v2(store(h), &h.tenant, &bucket("list"), &all, None, b"", 1000)
        .await
        .expect("list without a delimiter");
    let empty = list_objects_v2(
        store(h),
        &h.tenant,
        &bucket("list"),
        &all,
        Some(""),
        b"",
        1000,
    )
    .await
    .expect("list with an empty delimiter");
    assert_eq!(empty, plain, "an empty delimiter lists as no delimiter");

    // Arguments out of the contract are refused, naming their field.
    for (delimiter, max_keys, field) in [
        (Some("/"), 1001, "max-keys"),
        (Some("a\0b"), 10, "delimiter"),
    ] {
        let error = list_objects_v2(
            store(h),
            &h.tenant,
            &bucket("list"),
            &all,
            delimiter,
            b"",
            max_keys,
        )
        .await
        .expect_err("refused");
        assert_eq!(
            error.field(),
            Some(field),
            "{delimiter:?} {max_keys}: {error}"
        );
    }

    // max-keys 0: nothing, and no continuation.
    let empty = list_objects_v2(
        store(h),
        &h.tenant,
        &bucket("list"),
        &ObjectPrefix::all(),
        Some("/"),
        b"",
        0,
    )
    .await
    .expect("list_objects_v2");
    assert!(empty.objects.is_empty() && empty.common_prefixes.is_empty());
    assert_eq!(empty.next_from, None);

    // A continuation from the middle of a walk resumes where the page ended.
    let first = list_objects_v2(
        store(h),
        &h.tenant,
        &bucket("list"),
        &oprefix("a"),
        Some("/"),
        b"",
        4,
    )
    .await
    .expect("list_objects_v2");
    let next = first.next_from.clone().expect("more follow");
    let rest = walk(h, "list", "a", Some("/"), &next, 1000, &objects).await;
    let expected = reference(KEYS, "a", Some("/"), b"");
    assert_eq!(rest, vec![expected[4..].to_vec()]);

    // A deleted object is listed no more.
    assert!(
        store(h)
            .delete_object(&h.tenant, &bucket("list"), &super::okey("a/c"))
            .await
            .expect("delete")
    );
    let after_delete = walk(h, "list", "a/", None, &from_after("a/b/d"), 1000, &objects).await;
    assert_eq!(
        after_delete,
        vec![Vec::<Entry>::new()],
        "a/c was the last key under a/"
    );
    assert_eq!(get(h, &h.tenant, "list", "a/c").await, None);
}

pub async fn list_v2_pages_past_the_store_page(h: &Harness) {
    let t = &h.tenant;
    make_bucket(h, t, "many").await;
    let mut objects = BTreeMap::new();
    let mut keys: Vec<String> = (0..1005).map(|i| format!("k/{i:04}")).collect();
    keys.extend([
        "k/0003/sub".to_owned(),
        "k/0999/sub/x".to_owned(),
        "m".to_owned(),
    ]);
    for key in &keys {
        objects.insert(key.clone(), put(h, t, "many", key, b"").await);
    }
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    for (prefix, delimiter, start, max_keys) in [
        ("", None, None, 1000),
        ("", None, None, 999),
        ("", Some("/"), None, 1000),
        ("k/", Some("/"), None, 1000),
        ("k/", Some("/"), Some("k/0500"), 1000),
        ("k/0", None, Some("k/0003"), 1000),
        ("k/09", Some("/sub"), None, 2),
    ] {
        let from = start.map(from_after).unwrap_or_default();
        let expected = reference(&key_refs, prefix, delimiter, &from);
        let pages = walk(h, "many", prefix, delimiter, &from, max_keys, &objects).await;
        let expected_pages: Vec<Vec<Entry>> = expected
            .chunks(max_keys as usize)
            .map(<[Entry]>::to_vec)
            .collect();
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            expected_pages.iter().map(Vec::len).collect::<Vec<_>>(),
            "prefix {prefix:?}, delimiter {delimiter:?}, start {start:?}, max-keys {max_keys}: page sizes"
        );
        assert!(
            pages == expected_pages,
            "prefix {prefix:?}, delimiter {delimiter:?}, start {start:?}, max-keys {max_keys}: \
             the pages differ from the reference"
        );
    }
}
