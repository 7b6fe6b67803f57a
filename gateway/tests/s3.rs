//! The S3 listener through the AWS SDK for Rust (SigV4, aws-chunked bodies with checksum
//! trailers, presigning), against `p8fs serve`'s assembly on a loopback port: the RocksDB
//! backend, the accept loop, access keys of two tenants made with `S3Credentials`.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use aws_smithy_async::time::StaticTimeSource;
use p8fs_auth::s3::s3_scopes;
use p8fs_auth::{Issuer, Scope, ScopeSet};
use p8fs_core::{Clock, SystemClock, TenantId};
use p8fs_gateway::config::{Config, Overrides};
use p8fs_gateway::{connections, server};

struct Server {
    endpoint: String,
    services: server::Services,
    config: Config,
    _dir: tempfile::TempDir,
}

struct Key {
    id: String,
    secret: String,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().join("data")),
        ..Overrides::default()
    };
    let config = Config::load(None, Vec::new(), &overrides).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let services = server::services(&config, clock.clone()).await.unwrap();
    let app = p8fs_gateway::s3::app(&services, &config, clock).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let limits = config.limits.clone();
    tokio::spawn(async move {
        connections::serve(listener, app, &limits, std::future::pending()).await;
    });
    Server {
        endpoint: format!("http://{address}"),
        services,
        config,
        _dir: dir,
    }
}

impl Server {
    async fn key(&self, tenant: &str, scopes: ScopeSet) -> Key {
        let created = self
            .services
            .s3
            .create_key(&TenantId::new(tenant).unwrap(), scopes, None)
            .await
            .unwrap();
        Key {
            id: created.access_key_id,
            secret: created.secret_access_key.to_string(),
        }
    }

    fn client(&self, key: &Key) -> Client {
        self.client_with(&key.id, &key.secret, None, None)
    }

    fn client_with(
        &self,
        id: &str,
        secret: &str,
        token: Option<&str>,
        skew: Option<Duration>,
    ) -> Client {
        let http = aws_smithy_http_client::Builder::new().build_http();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                id,
                secret,
                token.map(str::to_owned),
                None,
                "p8fs-test",
            ))
            .http_client(http);
        if let Some(skew) = skew {
            // No retry: the SDK would correct its clock from the answer and try again.
            config = config.retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled());
            let now = SystemTime::UNIX_EPOCH
                + Duration::from_millis(u64::try_from(SystemClock.now()).unwrap());
            config = config.time_source(StaticTimeSource::new(now + skew));
        }
        Client::from_conf(config.build())
    }

    async fn stored_bytes(&self, tenant: &str) -> u64 {
        self.services
            .backend
            .stored_bytes(&TenantId::new(tenant).unwrap())
            .await
            .unwrap()
    }
}

/// The HTTP status and S3 error code of a failed call.
fn failure<E: ProvideErrorMetadata>(error: SdkError<E, HttpResponse>) -> (u16, String) {
    let status = error.raw_response().map_or(0, |r| r.status().as_u16());
    (status, error.code().unwrap_or_default().to_owned())
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

async fn put(client: &Client, bucket: &str, key: &str, body: Vec<u8>) -> String {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned()
}

async fn get(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

#[tokio::test]
async fn buckets_belong_to_one_tenant() {
    let server = start().await;
    let alpha = server.client(&server.key("alpha", s3_scopes()).await);
    let beta = server.client(&server.key("beta", s3_scopes()).await);
    alpha.create_bucket().bucket("photos").send().await.unwrap();
    let (status, code) = failure(
        alpha
            .create_bucket()
            .bucket("photos")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (409, "BucketAlreadyOwnedByYou"));
    let (status, code) = failure(
        alpha
            .create_bucket()
            .bucket("Bad_Name")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "InvalidBucketName"));
    alpha.head_bucket().bucket("photos").send().await.unwrap();
    let listed = alpha.list_buckets().send().await.unwrap();
    let names: Vec<_> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["photos"]);
    alpha
        .get_bucket_location()
        .bucket("photos")
        .send()
        .await
        .unwrap();

    // Another tenant sees no such bucket, and may have its own of the same name.
    let (status, _) = failure(
        beta.head_bucket()
            .bucket("photos")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);
    let (status, code) = failure(
        beta.get_object()
            .bucket("photos")
            .key("x")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (404, "NoSuchBucket"));
    assert!(
        beta.list_buckets()
            .send()
            .await
            .unwrap()
            .buckets()
            .is_empty()
    );
    beta.create_bucket().bucket("photos").send().await.unwrap();
    put(&beta, "photos", "mine", b"beta's".to_vec()).await;
    let (_, code) = failure(
        alpha
            .get_object()
            .bucket("photos")
            .key("mine")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "NoSuchKey");

    put(&alpha, "photos", "a", b"x".to_vec()).await;
    let (status, code) = failure(
        alpha
            .delete_bucket()
            .bucket("photos")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (409, "BucketNotEmpty"));
    alpha
        .delete_object()
        .bucket("photos")
        .key("a")
        .send()
        .await
        .unwrap();
    alpha.delete_bucket().bucket("photos").send().await.unwrap();
    assert_eq!(get(&beta, "photos", "mine").await, b"beta's");
}

#[tokio::test]
async fn objects_stream_in_chunks_with_ranges_and_attributes() {
    let server = start().await;
    let client = server.client(&server.key("alpha", s3_scopes()).await);
    client.create_bucket().bucket("data").send().await.unwrap();

    let small = b"hello, objects".to_vec();
    let etag = client
        .put_object()
        .bucket("data")
        .key("dir/small.txt")
        .content_type("text/plain")
        .cache_control("no-cache")
        .metadata("Owner", "me")
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    assert_eq!(etag, format!("\"{}\"", p8fs_core::object::md5_hex(&small)));
    let head = client
        .head_object()
        .bucket("data")
        .key("dir/small.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(small.len() as i64));
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(head.cache_control(), Some("no-cache"));
    assert_eq!(
        head.metadata().unwrap().get("owner").map(String::as_str),
        Some("me")
    );
    assert_eq!(get(&client, "data", "dir/small.txt").await, small);

    // Several chunks (1 MiB each) and a partial last one.
    let large = bytes(3 * 1024 * 1024 + 12_345, 7);
    let etag = put(&client, "data", "large.bin", large.clone()).await;
    assert_eq!(etag, format!("\"{}\"", p8fs_core::object::md5_hex(&large)));
    assert_eq!(get(&client, "data", "large.bin").await, large);

    // A range across a chunk boundary, a suffix, and one past the end.
    let ranged = client
        .get_object()
        .bucket("data")
        .key("large.bin")
        .range("bytes=1048570-1048589")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ranged.content_range(),
        Some(format!("bytes 1048570-1048589/{}", large.len()).as_str())
    );
    let body = ranged.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], &large[1_048_570..1_048_590]);
    let suffix = client
        .get_object()
        .bucket("data")
        .key("large.bin")
        .range("bytes=-5")
        .send()
        .await
        .unwrap();
    let body = suffix.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], &large[large.len() - 5..]);
    let (status, code) = failure(
        client
            .get_object()
            .bucket("data")
            .key("large.bin")
            .range(format!("bytes={}-", large.len()))
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (416, "InvalidRange"));

    // Server-side copy, chunk by chunk into a new blob.
    let copied = client
        .copy_object()
        .bucket("data")
        .key("copy.bin")
        .copy_source("data/large.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        copied.copy_object_result().unwrap().e_tag(),
        Some(etag.as_str())
    );
    assert_eq!(get(&client, "data", "copy.bin").await, large);

    // An over-long key, and a deleted object.
    let (status, code) = failure(
        client
            .put_object()
            .bucket("data")
            .key("k".repeat(1025))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "KeyTooLongError"));
    client
        .delete_object()
        .bucket("data")
        .key("copy.bin")
        .send()
        .await
        .unwrap();
    let (status, code) = failure(
        client
            .get_object()
            .bucket("data")
            .key("copy.bin")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (404, "NoSuchKey"));
}

#[tokio::test]
async fn conditions_on_reads_and_writes() {
    let server = start().await;
    let client = server.client(&server.key("alpha", s3_scopes()).await);
    client.create_bucket().bucket("cond").send().await.unwrap();
    let etag = put(&client, "cond", "k", b"one".to_vec()).await;

    let (status, _) = failure(
        client
            .get_object()
            .bucket("cond")
            .key("k")
            .if_none_match(&etag)
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 304);
    let (status, code) = failure(
        client
            .get_object()
            .bucket("cond")
            .key("k")
            .if_match("\"0123\"")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (412, "PreconditionFailed"));
    client
        .get_object()
        .bucket("cond")
        .key("k")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    let later = aws_sdk_s3::primitives::DateTime::from_secs(SystemClock.now() / 1000 + 3600);
    let (status, _) = failure(
        client
            .head_object()
            .bucket("cond")
            .key("k")
            .if_modified_since(later)
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 304);

    // Conditional writes: create-only, and compare-and-swap on the ETag.
    let (status, code) = failure(
        client
            .put_object()
            .bucket("cond")
            .key("k")
            .if_none_match("*")
            .body(ByteStream::from_static(b"two"))
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (412, "PreconditionFailed"));
    let (status, _) = failure(
        client
            .put_object()
            .bucket("cond")
            .key("k")
            .if_match("\"0123\"")
            .body(ByteStream::from_static(b"two"))
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 412);
    client
        .put_object()
        .bucket("cond")
        .key("k")
        .if_match(&etag)
        .body(ByteStream::from_static(b"two"))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&client, "cond", "k").await, b"two");
    client
        .put_object()
        .bucket("cond")
        .key("new")
        .if_none_match("*")
        .body(ByteStream::from_static(b"fresh"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn multipart_uploads_complete_as_s3_validates_them() {
    let server = start().await;
    let client = server.client(&server.key("alpha", s3_scopes()).await);
    client.create_bucket().bucket("mpu").send().await.unwrap();
    let created = client
        .create_multipart_upload()
        .bucket("mpu")
        .key("big")
        .content_type("application/octet-stream")
        .send()
        .await
        .unwrap();
    let id = created.upload_id().unwrap().to_owned();
    let first = bytes(5 * 1024 * 1024, 1);
    let second = bytes(300_000, 2);
    let mut etags = Vec::new();
    for (number, body) in [(1, &first), (2, &second)] {
        let part = client
            .upload_part()
            .bucket("mpu")
            .key("big")
            .upload_id(&id)
            .part_number(number)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
        etags.push(part.e_tag().unwrap().to_owned());
    }
    let parts = client
        .list_parts()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(parts.parts().len(), 2);
    assert_eq!(parts.parts()[1].size(), Some(300_000));
    let uploads = client
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads()[0].upload_id(), Some(id.as_str()));
    // Invisible until completed.
    let (_, code) = failure(
        client
            .get_object()
            .bucket("mpu")
            .key("big")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "NoSuchKey");

    let part = |number: i32, etag: &str| {
        CompletedPart::builder()
            .part_number(number)
            .e_tag(etag)
            .build()
    };
    let complete = |parts: Vec<CompletedPart>| {
        client
            .complete_multipart_upload()
            .bucket("mpu")
            .key("big")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
    };
    let (status, code) = failure(
        complete(vec![part(1, &etags[0]), part(3, &etags[1])])
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "InvalidPart"));
    let (_, code) = failure(
        complete(vec![part(2, &etags[1]), part(1, &etags[0])])
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "InvalidPartOrder");
    let (_, code) = failure(
        complete(vec![part(2, &etags[1]), part(3, &etags[1])])
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "InvalidPart");
    let done = complete(vec![part(1, &etags[0]), part(2, &etags[1])])
        .await
        .unwrap();
    assert!(
        done.e_tag().unwrap().ends_with("-2\""),
        "{:?}",
        done.e_tag()
    );
    let mut whole = first.clone();
    whole.extend_from_slice(&second);
    assert_eq!(get(&client, "mpu", "big").await, whole);
    let second_part = client
        .get_object()
        .bucket("mpu")
        .key("big")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(second_part.parts_count(), Some(2));
    let body = second_part.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], &second[..]);

    // A small part that is not the last is refused; an aborted upload is gone.
    let small = client
        .create_multipart_upload()
        .bucket("mpu")
        .key("small")
        .send()
        .await
        .unwrap();
    let small_id = small.upload_id().unwrap().to_owned();
    let mut small_tags = Vec::new();
    for number in [1, 2] {
        let part = client
            .upload_part()
            .bucket("mpu")
            .key("small")
            .upload_id(&small_id)
            .part_number(number)
            .body(ByteStream::from_static(b"tiny"))
            .send()
            .await
            .unwrap();
        small_tags.push(part.e_tag().unwrap().to_owned());
    }
    let (status, code) = failure(
        client
            .complete_multipart_upload()
            .bucket("mpu")
            .key("small")
            .upload_id(&small_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(part(1, &small_tags[0]))
                    .parts(part(2, &small_tags[1]))
                    .build(),
            )
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "EntityTooSmall"));
    client
        .abort_multipart_upload()
        .bucket("mpu")
        .key("small")
        .upload_id(&small_id)
        .send()
        .await
        .unwrap();
    let (status, code) = failure(
        client
            .list_parts()
            .bucket("mpu")
            .key("small")
            .upload_id(&small_id)
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (404, "NoSuchUpload"));
}

#[tokio::test]
async fn listings_roll_up_delimiters_and_page_with_tokens() {
    let server = start().await;
    let client = server.client(&server.key("alpha", s3_scopes()).await);
    client.create_bucket().bucket("list").send().await.unwrap();
    for key in ["a/1", "a/2", "b/x/1", "c", "d e+f"] {
        put(&client, "list", key, key.as_bytes().to_vec()).await;
    }
    let listed = client
        .list_objects_v2()
        .bucket("list")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<_> = listed
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(keys, ["c", "d e+f"]);
    assert_eq!(prefixes, ["a/", "b/"]);

    // One at a time through continuation tokens.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket("list")
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        seen.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(str::to_owned),
        );
        match page.next_continuation_token() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["a/1", "a/2", "b/x/1", "c", "d e+f"]);
    let under = client
        .list_objects_v2()
        .bucket("list")
        .prefix("a/")
        .start_after("a/1")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = under.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["a/2"]);

    // Version 1: markers, also past a common prefix.
    let first = client
        .list_objects()
        .bucket("list")
        .delimiter("/")
        .max_keys(1)
        .send()
        .await
        .unwrap();
    assert_eq!(first.next_marker(), Some("a/"));
    let rest = client
        .list_objects()
        .bucket("list")
        .delimiter("/")
        .marker("a/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = rest
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["b/"]);

    let (status, code) = failure(
        client
            .list_objects_v2()
            .bucket("list")
            .continuation_token("!not a token!")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "InvalidArgument"));

    // DeleteObjects removes several keys at once.
    let delete = aws_sdk_s3::types::Delete::builder()
        .objects(
            aws_sdk_s3::types::ObjectIdentifier::builder()
                .key("a/1")
                .build()
                .unwrap(),
        )
        .objects(
            aws_sdk_s3::types::ObjectIdentifier::builder()
                .key("c")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let deleted = client
        .delete_objects()
        .bucket("list")
        .delete(delete)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.deleted().len(), 2);
    let left = client
        .list_objects_v2()
        .bucket("list")
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(3));
}

#[tokio::test]
async fn checksums_and_digests_are_verified_before_anything_is_stored() {
    let server = start().await;
    let client = server.client(&server.key("alpha", s3_scopes()).await);
    client.create_bucket().bucket("sums").send().await.unwrap();
    let body = bytes(2 * 1024 * 1024 + 17, 3);

    // The SDK computes the CRC32 and sends it in the trailer of an aws-chunked body.
    let put = client
        .put_object()
        .bucket("sums")
        .key("crc")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let crc = put.checksum_crc32().unwrap().to_owned();
    let head = client
        .head_object()
        .bucket("sums")
        .key("crc")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_crc32(), Some(crc.as_str()));
    // Downloads are validated by the SDK against the stored checksum.
    let got = client
        .get_object()
        .bucket("sums")
        .key("crc")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_crc32(), Some(crc.as_str()));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().to_vec(),
        body
    );
    client
        .put_object()
        .bucket("sums")
        .key("sha")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from_static(b"sha me"))
        .send()
        .await
        .unwrap();

    let stored = server.stored_bytes("alpha").await;
    // A wrong checksum in a header.
    let (status, code) = failure(
        client
            .put_object()
            .bucket("sums")
            .key("bad-crc")
            .checksum_crc32("AAAAAA==")
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "BadDigest"));
    // A wrong Content-MD5.
    let (status, code) = failure(
        client
            .put_object()
            .bucket("sums")
            .key("bad-md5")
            .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "BadDigest"));
    assert_eq!(server.stored_bytes("alpha").await, stored);
    for key in ["bad-crc", "bad-md5"] {
        let (_, code) = failure(
            client
                .head_object()
                .bucket("sums")
                .key(key)
                .send()
                .await
                .unwrap_err(),
        );
        assert_eq!(code, "NotFound", "{key}");
    }
}

#[tokio::test]
async fn signatures_scopes_and_presigned_urls() {
    let server = start().await;
    let key = server.key("alpha", s3_scopes()).await;
    let client = server.client(&key);
    client.create_bucket().bucket("auth").send().await.unwrap();
    put(&client, "auth", "doc", b"signed".to_vec()).await;

    let wrong = server.client_with(
        &key.id,
        "not-the-secret-not-the-secret-0000000000",
        None,
        None,
    );
    let (status, code) = failure(wrong.list_buckets().send().await.unwrap_err());
    assert_eq!((status, code.as_str()), (403, "SignatureDoesNotMatch"));
    let unknown = server.client_with("P8AUNKNOWNUNKNOWN000", &key.secret, None, None);
    let (status, code) = failure(unknown.list_buckets().send().await.unwrap_err());
    assert_eq!((status, code.as_str()), (403, "InvalidAccessKeyId"));
    let skewed = server.client_with(&key.id, &key.secret, None, Some(Duration::from_secs(3600)));
    let (status, code) = failure(skewed.list_buckets().send().await.unwrap_err());
    assert_eq!((status, code.as_str()), (403, "RequestTimeTooSkewed"));

    // Anonymous requests are refused.
    let http = reqwest::Client::new();
    let anonymous = http
        .get(format!("{}/auth/doc", server.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 403);
    assert!(anonymous.text().await.unwrap().contains("AccessDenied"));

    // A presigned GET works for anyone holding the URL.
    let presigned = client
        .get_object()
        .bucket("auth")
        .key("doc")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let fetched = http.get(presigned.uri()).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), b"signed");

    // A read-only key reads but does not write.
    let reader = server.client(
        &server
            .key("alpha", ScopeSet::parse("s3:read").unwrap())
            .await,
    );
    assert_eq!(get(&reader, "auth", "doc").await, b"signed");
    let (status, code) = failure(
        reader
            .put_object()
            .bucket("auth")
            .key("no")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));
}

#[tokio::test]
async fn sts_trades_an_access_token_for_temporary_credentials() {
    let server = start().await;
    let issuer = Issuer::new(
        server.services.keys.clone(),
        server::token_config(&server.config),
        Arc::new(SystemClock),
    );
    let scopes: ScopeSet = [Scope::S3Read, Scope::S3Write].into_iter().collect();
    let token = issuer
        .issue(
            &TenantId::new("gamma").unwrap(),
            "tester",
            "tests",
            &scopes,
            Duration::from_secs(600),
        )
        .unwrap()
        .token;
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/", server.endpoint))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&DurationSeconds=900&WebIdentityToken={token}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let xml = answer.text().await.unwrap();
    let field = |name: &str| {
        let start = xml.find(&format!("<{name}>")).unwrap() + name.len() + 2;
        let end = xml.find(&format!("</{name}>")).unwrap();
        xml[start..end].to_owned()
    };
    let (id, secret, session) = (
        field("AccessKeyId"),
        field("SecretAccessKey"),
        field("SessionToken"),
    );
    assert!(xml.contains("<Expiration>"), "{xml}");

    let temporary = server.client_with(&id, &secret, Some(&session), None);
    temporary
        .create_bucket()
        .bucket("temp")
        .send()
        .await
        .unwrap();
    put(&temporary, "temp", "k", b"v".to_vec()).await;
    let without = server.client_with(&id, &secret, None, None);
    let (status, code) = failure(without.list_buckets().send().await.unwrap_err());
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));
    let wrong = server.client_with(&id, &secret, Some("not-the-session-token"), None);
    let (_, code) = failure(wrong.list_buckets().send().await.unwrap_err());
    assert_eq!(code, "InvalidToken");

    let refused = http
        .post(format!("{}/", server.endpoint))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=AssumeRoleWithWebIdentity&WebIdentityToken=not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("InvalidIdentityToken")
    );
}

#[tokio::test]
async fn download_urls_signed_for_a_token_read_one_object_until_it_is_revoked() {
    let server = start().await;
    let owner = server.client(&server.key("delta", s3_scopes()).await);
    owner.create_bucket().bucket("docs").send().await.unwrap();
    let key = "notes/a b+c~ü(1).txt";
    let body = bytes(70_000, 9);
    put(&owner, "docs", key, body.clone()).await;
    put(&owner, "docs", "secret.txt", b"other".to_vec()).await;

    let issuer = Issuer::new(
        server.services.keys.clone(),
        server::token_config(&server.config),
        Arc::new(SystemClock),
    );
    let token = |scopes: &[Scope]| {
        issuer
            .issue(
                &TenantId::new("delta").unwrap(),
                "reader",
                "tests",
                &scopes.iter().copied().collect(),
                Duration::from_secs(600),
            )
            .unwrap()
            .token
    };
    let verifier = &server.services.verifier;
    let principal = verifier.verify(&token(&[Scope::S3Read])).await.unwrap();
    let presigner = p8fs_s3::presign::Presigner::new(
        server.services.s3.clone(),
        &server.endpoint,
        server.services.clock.clone(),
    );
    let bucket = p8fs_core::BucketName::new("docs").unwrap();
    let object = p8fs_core::ObjectKey::new(key).unwrap();
    let before = SystemClock.now();
    let signed = presigner
        .download_url(&principal, &bucket, &object, Duration::from_secs(300))
        .await
        .unwrap();
    assert!((before + 299_000..=before + 301_000).contains(&signed.expires_at));
    assert!(signed.url.starts_with(&server.endpoint), "{}", signed.url);

    // Anyone holding the URL reads the object with a plain GET, no token.
    let http = reqwest::Client::new();
    let fetched = http.get(&signed.url).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), body.as_slice());

    // The signature covers the method and the path: not another object, not a write.
    let query = signed.url.split_once('?').unwrap().1;
    let elsewhere = format!("{}/docs/secret.txt?{query}", server.endpoint);
    let other = http.get(&elsewhere).send().await.unwrap();
    assert_eq!(other.status(), 403);
    let write = http.put(&signed.url).body("x").send().await.unwrap();
    assert_eq!(write.status(), 403);
    assert_eq!(get(&owner, "docs", key).await, body);

    // One set of credentials per token: the second URL is signed with the same access key.
    let credential = |url: &str| {
        url.split(['?', '&'])
            .find_map(|p| p.strip_prefix("X-Amz-Credential="))
            .unwrap()
            .split("%2F")
            .next()
            .unwrap()
            .to_owned()
    };
    let again = presigner
        .download_url(&principal, &bucket, &object, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(credential(&again.url), credential(&signed.url));

    // Never longer than the token: asked for a week, it ends with the token (600 s).
    let week = presigner
        .download_url(
            &principal,
            &bucket,
            &object,
            p8fs_s3::presign::MAX_PRESIGNED_EXPIRY,
        )
        .await
        .unwrap();
    assert!(week.expires_at <= principal.expires_at);

    // Bad input names the field; a token without s3:read gets nothing.
    let error = presigner
        .download_url(&principal, &bucket, &object, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("expiresIn"), "{error}");
    let kv_only = verifier.verify(&token(&[Scope::KvRead])).await.unwrap();
    let error = presigner
        .download_url(&kv_only, &bucket, &object, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), p8fs_core::ErrorKind::Forbidden);

    // Revoking the token ends every URL signed for it.
    verifier
        .revoke(&principal.tenant, &principal.token_id, principal.expires_at)
        .await
        .unwrap();
    let revoked = http.get(&signed.url).send().await.unwrap();
    assert_eq!(revoked.status(), 403);
}
