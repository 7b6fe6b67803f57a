//! Unit tests of the shared object semantics.

use super::*;
use crate::validate::MAX_KEY_BYTES;

fn seg(data: u64, size: u64) -> Segment {
    Segment {
        data: DataId(data),
        size,
    }
}

fn part(number: u32, size: u64, etag: &str) -> PartRecord {
    PartRecord {
        number,
        data: DataId(u64::from(number) + 100),
        size,
        etag: etag.to_string(),
        checksums: BTreeMap::new(),
        last_modified: 0,
    }
}

#[test]
fn chunk_reads_cross_chunks_and_segments() {
    let c = CHUNK_BYTES as u64;
    // One segment of 2.5 chunks, then one of 10 bytes.
    let segments = [seg(1, 2 * c + c / 2), seg(2, 10)];
    let all = chunk_reads(&segments, 0, u64::MAX);
    let shape: Vec<_> = all
        .iter()
        .map(|r| (r.data.0, r.index, r.start, r.end))
        .collect();
    let half = CHUNK_BYTES / 2;
    assert_eq!(
        shape,
        vec![
            (1, 0, 0, CHUNK_BYTES),
            (1, 1, 0, CHUNK_BYTES),
            (1, 2, 0, half),
            (2, 0, 0, 10)
        ]
    );
    // A range inside the third chunk and into the second segment.
    let total = 2 * c + c / 2;
    let some = chunk_reads(&segments, total - 3, total + 4);
    let shape: Vec<_> = some
        .iter()
        .map(|r| (r.data.0, r.index, r.start, r.end))
        .collect();
    assert_eq!(shape, vec![(1, 2, half - 3, half), (2, 0, 0, 4)]);
    assert!(chunk_reads(&segments, 5, 5).is_empty());
    assert!(chunk_reads(&[seg(3, 0)], 0, u64::MAX).is_empty());
}

#[test]
fn byte_ranges_resolve_as_http_defines() {
    let r = |first, last| ByteRange::FromTo { first, last };
    assert_eq!(r(0, Some(0)).resolve(10).ok(), Some((0, 1)));
    assert_eq!(r(2, None).resolve(10).ok(), Some((2, 10)));
    assert_eq!(r(2, Some(100)).resolve(10).ok(), Some((2, 10)));
    assert_eq!(ByteRange::Suffix(3).resolve(10).ok(), Some((7, 10)));
    assert_eq!(ByteRange::Suffix(30).resolve(10).ok(), Some((0, 10)));
    for bad in [r(10, None), r(5, Some(4)), ByteRange::Suffix(0)] {
        let e = bad.resolve(10).err().map(|e| e.field().map(str::to_string));
        assert_eq!(e, Some(Some("range".to_string())), "{bad:?}");
    }
    assert!(ByteRange::Suffix(1).resolve(0).is_err());
}

#[test]
fn completion_is_validated_as_s3_does() {
    let mib5 = MIN_PART_BYTES;
    let a = md5_hex(b"a");
    let b = md5_hex(b"b");
    let stored = [part(1, mib5, &a), part(2, 3, &b), part(3, 1, &a)];
    let ok = plan_completion(&[(1, format!("\"{a}\"")), (2, b.clone())], &stored).ok();
    let mut concat = unhex(&a).unwrap_or_default();
    concat.extend(unhex(&b).unwrap_or_default());
    assert_eq!(
        ok.as_ref()
            .map(|c| (c.size, c.etag.clone(), c.segments.len())),
        Some((mib5 + 3, format!("{}-2", md5_hex(&concat)), 2))
    );
    assert_eq!(plan_completion(&[], &stored), Err(CompletionError::NoParts));
    assert_eq!(
        plan_completion(&[(2, b.clone()), (1, a.clone())], &stored),
        Err(CompletionError::InvalidPartOrder)
    );
    assert_eq!(
        plan_completion(&[(1, a.clone()), (1, a.clone())], &stored),
        Err(CompletionError::InvalidPartOrder)
    );
    assert_eq!(
        plan_completion(&[(1, b.clone())], &stored),
        Err(CompletionError::InvalidPart { number: 1 })
    );
    assert_eq!(
        plan_completion(&[(4, a.clone())], &stored),
        Err(CompletionError::InvalidPart { number: 4 })
    );
    assert_eq!(
        plan_completion(&[(2, b), (3, a)], &stored),
        Err(CompletionError::EntityTooSmall { number: 2 })
    );
}

#[test]
fn read_preconditions_follow_rfc_9110_order() {
    let meta = ObjectMeta {
        key: ObjectKey("k".into()),
        size: 0,
        etag: "abc".into(),
        last_modified: 10_500,
        expires_at: None,
        attributes: ObjectAttributes::default(),
        segments: Vec::new(),
    };
    let tags = |t: &[&str]| Some(t.iter().map(|s| s.to_string()).collect());
    let check = |c: ReadPreconditions| check_read_preconditions(&meta, &c);
    assert_eq!(check(ReadPreconditions::default()), Ok(()));
    let c = ReadPreconditions {
        if_match: tags(&["x", "abc"]),
        if_unmodified_since: Some(0),
        ..Default::default()
    };
    assert_eq!(check(c), Ok(()));
    let c = ReadPreconditions {
        if_match: tags(&["x"]),
        ..Default::default()
    };
    assert_eq!(check(c), Err(ReadRefusal::PreconditionFailed));
    let c = ReadPreconditions {
        if_unmodified_since: Some(9_999),
        ..Default::default()
    };
    assert_eq!(check(c), Err(ReadRefusal::PreconditionFailed));
    // Same second: not modified since.
    let c = ReadPreconditions {
        if_modified_since: Some(10_000),
        ..Default::default()
    };
    assert_eq!(check(c), Err(ReadRefusal::NotModified));
    let c = ReadPreconditions {
        if_none_match: tags(&["*"]),
        ..Default::default()
    };
    assert_eq!(check(c), Err(ReadRefusal::NotModified));
    let c = ReadPreconditions {
        if_none_match: tags(&["other"]),
        if_modified_since: Some(20_000),
        ..Default::default()
    };
    assert_eq!(check(c), Ok(()));
}

#[test]
fn bucket_names_follow_s3_rules() {
    let longest = "a".repeat(63);
    for good in ["abc", "my-bucket.v2", "0a0", longest.as_str()] {
        assert!(BucketName::new(good).is_ok(), "{good}");
    }
    let too_long = "a".repeat(64);
    for bad in [
        "ab",
        too_long.as_str(),
        "Abc",
        "a_b",
        "-ab",
        "ab-",
        "a..b",
        "192.168.1.1",
        "xn--abc",
        "abc-s3alias",
    ] {
        let e = BucketName::new(bad).err();
        assert_eq!(e.as_ref().and_then(|e| e.field()), Some("bucket"), "{bad}");
    }
    assert!(ObjectKey::new("x".repeat(MAX_KEY_BYTES)).is_ok());
    assert!(ObjectKey::new("x".repeat(MAX_KEY_BYTES + 1)).is_err());
    assert!(ObjectKey::new("").is_err());
}

#[test]
fn upload_ids_round_trip_and_reject_strangers() {
    let id = UploadId(0xdead_beef);
    assert_eq!(UploadId::parse(&id.to_string()).ok(), Some(id));
    for bad in [
        "",
        "xyz",
        "00000000DEADBEEF",
        "0000000000000000a",
        "+000000000000001",
    ] {
        assert!(UploadId::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn attributes_are_bounded() {
    let mut a = ObjectAttributes::default();
    a.metadata
        .insert("k".into(), "v".repeat(MAX_USER_METADATA_BYTES));
    assert_eq!(
        a.validate().err().as_ref().and_then(|e| e.field()),
        Some("metadata")
    );
    let mut a = ObjectAttributes::default();
    a.headers
        .insert("cache-control".into(), "v".repeat(MAX_ATTRIBUTE_BYTES));
    assert_eq!(
        a.validate().err().as_ref().and_then(|e| e.field()),
        Some("headers")
    );
}
