//! The builtin embedder against sentence-transformers: `reference/fixture.json` holds texts and
//! the vectors sentence-transformers computed for them on the same weights
//! (`reference/make_fixture.py`). The model directory comes from `P8FS_TEST_MODEL_DIR`
//! (`scripts/services/model.sh dir`); without it these tests fail rather than skip.

#![expect(clippy::unwrap_used, reason = "tests")]

mod embed {
    use std::path::PathBuf;

    use p8fs_core::{Embedder, ErrorKind};
    use p8fs_embed::{BuiltinEmbedder, CONFIG_FILE, MODEL_FILE, MODEL_NAME, TOKENIZER_FILE};
    use serde::Deserialize;

    const FIXTURE: &str = include_str!("reference/fixture.json");
    const DIMENSION: usize = 384;
    /// Agreement with sentence-transformers required of every vector.
    const MIN_COSINE: f64 = 0.9999;

    #[derive(Deserialize)]
    struct Fixture {
        max_seq_length: usize,
        items: Vec<Item>,
    }

    #[derive(Deserialize)]
    struct Item {
        text: String,
        tokens: usize,
        vector: Vec<f32>,
    }

    fn fixture() -> Fixture {
        serde_json::from_str(FIXTURE).unwrap()
    }

    fn model_dir() -> PathBuf {
        match std::env::var_os("P8FS_TEST_MODEL_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => panic!(
                "P8FS_TEST_MODEL_DIR is not set: run `scripts/services/model.sh install` and set it \
                 to the output of `scripts/services/model.sh dir`"
            ),
        }
    }

    fn embedder() -> BuiltinEmbedder {
        BuiltinEmbedder::load(&model_dir()).unwrap()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        dot / (norm(a) * norm(b))
    }

    fn norm(a: &[f32]) -> f64 {
        a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn matches_sentence_transformers() {
        let fixture = fixture();
        assert!(fixture.items.len() >= 50);
        assert_eq!(fixture.max_seq_length, p8fs_embed::MAX_SEQ_LEN);
        // The fixture covers truncation: some texts are far beyond the limit.
        assert!(
            fixture
                .items
                .iter()
                .any(|item| item.tokens > 4 * fixture.max_seq_length)
        );

        let embedder = embedder();
        assert_eq!(embedder.model(), MODEL_NAME);
        assert_eq!(embedder.dimension(), DIMENSION);
        let texts: Vec<String> = fixture.items.iter().map(|item| item.text.clone()).collect();
        // More than one batch of 32.
        let vectors = embedder.embed(&texts).await.unwrap();
        assert_eq!(vectors.len(), texts.len());

        let mut worst = (f64::INFINITY, String::new());
        for (item, vector) in fixture.items.iter().zip(&vectors) {
            assert_eq!(vector.len(), DIMENSION, "{:?}", item.text);
            assert_eq!(item.vector.len(), DIMENSION, "{:?}", item.text);
            assert!(
                (norm(vector) - 1.0).abs() < 1e-5,
                "{:?} is not unit length",
                item.text
            );
            let c = cosine(vector, &item.vector);
            if c < worst.0 {
                worst = (c, item.text.clone());
            }
            assert!(
                c >= MIN_COSINE,
                "cosine {c} with sentence-transformers for {:?} ({} tokens)",
                item.text,
                item.tokens
            );
        }
        eprintln!(
            "lowest cosine: 1 - {:.2e}, for {:?}",
            1.0 - worst.0,
            worst.1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batch_and_one_by_one_agree() {
        let fixture = fixture();
        let embedder = embedder();
        let texts: Vec<String> = fixture.items.iter().map(|item| item.text.clone()).collect();
        let batched = embedder.embed(&texts).await.unwrap();
        for (text, together) in texts.iter().zip(&batched) {
            let alone = embedder.embed(std::slice::from_ref(text)).await.unwrap();
            assert_eq!(alone.len(), 1);
            let c = cosine(&alone[0], together);
            let max_diff = alone[0]
                .iter()
                .zip(together)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0_f32, f32::max);
            assert!(
                c >= 0.99999 && max_diff < 1e-4,
                "{text:?}: alone and in a batch differ (cosine {c}, largest difference {max_diff})"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn text_beyond_the_limit_is_truncated() {
        let embedder = embedder();
        // One token per word: both texts are cut to the same first 254 words.
        let words: Vec<String> = (0..2000).map(|i| format!("w{}", i % 7)).collect();
        let long = words[..300].join(" ");
        let longer = words.join(" ");
        let vectors = embedder.embed(&[long, longer]).await.unwrap();
        assert!(cosine(&vectors[0], &vectors[1]) > 0.999_999);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_texts_no_vectors_and_concurrent_calls() {
        let embedder = embedder().with_threads(1).unwrap();
        assert_eq!(embedder.threads(), 1);
        assert!(embedder.embed(&[]).await.unwrap().is_empty());

        let texts: Vec<String> = (0..40).map(|i| format!("note number {i}")).collect();
        let expected = embedder.embed(&texts).await.unwrap();
        let calls = (0..4).map(|_| embedder.embed(&texts));
        for vectors in futures::future::join_all(calls).await {
            let vectors = vectors.unwrap();
            for (a, b) in vectors.iter().zip(&expected) {
                assert!(cosine(a, b) > 0.999_999);
            }
        }
        assert_eq!(
            embedder.clone().with_threads(0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn load_names_a_missing_file() {
        let source = model_dir();
        let dir = tempfile::tempdir().unwrap();
        for (present, missing) in [
            (&[][..], CONFIG_FILE),
            (&[CONFIG_FILE][..], TOKENIZER_FILE),
            (&[CONFIG_FILE, TOKENIZER_FILE][..], MODEL_FILE),
        ] {
            for file in present {
                std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
            }
            let err = BuiltinEmbedder::load(dir.path()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(err.to_string().contains(missing), "{err}");
        }
    }

    #[test]
    fn load_names_a_corrupt_file() {
        let source = model_dir();
        for corrupt in [CONFIG_FILE, TOKENIZER_FILE, MODEL_FILE] {
            let dir = tempfile::tempdir().unwrap();
            for file in [CONFIG_FILE, TOKENIZER_FILE, MODEL_FILE] {
                if file == corrupt {
                    std::fs::write(dir.path().join(file), b"{ not what it should be").unwrap();
                } else {
                    std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
                }
            }
            let err = BuiltinEmbedder::load(dir.path()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(err.to_string().contains(corrupt), "{corrupt}: {err}");
        }
    }
}
