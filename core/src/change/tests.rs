//! Unit tests of the change-log types: subject encoding, cursor checks and filtered reads.

use std::sync::Mutex;

use super::*;

fn key(k: &str) -> Subject {
    Subject::Kv {
        key: Key::new(k).unwrap(),
    }
}

fn subjects() -> Vec<Subject> {
    vec![
        key("a/b"),
        Subject::Collection {
            name: CollectionName::new("docs").unwrap(),
        },
        Subject::Vector {
            collection: CollectionName::new("docs").unwrap(),
            id: RecordId::new("v1").unwrap(),
        },
        Subject::Node {
            id: NodeId::new("n1").unwrap(),
        },
        Subject::Edge {
            src: NodeId::new("n1").unwrap(),
            rel: Rel::new("knows").unwrap(),
            dst: NodeId::new("n2").unwrap(),
        },
        Subject::Bucket {
            name: BucketName::new("notes").unwrap(),
        },
        Subject::Object {
            bucket: BucketName::new("notes").unwrap(),
            key: ObjectKey::new("2026/plan.txt").unwrap(),
        },
    ]
}

#[test]
fn subjects_round_trip_through_their_parts() {
    for subject in subjects() {
        let kind = subject.kind();
        assert_eq!(ChangeKind::parse(kind.as_str(), "kind").unwrap(), kind);
        let back = Subject::from_parts(kind, subject.parts()).unwrap();
        assert_eq!(back, subject);
    }
    assert_eq!(subjects()[2].path(), "docs/v1");
    assert_eq!(subjects()[4].path(), "n1/knows/n2");
    assert_eq!(subjects()[6].path(), "notes/2026/plan.txt");
}

#[test]
fn malformed_parts_name_the_change() {
    let err = Subject::from_parts(ChangeKind::Kv, ["x", "", "k"]).unwrap_err();
    assert_eq!(err.field(), Some("change"));
    let err = Subject::from_parts(ChangeKind::Vector, ["", "", "id"]).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    assert!(ChangeKind::parse("blob", "kinds").is_err());
    assert!(ChangeOp::parse("upsert", "op").is_err());
}

#[test]
fn cursors_between_floor_and_head_are_valid() {
    let (floor, head) = (ChangeCursor(5), ChangeCursor(9));
    assert!(check_cursor(ChangeCursor(5), floor, head).is_ok());
    assert!(check_cursor(ChangeCursor(9), floor, head).is_ok());
    match check_cursor(ChangeCursor(4), floor, head) {
        Err(Error::Gone { oldest }) => assert_eq!(oldest, floor),
        other => panic!("{other:?}"),
    }
    let err = check_cursor(ChangeCursor(10), floor, head).unwrap_err();
    assert_eq!(err.field(), Some("after"));
}

/// A log in a vector, read in pages of at most three.
struct VecLog(Mutex<Vec<Change>>);

#[async_trait]
impl ChangeLog for VecLog {
    async fn changes(
        &self,
        _tenant: &TenantId,
        after: ChangeCursor,
        limit: Limit,
    ) -> Result<ChangePage> {
        let all = self.0.lock().unwrap();
        let head = all.last().map_or(ChangeCursor(0), |c| c.cursor);
        check_cursor(after, ChangeCursor(0), head)?;
        let changes: Vec<Change> = all
            .iter()
            .filter(|c| c.cursor > after)
            .take(limit.get().min(3))
            .cloned()
            .collect();
        let next = changes.last().map_or(after, |c| c.cursor);
        Ok(ChangePage {
            changes,
            next,
            head,
        })
    }

    async fn change_heads(&self) -> Result<Vec<(TenantId, ChangeCursor)>> {
        Ok(Vec::new())
    }

    async fn trim_changes(&self, _before: Timestamp) -> Result<u64> {
        Ok(0)
    }
}

#[tokio::test]
async fn filtered_reads_skip_what_they_do_not_want_and_resume_after_it() {
    let all: Vec<Change> = (1..=10)
        .map(|i| Change {
            cursor: ChangeCursor(i),
            at: 0,
            op: ChangeOp::Put,
            subject: if i % 3 == 0 {
                key(&format!("keep/{i}"))
            } else {
                key(&format!("skip/{i}"))
            },
            version: Some(Version(i)),
        })
        .collect();
    let log = VecLog(Mutex::new(all));
    let tenant = TenantId::new("t").unwrap();
    let filter = ChangeFilter {
        kinds: Some([ChangeKind::Kv].into_iter().collect()),
        prefix: Some("keep/".into()),
    };
    let page = read_filtered(
        &log,
        &tenant,
        ChangeCursor(0),
        Limit::new(2).unwrap(),
        &filter,
    )
    .await
    .unwrap();
    let cursors: Vec<u64> = page.changes.iter().map(|c| c.cursor.0).collect();
    assert_eq!(cursors, [3, 6]);
    assert_eq!(page.next, ChangeCursor(6));
    let page = read_filtered(&log, &tenant, page.next, Limit::new(2).unwrap(), &filter)
        .await
        .unwrap();
    let cursors: Vec<u64> = page.changes.iter().map(|c| c.cursor.0).collect();
    assert_eq!(cursors, [9]);
    assert_eq!(page.next, ChangeCursor(10), "the skipped tail is examined");
    assert_eq!(page.head, ChangeCursor(10));
    let nothing = ChangeFilter {
        kinds: Some(BTreeSet::new()),
        prefix: None,
    };
    assert!(nothing.is_empty());
    let page = read_filtered(
        &log,
        &tenant,
        ChangeCursor(10),
        Limit::new(5).unwrap(),
        &nothing,
    )
    .await
    .unwrap();
    assert!(page.changes.is_empty());
    assert_eq!(page.next, ChangeCursor(10));
}
