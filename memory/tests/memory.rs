//! Memories and object indexing over a real RocksDB backend with the builtin model: search by
//! meaning, deletion, ttl, filters, tenant isolation, re-uploads replacing their chunks, and
//! files that cannot be indexed. The model directory comes from `P8FS_TEST_MODEL_DIR`
//! (`scripts/services/model.sh dir`); without it these tests fail rather than skip.

#![expect(clippy::unwrap_used, reason = "tests")]

mod memory {
    use std::path::PathBuf;
    use std::sync::{Arc, OnceLock};

    use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
    use p8fs_core::object::ObjectWriter;
    use p8fs_core::vector::SearchMode;
    use p8fs_core::{
        Backend, BucketName, Clock, Embedder, ErrorKind, Limit, ManualClock, NodeId,
        ObjectAttributes, ObjectKey, ObjectMeta, ObjectStore, Precondition, TenantId, Ttl,
    };
    use p8fs_embed::{BuiltinEmbedder, WordPieceCounter};
    use p8fs_memory::{IndexState, Limits, Memory, NewMemory, Origin, Query, SourceKind};
    use serde_json::json;

    const START: i64 = 1_700_000_000_000;

    fn model_dir() -> PathBuf {
        match std::env::var_os("P8FS_TEST_MODEL_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => panic!(
                "P8FS_TEST_MODEL_DIR is not set: run `scripts/services/model.sh install` and set it \
                 to the output of `scripts/services/model.sh dir`"
            ),
        }
    }

    /// The model, loaded once for all tests of this binary.
    fn model() -> (Arc<dyn Embedder>, Arc<WordPieceCounter>) {
        static MODEL: OnceLock<(Arc<BuiltinEmbedder>, Arc<WordPieceCounter>)> = OnceLock::new();
        let (embedder, counter) = MODEL.get_or_init(|| {
            (
                Arc::new(BuiltinEmbedder::load(&model_dir()).unwrap()),
                Arc::new(WordPieceCounter::load(&model_dir()).unwrap()),
            )
        });
        (embedder.clone(), counter.clone())
    }

    struct Vault {
        _dir: tempfile::TempDir,
        backend: Arc<dyn Backend>,
        clock: Arc<ManualClock>,
        memory: Memory,
        counter: Arc<WordPieceCounter>,
    }

    fn vault() -> Vault {
        vault_with(Limits::default())
    }

    fn vault_with(limits: Limits) -> Vault {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let backend: Arc<dyn Backend> = Arc::new(
            RocksBackend::open(dir.path(), clock.clone(), RocksOptions::default()).unwrap(),
        );
        let (embedder, counter) = model();
        let count = counter.clone();
        let memory = Memory::new(
            backend.clone(),
            embedder,
            Arc::new(move |text: &str| count.count(text)),
            clock.clone(),
            limits,
        )
        .unwrap();
        Vault {
            _dir: dir,
            backend,
            clock,
            memory,
            counter,
        }
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).unwrap()
    }

    fn note(text: &str) -> NewMemory {
        NewMemory {
            text: text.to_owned(),
            ..NewMemory::default()
        }
    }

    fn query(text: &str, k: u64) -> Query {
        Query {
            text: text.to_owned(),
            k: Limit::new(k).unwrap(),
            source: None,
            bucket: None,
            tags: Vec::new(),
            metadata: Vec::new(),
            mode: SearchMode::Exact,
        }
    }

    const NOTES: [&str; 4] = [
        "Sourdough needs a lively starter: feed it flour and water the night before, let the \
         dough rise slowly in a warm kitchen, then bake it in a hot oven.",
        "The database backup runs every night at two; restore drills happen each quarter so we \
         know the snapshots actually work.",
        "Our flight to Tokyo leaves Friday morning; the hotel near the station is booked for \
         four nights.",
        "Tomatoes in the garden need watering every evening during the summer heat wave.",
    ];

    #[tokio::test]
    async fn memories_are_found_by_meaning_and_forgotten_with_their_chunks() {
        let v = vault();
        let t = tenant("alice");
        let mut ids = Vec::new();
        for text in NOTES {
            ids.push(v.memory.remember(&t, note(text)).await.unwrap().id);
        }
        let found = v
            .memory
            .search(&t, &query("how do I make bread", 2))
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].origin, Origin::Memory { id: ids[0].clone() });
        assert!(found[0].text.starts_with("Sourdough"));
        assert!(found[0].score > found[1].score);
        assert_eq!((found[0].chunk, found[0].chunks), (0, 1));

        let found = v
            .memory
            .search(&t, &query("when is the trip to Japan", 1))
            .await
            .unwrap();
        assert_eq!(found[0].origin, Origin::Memory { id: ids[2].clone() });

        // The graph holds the memory and its chunk.
        let node = NodeId::new(ids[0].as_str()).unwrap();
        assert!(v.backend.get_node(&t, &node).await.unwrap().is_some());

        // Links between memories are graph edges; a missing target is a conflict.
        v.memory
            .link(&t, &ids[0], &ids[1], Some("related"), None)
            .await
            .unwrap();
        let missing = "m0000000000000000000000000000";
        let error = v
            .memory
            .link(&t, &ids[0], missing, None, None)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Conflict);
        let error = v
            .memory
            .link(&t, missing, &ids[0], None, None)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);

        v.memory.forget(&t, &ids[0]).await.unwrap();
        let found = v
            .memory
            .search(&t, &query("how do I make bread", 4))
            .await
            .unwrap();
        assert_eq!(found.len(), 3);
        assert!(
            found
                .iter()
                .all(|f| f.origin != Origin::Memory { id: ids[0].clone() })
        );
        let error = v.memory.memory(&t, &ids[0]).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(v.backend.get_node(&t, &node).await.unwrap().is_none());
        let records = v
            .backend
            .list_vectors(&t, v.memory.collection(), None, Limit::new(100).unwrap())
            .await
            .unwrap();
        assert_eq!(
            records.items.len(),
            3,
            "the forgotten memory's chunk is gone"
        );
        assert_eq!(
            v.memory.forget(&t, &ids[0]).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    /// An approximate search of a small collection is answered exactly: the same chunks, in the
    /// same order, with the same scores, whatever `ef` (below `k` too) and filter.
    #[tokio::test]
    async fn approximate_search_of_a_small_collection_finds_what_exact_finds() {
        let v = vault();
        let t = tenant("alice");
        for (i, text) in NOTES.iter().enumerate() {
            let tags = if i % 2 == 0 {
                vec!["even".to_owned()]
            } else {
                Vec::new()
            };
            let new = NewMemory { tags, ..note(text) };
            v.memory.remember(&t, new).await.unwrap();
        }
        for (question, k, tags) in [
            ("how do I make bread", 4, Vec::new()),
            ("when is the trip to Japan", 2, Vec::new()),
            ("watering plants", 3, vec!["even".to_owned()]),
        ] {
            let exact = Query {
                tags,
                ..query(question, k)
            };
            let expected = v.memory.search(&t, &exact).await.unwrap();
            assert!(!expected.is_empty(), "{question}");
            for ef in [1, 16, 64, 4096] {
                let approximate = Query {
                    mode: SearchMode::Approximate { ef },
                    ..exact.clone()
                };
                let found = v.memory.search(&t, &approximate).await.unwrap();
                assert_eq!(found, expected, "{question} with ef {ef}");
            }
        }
    }

    #[tokio::test]
    async fn a_search_never_sees_another_tenants_memories() {
        let v = vault();
        v.memory
            .remember(&tenant("alice"), note(NOTES[0]))
            .await
            .unwrap();
        v.memory
            .remember(&tenant("bob"), note(NOTES[3]))
            .await
            .unwrap();
        let found = v
            .memory
            .search(&tenant("bob"), &query("baking bread", 10))
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].text.starts_with("Tomatoes"));
        let nobody = v
            .memory
            .search(&tenant("carol"), &query("baking bread", 10))
            .await
            .unwrap();
        assert!(nobody.is_empty());
    }

    #[tokio::test]
    async fn tags_and_metadata_filter_and_ttl_expires_memory_and_chunks() {
        let v = vault();
        let t = tenant("alice");
        let tagged = NewMemory {
            text: NOTES[1].to_owned(),
            tags: vec!["work".into()],
            metadata: json!({"team": "infra"}).as_object().unwrap().clone(),
            ttl: Some(Ttl::from_millis(60_000).unwrap()),
        };
        let tagged = v.memory.remember(&t, tagged).await.unwrap();
        v.memory.remember(&t, note(NOTES[0])).await.unwrap();

        let mut q = query("anything at all", 10);
        q.tags = vec!["work".into()];
        let found = v.memory.search(&t, &q).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].tags, vec!["work".to_owned()]);
        let mut q = query("anything at all", 10);
        q.metadata = vec![("team".into(), json!("infra"))];
        assert_eq!(v.memory.search(&t, &q).await.unwrap().len(), 1);
        q.metadata = vec![("team".into(), json!("design"))];
        assert!(v.memory.search(&t, &q).await.unwrap().is_empty());
        let mut q = query("anything", 10);
        q.source = Some(SourceKind::Object);
        assert!(v.memory.search(&t, &q).await.unwrap().is_empty());
        // Conditions no chunk meets together find nothing.
        q.tags = vec!["work".into()];
        assert!(v.memory.search(&t, &q).await.unwrap().is_empty());

        v.clock.advance(60_000);
        let found = v.memory.search(&t, &query("backups", 10)).await.unwrap();
        assert_eq!(found.len(), 1, "the expired memory is not found");
        assert_eq!(
            v.memory.memory(&t, &tagged.id).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[tokio::test]
    async fn bad_memories_are_refused_naming_the_field() {
        let v = vault();
        let t = tenant("alice");
        let field = |e: p8fs_core::Error| match e {
            p8fs_core::Error::InvalidInput { field, .. } => field.into_owned(),
            other => panic!("{other}"),
        };
        let e = v.memory.remember(&t, note("")).await.unwrap_err();
        assert_eq!(field(e), "text");
        let e = v.memory.remember(&t, note("a\0b")).await.unwrap_err();
        assert_eq!(field(e), "text");
        let mut short = note("fine");
        short.ttl = Some(Ttl::from_millis(59_999).unwrap());
        assert_eq!(
            field(v.memory.remember(&t, short).await.unwrap_err()),
            "ttl_ms"
        );
        let e = v
            .memory
            .remember(&t, note(&"x".repeat(64 * 1024 + 1)))
            .await
            .unwrap_err();
        assert_eq!(field(e), "text");
        let mut bad = note("fine");
        bad.tags = vec!["a.b".into()];
        assert_eq!(
            field(v.memory.remember(&t, bad).await.unwrap_err()),
            "tags[0]"
        );
        let e = v.memory.memory(&t, "../../etc").await.unwrap_err();
        assert_eq!(field(e), "id");
        let e = v.memory.search(&t, &query("", 3)).await.unwrap_err();
        assert_eq!(field(e), "q");
        let mut many = query("x", 3);
        many.tags = (0..9).map(|i| format!("t{i}")).collect();
        assert_eq!(field(v.memory.search(&t, &many).await.unwrap_err()), "tags");
    }

    #[tokio::test]
    async fn a_long_memory_becomes_chunks_within_the_window() {
        let v = vault();
        let t = tenant("alice");
        let paragraph = "The release checklist covers migrations, backups and a rollback plan. \
                         Every step names an owner and a deadline. ";
        let text = paragraph.repeat(60);
        let stored = v.memory.remember(&t, note(&text)).await.unwrap();
        assert!(stored.chunks > 3, "{}", stored.chunks);
        let found = v
            .memory
            .search(&t, &query("rollback plan owner", 100))
            .await
            .unwrap();
        assert_eq!(found.len(), stored.chunks);
        for chunk in &found {
            assert!(v.counter.count(&chunk.text) <= 254);
            assert_eq!(chunk.chunks as usize, stored.chunks);
        }
    }

    async fn upload(v: &Vault, t: &TenantId, bucket: &str, key: &str, body: &[u8], ct: &str) {
        upload_expiring(v, t, bucket, key, body, ct, None).await;
    }

    async fn upload_expiring(
        v: &Vault,
        t: &TenantId,
        bucket: &str,
        key: &str,
        body: &[u8],
        ct: &str,
        expires_at: Option<i64>,
    ) {
        let bucket = BucketName::new(bucket).unwrap();
        if v.backend.bucket(t, &bucket).await.unwrap().is_none() {
            v.backend.create_bucket(t, &bucket).await.unwrap();
        }
        let store: &dyn ObjectStore = v.backend.as_ref();
        let mut writer = ObjectWriter::begin(store, t, 1 << 30).await.unwrap();
        writer.write(body).await.unwrap();
        let written = writer.finish().await.unwrap();
        let meta = ObjectMeta {
            key: ObjectKey::new(key).unwrap(),
            size: written.size,
            etag: written.md5.clone(),
            last_modified: v.clock.now(),
            expires_at,
            attributes: ObjectAttributes {
                content_type: Some(ct.to_owned()),
                ..ObjectAttributes::default()
            },
            segments: vec![written.segment()],
        };
        v.backend
            .put_object(t, &bucket, &meta, &Precondition::None)
            .await
            .unwrap();
    }

    async fn index(v: &Vault, t: &TenantId, bucket: &str, key: &str) -> IndexState {
        v.memory
            .index_object(
                t,
                &BucketName::new(bucket).unwrap(),
                &ObjectKey::new(key).unwrap(),
            )
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn objects_are_indexed_replaced_and_removed() {
        let v = vault();
        let t = tenant("alice");
        let (bucket, key) = ("docs", "kitchen/bread.md");
        upload(&v, &t, bucket, key, NOTES[0].as_bytes(), "text/markdown").await;
        upload(
            &v,
            &t,
            bucket,
            "trip.txt",
            NOTES[2].as_bytes(),
            "text/plain",
        )
        .await;
        let status = v
            .memory
            .index_status(
                &t,
                &BucketName::new(bucket).unwrap(),
                &ObjectKey::new(key).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(status.state, IndexState::Pending);
        assert_eq!(index(&v, &t, bucket, key).await, IndexState::Indexed);
        assert_eq!(index(&v, &t, bucket, "trip.txt").await, IndexState::Indexed);
        // Idempotent: a second call changes nothing.
        assert_eq!(index(&v, &t, bucket, key).await, IndexState::Indexed);

        let found = v
            .memory
            .search(&t, &query("baking bread at home", 1))
            .await
            .unwrap();
        assert_eq!(
            found[0].origin,
            Origin::Object {
                bucket: bucket.into(),
                key: key.into()
            }
        );

        // A re-upload replaces the chunks once indexed; until then the old ones answer.
        upload(&v, &t, bucket, key, NOTES[3].as_bytes(), "text/markdown").await;
        let found = v
            .memory
            .search(&t, &query("baking bread at home", 1))
            .await
            .unwrap();
        assert!(
            found[0].text.starts_with("Sourdough"),
            "old chunks until re-indexed"
        );
        assert_eq!(index(&v, &t, bucket, key).await, IndexState::Indexed);
        let found = v
            .memory
            .search(&t, &query("baking bread at home", 10))
            .await
            .unwrap();
        assert!(found.iter().all(|f| !f.text.starts_with("Sourdough")));
        assert!(found.iter().any(|f| f.text.starts_with("Tomatoes")));
        let records = v
            .backend
            .list_vectors(&t, v.memory.collection(), None, Limit::new(100).unwrap())
            .await
            .unwrap();
        assert_eq!(
            records.items.len(),
            2,
            "the replaced version's chunk is gone"
        );

        // Deleting the object removes its chunks.
        v.backend
            .delete_object(
                &t,
                &BucketName::new(bucket).unwrap(),
                &ObjectKey::new(key).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(index(&v, &t, bucket, key).await, IndexState::Pending);
        let found = v
            .memory
            .search(&t, &query("watering tomatoes", 10))
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].text.starts_with("Our flight"));
    }

    #[tokio::test]
    async fn files_that_cannot_be_indexed_fail_with_a_reason() {
        let v = vault();
        let t = tenant("alice");
        let cases: [(&str, &[u8], &str, &str); 4] = [
            (
                "binary.txt",
                b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
                "text/plain",
                "not_text",
            ),
            ("empty.md", b"", "text/markdown", "empty"),
            (
                "photo.jpg",
                b"\xff\xd8\xff\xe0",
                "image/jpeg",
                "unsupported",
            ),
            (
                "broken.pdf",
                b"%PDF-1.7\n1 0 obj << /Type /Catalog",
                "application/pdf",
                "corrupt",
            ),
        ];
        for (key, body, ct, _) in cases {
            upload(&v, &t, "inbox", key, body, ct).await;
        }
        for (key, _, _, code) in cases {
            assert_eq!(
                index(&v, &t, "inbox", key).await,
                IndexState::Failed,
                "{key}"
            );
            let status = v
                .memory
                .index_status(
                    &t,
                    &BucketName::new("inbox").unwrap(),
                    &ObjectKey::new(key).unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(status.state, IndexState::Failed);
            assert_eq!(
                status.code.as_deref(),
                Some(code),
                "{key}: {:?}",
                status.reason
            );
            assert!(status.reason.is_some_and(|r| !r.is_empty()));
        }
    }

    #[tokio::test]
    async fn text_over_the_limit_is_indexed_up_to_it_and_marked() {
        let v = vault_with(Limits {
            max_text_bytes: 4096,
            ..Limits::default()
        });
        let t = tenant("alice");
        let text = "A sentence about the weekly report. ".repeat(10_000);
        upload(&v, &t, "big", "big.txt", text.as_bytes(), "text/plain").await;
        assert_eq!(index(&v, &t, "big", "big.txt").await, IndexState::Indexed);
        let status = v
            .memory
            .index_status(
                &t,
                &BucketName::new("big").unwrap(),
                &ObjectKey::new("big.txt").unwrap(),
            )
            .await
            .unwrap();
        assert!(status.truncated);
        assert!(
            status.chunks >= 1 && status.chunks < 20,
            "{}",
            status.chunks
        );
    }

    #[tokio::test]
    async fn an_objects_chunks_expire_with_it() {
        let v = vault();
        let t = tenant("alice");
        upload_expiring(
            &v,
            &t,
            "docs",
            "soon.txt",
            NOTES[1].as_bytes(),
            "text/plain",
            Some(START + 10_000),
        )
        .await;
        assert_eq!(index(&v, &t, "docs", "soon.txt").await, IndexState::Indexed);
        assert_eq!(
            v.memory
                .search(&t, &query("nightly backups", 5))
                .await
                .unwrap()
                .len(),
            1
        );
        v.clock.advance(10_000);
        assert!(
            v.memory
                .search(&t, &query("nightly backups", 5))
                .await
                .unwrap()
                .is_empty()
        );
        let records = v
            .backend
            .list_vectors(&t, v.memory.collection(), None, Limit::new(100).unwrap())
            .await
            .unwrap();
        assert!(
            records.items.is_empty(),
            "the chunk expired with the object"
        );
    }
}
