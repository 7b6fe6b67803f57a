"""S3 clients no one here wrote, against a running p8fs S3 listener.

    python3 s3_clients.py SCENARIO --endpoint URL --key ID --secret SECRET [--other-key ID
        --other-secret SECRET] [--session-token TOKEN] --work DIR

Scenarios: `awscli` (the AWS CLI as a user types it), `boto3` (the SDK, default checksums on),
`bad-input` (hand-signed malformed requests), `tenants` (two tenants' keys), `rclone` (copy,
check, sync). Each prints what it checks and exits non-zero at the first failure, with the
client's output.
"""

import argparse
import datetime
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import boto3
import botocore
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

MIB = 1024 * 1024


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


def md5_file(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def write_random(path, size, seed):
    rng = random.Random(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, MIB)
            f.write(rng.randbytes(n))
            left -= n


def error_code(call):
    """Runs `call` and returns the S3 error code it fails with (None if it succeeds)."""
    try:
        call()
    except ClientError as e:
        return e.response.get("Error", {}).get("Code")
    return None


class Env:
    def __init__(self, args):
        self.args = args
        self.endpoint = args.endpoint
        self.work = args.work
        os.makedirs(self.work, exist_ok=True)

    def client(self, key=None, secret=None, token=None, **config):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key or self.args.key,
            aws_secret_access_key=secret or self.args.secret,
            aws_session_token=token if token is not None else self.args.session_token,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
        )

    def aws(self, *argv, ok=True):
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=self.args.key,
            AWS_SECRET_ACCESS_KEY=self.args.secret,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=os.path.join(self.work, "aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=os.path.join(self.work, "aws-credentials"),
            AWS_MAX_ATTEMPTS="1",
        )
        if self.args.session_token:
            env["AWS_SESSION_TOKEN"] = self.args.session_token
        else:
            env.pop("AWS_SESSION_TOKEN", None)
        cmd = ["aws", "--endpoint-url", self.endpoint, *argv]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if ok and done.returncode != 0:
            fail(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done


def scenario_awscli(env):
    b = "cli-bucket"
    env.aws("s3", "mb", f"s3://{b}")
    listed = env.aws("s3", "ls").stdout
    check(b in listed, "aws s3 mb, then aws s3 ls lists the bucket")
    small = os.path.join(env.work, "up", "small.txt")
    os.makedirs(os.path.dirname(small), exist_ok=True)
    with open(small, "w") as f:
        f.write("hello p8fs\n")
    large = os.path.join(env.work, "up", "large.bin")
    write_random(large, 20 * MIB + 12345, seed=1)
    env.aws("s3", "cp", small, f"s3://{b}/docs/small.txt")
    env.aws("s3", "cp", large, f"s3://{b}/docs/big/large.bin")
    head = json.loads(env.aws("s3api", "head-object", "--bucket", b, "--key", "docs/big/large.bin").stdout)
    check(head["ContentLength"] == 20 * MIB + 12345, "a 20 MiB cp lands with its size")
    check(head["ETag"].strip('"').endswith("-3"), f"a 20 MiB cp is a 3-part multipart upload (ETag {head['ETag']})")
    down = os.path.join(env.work, "down")
    os.makedirs(down, exist_ok=True)
    env.aws("s3", "cp", f"s3://{b}/docs/big/large.bin", os.path.join(down, "large.bin"))
    check(md5_file(os.path.join(down, "large.bin")) == md5_file(large), "the large file downloads byte for byte")
    env.aws("s3", "cp", f"s3://{b}/docs/small.txt", os.path.join(down, "small.txt"))
    check(md5_file(os.path.join(down, "small.txt")) == md5_file(small), "the small file downloads byte for byte")

    top = env.aws("s3", "ls", f"s3://{b}/").stdout
    check("PRE docs/" in top and "small.txt" not in top, "ls of the bucket rolls docs/ up as a prefix")
    docs = env.aws("s3", "ls", f"s3://{b}/docs/").stdout
    check("PRE big/" in docs and "small.txt" in docs, "ls of docs/ shows the object and the big/ prefix")
    recursive = env.aws("s3", "ls", "--recursive", f"s3://{b}/").stdout
    check("docs/big/large.bin" in recursive and "docs/small.txt" in recursive, "ls --recursive lists every key")

    tree = os.path.join(env.work, "tree")
    for i in range(12):
        write_random(os.path.join(tree, f"d{i % 3}", f"f{i}.bin"), 1000 + i * 777, seed=100 + i)
    env.aws("s3", "sync", tree, f"s3://{b}/tree")
    back = os.path.join(env.work, "tree-back")
    env.aws("s3", "sync", f"s3://{b}/tree", back)
    for i in range(12):
        rel = os.path.join(f"d{i % 3}", f"f{i}.bin")
        if md5_file(os.path.join(tree, rel)) != md5_file(os.path.join(back, rel)):
            fail(f"sync round trip changed {rel}")
    check(True, "sync up then sync down returns the same 12 files")
    again = env.aws("s3", "sync", tree, f"s3://{b}/tree").stdout
    check(again.strip() == "", "a second sync uploads nothing")

    url = env.aws("s3", "presign", f"s3://{b}/docs/small.txt", "--expires-in", "300").stdout.strip()
    with urllib.request.urlopen(url, timeout=30) as response:
        check(response.read() == b"hello p8fs\n", "a presigned URL serves the object to plain HTTP")
    tampered = url.replace("docs/small.txt", "docs/other.txt")
    try:
        urllib.request.urlopen(tampered, timeout=30)
        fail("a presigned URL for another key was accepted")
    except urllib.error.HTTPError as e:
        check(e.code == 403, "a presigned URL edited to another key is refused (403)")

    etag = head["ETag"]
    cond = env.aws("s3api", "get-object", "--bucket", b, "--key", "docs/big/large.bin", "--if-none-match", etag, os.path.join(down, "cond"), ok=False)
    check(cond.returncode != 0 and "304" in cond.stderr, "get-object --if-none-match the ETag is 304 Not Modified")
    cond = env.aws("s3api", "get-object", "--bucket", b, "--key", "docs/big/large.bin", "--if-match", '"nope"', os.path.join(down, "cond"), ok=False)
    check(cond.returncode != 0 and "PreconditionFailed" in cond.stderr, "get-object --if-match another ETag is PreconditionFailed")
    ranged = os.path.join(down, "range")
    out = json.loads(env.aws("s3api", "get-object", "--bucket", b, "--key", "docs/big/large.bin", "--range", "bytes=1048570-1048585", ranged).stdout)
    with open(large, "rb") as f:
        f.seek(1048570)
        want = f.read(16)
    with open(ranged, "rb") as f:
        got = f.read()
    check(got == want and out["ContentRange"] == f"bytes 1048570-1048585/{20 * MIB + 12345}", "a range across a chunk boundary returns exactly those bytes")

    rb = env.aws("s3", "rb", f"s3://{b}", ok=False)
    check(rb.returncode != 0 and "BucketNotEmpty" in rb.stderr, "rb of a non-empty bucket is BucketNotEmpty")
    env.aws("s3", "rm", f"s3://{b}/docs/small.txt")
    gone = env.aws("s3api", "head-object", "--bucket", b, "--key", "docs/small.txt", ok=False)
    check(gone.returncode != 0 and "404" in gone.stderr, "rm removes the object (head is 404)")
    env.aws("s3", "rm", "--recursive", f"s3://{b}/")
    env.aws("s3", "rb", f"s3://{b}")
    check(b not in env.aws("s3", "ls").stdout, "rm --recursive then rb removes the bucket")


def scenario_boto3(env):
    s3 = env.client()
    b = "sdk-bucket"
    s3.create_bucket(Bucket=b)
    check(error_code(lambda: s3.create_bucket(Bucket=b)) == "BucketAlreadyOwnedByYou", "creating an owned bucket again is BucketAlreadyOwnedByYou")
    body = os.urandom(300_000)
    put = s3.put_object(Bucket=b, Key="a/one.bin", Body=body, ContentType="application/x-test", Metadata={"color": "blue"})
    check(put["ETag"].strip('"') == hashlib.md5(body).hexdigest(), "a single PUT's ETag is the MD5 of the body")
    got = s3.get_object(Bucket=b, Key="a/one.bin", ChecksumMode="ENABLED")
    check(got["Body"].read() == body, "get_object returns the body")
    check(got["ContentType"] == "application/x-test" and got["Metadata"] == {"color": "blue"}, "content type and user metadata round-trip")
    sums = {k: v for k, v in got.items() if k.startswith("Checksum") and k != "ChecksumType"}
    check(len(sums) >= 1, f"the default checksum the SDK sent is stored and returned ({sorted(sums)})")
    for algorithm in ["CRC32", "CRC32C", "SHA256", "CRC64NVME", "SHA1"]:
        try:
            s3.put_object(Bucket=b, Key=f"sum/{algorithm}", Body=b"checksummed", ChecksumAlgorithm=algorithm)
        except ClientError as e:
            fail(f"put with {algorithm} failed: {e}")
        except botocore.exceptions.MissingDependencyException:
            print(f"note: this botocore cannot compute {algorithm} without the CRT; not sent")
            continue
        head = s3.head_object(Bucket=b, Key=f"sum/{algorithm}", ChecksumMode="ENABLED")
        check(f"Checksum{algorithm}" in head, f"a {algorithm} checksum is verified, stored and returned on HEAD")
    code = error_code(lambda: s3.put_object(Bucket=b, Key="bad-md5", Body=b"abc", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA=="))
    check(code == "BadDigest", f"a wrong Content-MD5 is BadDigest ({code})")
    check(error_code(lambda: s3.head_object(Bucket=b, Key="bad-md5")) == "404", "and nothing was stored")

    check(error_code(lambda: s3.put_object(Bucket=b, Key="a/one.bin", Body=b"x", IfNoneMatch="*")) == "PreconditionFailed", "If-None-Match: * over an existing key is PreconditionFailed")
    check(s3.get_object(Bucket=b, Key="a/one.bin")["Body"].read() == body, "and the object is unchanged")
    s3.put_object(Bucket=b, Key="a/new.bin", Body=b"new", IfNoneMatch="*")
    check(s3.get_object(Bucket=b, Key="a/new.bin")["Body"].read() == b"new", "If-None-Match: * creates an absent key")

    for i in range(7):
        s3.put_object(Bucket=b, Key=f"list/{i % 2}/k{i}", Body=b"x")
    s3.put_object(Bucket=b, Key="list/top", Body=b"x")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix="list/", Delimiter="/", PaginationConfig={"PageSize": 1})
    keys, prefixes, n = [], [], 0
    for page in pages:
        n += 1
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    check((prefixes, keys, n) == (["list/0/", "list/1/"], ["list/top"], 3), f"ListObjectsV2 with a delimiter pages one entry at a time ({prefixes}, {keys}, {n} pages)")
    after = s3.list_objects_v2(Bucket=b, Prefix="list/", StartAfter="list/1/k5")
    check([o["Key"] for o in after.get("Contents", [])] == ["list/top"], "StartAfter skips up to the given key")
    v1 = s3.list_objects(Bucket=b, Prefix="list/0/", MaxKeys=2)
    check(len(v1["Contents"]) == 2 and v1["IsTruncated"], "ListObjects (v1) pages with MaxKeys")

    key = "multi/part.bin"
    up = s3.create_multipart_upload(Bucket=b, Key=key, ContentType="application/x-parts")
    uid = up["UploadId"]
    p1 = os.urandom(5 * MIB)
    p2 = os.urandom(1234)
    e1 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=2, Body=p2)["ETag"]
    listed = s3.list_parts(Bucket=b, Key=key, UploadId=uid)
    check([p["PartNumber"] for p in listed["Parts"]] == [1, 2], "ListParts lists the uploaded parts")
    uploads = s3.list_multipart_uploads(Bucket=b)
    check([u["UploadId"] for u in uploads.get("Uploads", [])] == [uid], "ListMultipartUploads lists the upload")
    check(error_code(lambda: s3.head_object(Bucket=b, Key=key)) == "404", "parts are invisible before completion")
    parts = lambda *ps: {"Parts": [{"PartNumber": n, "ETag": e} for n, e in ps]}
    check(error_code(lambda: s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload=parts((1, e1), (2, '"0000"')))) == "InvalidPart", "completing with a wrong part ETag is InvalidPart")
    check(error_code(lambda: s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload=parts((2, e2), (1, e1)))) == "InvalidPartOrder", "parts out of order are InvalidPartOrder")
    check(error_code(lambda: s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload=parts((1, e1), (3, e2)))) == "InvalidPart", "a missing part is InvalidPart")
    small = s3.create_multipart_upload(Bucket=b, Key="multi/small")["UploadId"]
    s1 = s3.upload_part(Bucket=b, Key="multi/small", UploadId=small, PartNumber=1, Body=b"tiny")["ETag"]
    s2 = s3.upload_part(Bucket=b, Key="multi/small", UploadId=small, PartNumber=2, Body=b"tiny")["ETag"]
    check(error_code(lambda: s3.complete_multipart_upload(Bucket=b, Key="multi/small", UploadId=small, MultipartUpload=parts((1, s1), (2, s2)))) == "EntityTooSmall", "a part under 5 MiB that is not the last is EntityTooSmall")
    s3.abort_multipart_upload(Bucket=b, Key="multi/small", UploadId=small)
    check(error_code(lambda: s3.list_parts(Bucket=b, Key="multi/small", UploadId=small)) == "NoSuchUpload", "an aborted upload is NoSuchUpload")
    done = s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload=parts((1, e1), (2, e2)))
    want = hashlib.md5(bytes.fromhex(e1.strip('"')) + bytes.fromhex(e2.strip('"'))).hexdigest() + "-2"
    check(done["ETag"].strip('"') == want, "the multipart ETag is md5(concat(part md5s))-N")
    got = s3.get_object(Bucket=b, Key=key)
    check(got["Body"].read() == p1 + p2 and got["ContentType"] == "application/x-parts", "the completed object is the parts in order")
    rng = s3.get_object(Bucket=b, Key=key, Range=f"bytes={5 * MIB - 2}-{5 * MIB + 1}")["Body"].read()
    check(rng == (p1 + p2)[5 * MIB - 2 : 5 * MIB + 2], "a range across the part boundary is exact")
    check(error_code(lambda: s3.get_object(Bucket=b, Key=key, Range=f"bytes={10 * MIB}-")) == "InvalidRange", "a range past the end is InvalidRange")

    s3.copy_object(Bucket=b, Key="copy/of-multi", CopySource={"Bucket": b, "Key": key})
    check(s3.get_object(Bucket=b, Key="copy/of-multi")["Body"].read() == p1 + p2, "server-side copy copies every byte")

    big = os.path.join(env.work, "transfer.bin")
    write_random(big, 17 * MIB, seed=7)
    s3.upload_file(big, b, "transfer/big.bin")
    s3.download_file(b, "transfer/big.bin", big + ".back")
    check(md5_file(big) == md5_file(big + ".back"), "upload_file/download_file (the transfer manager, concurrent parts) round-trip 17 MiB")

    deleted = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": f"list/{i % 2}/k{i}"} for i in range(7)]})
    check(len(deleted.get("Deleted", [])) == 7 and not deleted.get("Errors"), "DeleteObjects deletes a batch")
    check(error_code(lambda: s3.delete_bucket(Bucket=b)) == "BucketNotEmpty", "delete_bucket of a non-empty bucket is BucketNotEmpty")
    check(error_code(lambda: s3.get_object(Bucket="no-such-bucket", Key="k")) == "NoSuchBucket", "a missing bucket is NoSuchBucket")
    check(error_code(lambda: s3.get_object(Bucket=b, Key="no/such/key")) == "NoSuchKey", "a missing key is NoSuchKey")


def signed(env, method, path, body=b"", headers=None, secret=None, query="", skew=None):
    """A hand-built SigV4 request, sent as is: for what the SDKs refuse to send. `skew` (a
    timedelta) signs it with a clock that far off."""
    url = f"{env.endpoint}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    credentials = Credentials(env.args.key, secret or env.args.secret, env.args.session_token)
    if skew is None:
        SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    else:
        honest = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: honest() + skew
        try:
            SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
        finally:
            botocore.auth.get_current_datetime = honest
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, data=body if body else None, method=method, headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def code_of(text):
    start = text.find("<Code>")
    end = text.find("</Code>")
    return text[start + 6 : end] if start >= 0 and end > start else None


def scenario_bad_input(env):
    s3 = env.client()
    b = "bad-input"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="keep", Body=b"kept")
    for name in ["Upper-Case", "a_b", "ab", "-lead", "192.168.0.1"]:
        status, text = signed(env, "PUT", f"/{name}")
        check(code_of(text) == "InvalidBucketName", f"bucket name {name!r} is InvalidBucketName ({status} {code_of(text)})")
    status, text = signed(env, "PUT", f"/{b}/" + "k" * 1025, body=b"x")
    check(code_of(text) == "KeyTooLongError", f"a 1025-byte key is KeyTooLongError ({status} {code_of(text)})")
    status, text = signed(env, "GET", f"/{b}/keep", secret="wrong" * 8)
    check(status == 403 and code_of(text) == "SignatureDoesNotMatch", f"a wrong secret is SignatureDoesNotMatch ({status} {code_of(text)})")
    status, text = signed(env, "POST", f"/{b}", body=b"<Delete><Object><Key>keep", query="delete")
    check(status == 400 and code_of(text) == "MalformedXML", f"malformed DeleteObjects XML is MalformedXML ({status} {code_of(text)})")
    uid = s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    status, text = signed(env, "POST", f"/{b}/mp", body=b"<CompleteMultipartUpload><Part>", query=f"uploadId={uid}")
    check(status == 400 and code_of(text) == "MalformedXML", f"malformed CompleteMultipartUpload XML is MalformedXML ({status} {code_of(text)})")
    for skew in [datetime.timedelta(minutes=-20), datetime.timedelta(minutes=20)]:
        status, text = signed(env, "GET", f"/{b}/keep", skew=skew)
        check(status == 403 and code_of(text) == "RequestTimeTooSkewed", f"a request signed by a clock {skew} off is RequestTimeTooSkewed ({status} {code_of(text)})")
    check(s3.get_object(Bucket=b, Key="keep")["Body"].read() == b"kept", "nothing stored changed")


def scenario_tenants(env):
    a = env.client()
    other = env.client(key=env.args.other_key, secret=env.args.other_secret, token="")
    a.create_bucket(Bucket="tenant-a-private")
    a.put_object(Bucket="tenant-a-private", Key="secret.txt", Body=b"for a only")
    check([x["Name"] for x in other.list_buckets()["Buckets"]] == [], "tenant B lists none of A's buckets")
    for what, call in [
        ("head_bucket", lambda: other.head_bucket(Bucket="tenant-a-private")),
        ("get_object", lambda: other.get_object(Bucket="tenant-a-private", Key="secret.txt")),
        ("list_objects_v2", lambda: other.list_objects_v2(Bucket="tenant-a-private")),
        ("put_object", lambda: other.put_object(Bucket="tenant-a-private", Key="x", Body=b"x")),
        ("delete_object", lambda: other.delete_object(Bucket="tenant-a-private", Key="secret.txt")),
    ]:
        code = error_code(call)
        check(code in ("NoSuchBucket", "404"), f"tenant B's {what} on A's bucket answers as if it did not exist ({code})")
    other.create_bucket(Bucket="tenant-a-private")
    check(other.list_objects_v2(Bucket="tenant-a-private").get("KeyCount") == 0, "B may own a bucket of the same name, empty")
    check(a.get_object(Bucket="tenant-a-private", Key="secret.txt")["Body"].read() == b"for a only", "A's object is untouched")


def scenario_rclone(env):
    b = "rclone-bucket"
    env.client().create_bucket(Bucket=b)
    src = os.path.join(env.work, "rclone-src")
    for i in range(20):
        write_random(os.path.join(src, f"dir{i % 4}", f"file{i}.dat"), 500 * i + 1, seed=1000 + i)
    write_random(os.path.join(src, "large.dat"), 9 * MIB, seed=9)
    rc = dict(os.environ)
    # The endpoint is plain HTTP; a CA bundle from the environment only breaks rclone's client.
    rc.pop("AWS_CA_BUNDLE", None)
    rc.update(
        RCLONE_CONFIG_P8_TYPE="s3",
        RCLONE_CONFIG_P8_PROVIDER="Other",
        RCLONE_CONFIG_P8_ACCESS_KEY_ID=env.args.key,
        RCLONE_CONFIG_P8_SECRET_ACCESS_KEY=env.args.secret,
        RCLONE_CONFIG_P8_ENDPOINT=env.endpoint,
        RCLONE_CONFIG_P8_FORCE_PATH_STYLE="true",
        RCLONE_CONFIG_P8_REGION="us-east-1",
        RCLONE_CONFIG=os.path.join(env.work, "rclone.conf"),
    )
    if env.args.session_token:
        rc["RCLONE_CONFIG_P8_SESSION_TOKEN"] = env.args.session_token

    def rclone(*argv):
        done = subprocess.run(["rclone", "--retries", "1", "--low-level-retries", "1", *argv], env=rc, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            fail(f"rclone {' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    rclone("copy", src, f"p8:{b}/copy")
    rclone("check", src, f"p8:{b}/copy")
    check(True, "rclone copy then rclone check (sizes and MD5s) agree")
    os.remove(os.path.join(src, "dir1", "file5.dat"))
    write_random(os.path.join(src, "dir1", "added.dat"), 4321, seed=77)
    rclone("sync", src, f"p8:{b}/copy")
    rclone("check", src, f"p8:{b}/copy")
    check(True, "rclone sync propagates an addition and a deletion")
    dst = os.path.join(env.work, "rclone-dst")
    rclone("sync", f"p8:{b}/copy", dst)
    rclone("check", src, dst)
    check(True, "rclone sync down reproduces the tree")
    listed = rclone("lsf", "-R", f"p8:{b}/copy").stdout.split()
    check("dir1/added.dat" in listed and "dir1/file5.dat" not in listed, "rclone lsf sees the synced tree")


CRASH_BUCKET = "crash-bucket"


def manifest_path(env):
    return os.path.join(env.work, "manifest.json")


def scenario_crash_prepare(env):
    """The completed objects a crash must leave intact, listed in a manifest."""
    s3 = env.client()
    s3.create_bucket(Bucket=CRASH_BUCKET)
    manifest = {}
    for i, size in enumerate([0, 1, 4096, 3 * MIB + 5]):
        body = random.Random(i).randbytes(size)
        s3.put_object(Bucket=CRASH_BUCKET, Key=f"done/{i}", Body=body)
        manifest[f"done/{i}"] = hashlib.md5(body).hexdigest()
    whole = os.path.join(env.work, "whole.bin")
    write_random(whole, 12 * MIB, seed=5)
    s3.upload_file(whole, CRASH_BUCKET, "done/multipart")
    manifest["done/multipart"] = md5_file(whole)
    with open(manifest_path(env), "w") as f:
        json.dump(manifest, f)


def scenario_crash_upload(env):
    """An unfinished multipart upload and a large PUT in flight when the gateway (process
    `--pid`) is killed with SIGKILL."""
    import signal
    import threading
    import time

    s3 = env.client()
    uid = s3.create_multipart_upload(Bucket=CRASH_BUCKET, Key="partial/multipart")["UploadId"]
    s3.upload_part(Bucket=CRASH_BUCKET, Key="partial/multipart", UploadId=uid, PartNumber=1, Body=os.urandom(5 * MIB))
    big = os.path.join(env.work, "big.bin")
    write_random(big, 400 * MIB, seed=6)
    outcome = {}

    def upload():
        try:
            with open(big, "rb") as f:
                s3.put_object(Bucket=CRASH_BUCKET, Key="partial/large", Body=f)
            outcome["done"] = True
        except Exception as e:  # the connection dies with the gateway
            outcome["error"] = repr(e)

    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(1.0)
    os.kill(env.args.pid, signal.SIGKILL)
    thread.join(timeout=120)
    check("error" in outcome, "the large PUT was cut off by the kill (it did not complete)")


def scenario_crash_verify(env):
    """After a restart: only completed objects are listed, each with its bytes, and the reaper
    removes the abandoned upload."""
    import time

    s3 = env.client()
    with open(manifest_path(env)) as f:
        manifest = json.load(f)
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=CRASH_BUCKET).get("Contents", []))
    check(listed == sorted(manifest), f"after the restart exactly the completed objects are listed ({listed})")
    for key, md5 in manifest.items():
        got = hashlib.md5(s3.get_object(Bucket=CRASH_BUCKET, Key=key)["Body"].read()).hexdigest()
        if got != md5:
            fail(f"{key} changed across the crash")
    check(True, "every completed object's MD5 matches")
    deadline = time.time() + 150
    while s3.list_multipart_uploads(Bucket=CRASH_BUCKET).get("Uploads"):
        if time.time() > deadline:
            fail("the abandoned multipart upload was not reaped within 150 s (its age limit is 1 minute)")
        time.sleep(0.5)
    check(True, "the reaper removed the abandoned multipart upload")


SCENARIOS = {
    "crash-prepare": scenario_crash_prepare,
    "crash-upload": scenario_crash_upload,
    "crash-verify": scenario_crash_verify,
    "awscli": scenario_awscli,
    "boto3": scenario_boto3,
    "bad-input": scenario_bad_input,
    "tenants": scenario_tenants,
    "rclone": scenario_rclone,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--session-token", default="")
    parser.add_argument("--other-key")
    parser.add_argument("--other-secret")
    parser.add_argument("--work", required=True)
    parser.add_argument("--pid", type=int, help="the gateway's process id (crash-upload)")
    args = parser.parse_args()
    env = Env(args)
    try:
        SCENARIOS[args.scenario](env)
    finally:
        shutil.rmtree(os.path.join(env.work, "tree-back"), ignore_errors=True)
    print(f"scenario {args.scenario}: all checks passed")


if __name__ == "__main__":
    main()
