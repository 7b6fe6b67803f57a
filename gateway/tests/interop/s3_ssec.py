"""SSE-C (customer-provided keys) through S3 clients no one here wrote, against a running p8fs
S3 listener.

    python3 s3_ssec.py SCENARIO --endpoint URL --key ID --secret SECRET --work DIR

Scenarios: `awscli` (`aws s3 cp --sse-c AES256 --sse-c-key fileb://...` and the `s3api`
variants: a multipart upload of a file over 8 MiB, ranged gets, copies with a source key) and
`boto3` (put, get, head, copy, ranged gets and a multipart upload with SSECustomerKey, and every
refusal a client meets: no key, a wrong key, a bad MD5, a key for an unencrypted object). Each
prints what it checks and exits non-zero at the first failure. Both append what they stored to
`WORK/stored.json` ({bucket, key, plaintext file}) so the caller can look at the stored bytes.

    python3 s3_ssec.py fronts --endpoint URL --key ID --secret SECRET --work DIR \
        --url http://127.0.0.1:PORT --token=T --mcp-token=T --proto-dir DIR

Scenario `fronts` (after the others): every object in `WORK/stored.json` is refused by the
front-ends that cannot carry its key: REST `GET` and `HEAD /v1/objects/...` answer 403 with a
problem document (never ciphertext), gRPC `Objects.Download` PERMISSION_DENIED (stubs made from
the server's .proto files as in `grpc_clients.py`), MCP's `read_file` tool a tool error saying
the key is the client's and the `p8fs://objects/...` resource an error (through the official
Python MCP SDK, with --mcp-token, a token for the MCP resource), never a byte of the object,
and `GET /v1/index/...` settles on `failed` / `client_held_key`; an unencrypted object in the
same bucket is served, so the refusals are not the tokens'.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

MIB = 1024 * 1024
CHUNK = 64 * 1024


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


def random_bytes(size, seed):
    return random.Random(seed).randbytes(size)


def error_of(call):
    """Runs `call` and returns (S3 error code, HTTP status) it fails with, or (None, None)."""
    try:
        call()
    except ClientError as e:
        return e.response.get("Error", {}).get("Code"), e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None, None


class Env:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        os.makedirs(self.work, exist_ok=True)

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.args.endpoint,
            aws_access_key_id=self.args.key,
            aws_secret_access_key=self.args.secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
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
        env.pop("AWS_SESSION_TOKEN", None)
        cmd = ["aws", "--endpoint-url", self.args.endpoint, *argv]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if ok and done.returncode != 0:
            fail(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def file(self, name, data):
        path = os.path.join(self.work, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def stored(self, bucket, key, path):
        """Records an SSE-C object and the file holding its plaintext."""
        manifest = os.path.join(self.work, "stored.json")
        entries = []
        if os.path.exists(manifest):
            with open(manifest) as f:
                entries = json.load(f)
        entries.append({"bucket": bucket, "key": key, "plaintext": path})
        with open(manifest, "w") as f:
            json.dump(entries, f)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def key_md5(key):
    return base64.b64encode(hashlib.md5(key).digest()).decode()


def scenario_awscli(env):
    b = "ssec-cli"
    env.aws("s3", "mb", f"s3://{b}")
    key = os.urandom(32)
    other = os.urandom(32)
    key_file = env.file("key.bin", key)
    other_file = env.file("other.bin", other)
    sse = ["--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}"]
    api = ["--sse-customer-algorithm", "AES256", "--sse-customer-key", f"fileb://{key_file}"]
    wrong = ["--sse-customer-algorithm", "AES256", "--sse-customer-key", f"fileb://{other_file}"]

    small = env.file("small.txt", b"the launch code is 0000 -- p8fs sse-c secret\n" * 3)
    env.aws("s3", "cp", small, f"s3://{b}/notes/small.txt", *sse)
    env.stored(b, "notes/small.txt", small)
    large_data = random_bytes(9 * MIB + 4321, seed=7)
    large = env.file("large.bin", large_data)
    env.aws("s3", "cp", large, f"s3://{b}/big/large.bin", *sse)
    env.stored(b, "big/large.bin", large)

    head = json.loads(env.aws("s3api", "head-object", "--bucket", b, "--key", "big/large.bin", *api).stdout)
    check(head["ContentLength"] == len(large_data), "head-object with the key reports the plaintext size")
    check(head["ETag"].strip('"').endswith("-2"), f"a 9 MiB cp --sse-c is a 2-part multipart upload (ETag {head['ETag']})")
    check(head.get("SSECustomerAlgorithm") == "AES256", "head-object echoes the algorithm")
    check(head.get("SSECustomerKeyMD5") == key_md5(key), "head-object echoes the key's MD5")

    down = os.path.join(env.work, "down.bin")
    env.aws("s3", "cp", f"s3://{b}/big/large.bin", down, *sse)
    check(read(down) == large_data, "cp --sse-c down returns the multipart file byte for byte")
    env.aws("s3", "cp", f"s3://{b}/notes/small.txt", down, *sse)
    check(read(down) == read(small), "cp --sse-c down returns the small file byte for byte")

    listed = env.aws("s3", "ls", "--recursive", f"s3://{b}/").stdout
    check(f"{len(large_data)} big/large.bin" in " ".join(listed.split()), f"ls shows the plaintext size:\n{listed}")

    for first, last in [(1048570, 1048585), (CHUNK - 10, CHUNK + 10), (5 * MIB - 3, 5 * MIB + 70000), (len(large_data) - 5, len(large_data) - 1)]:
        out = json.loads(env.aws("s3api", "get-object", "--bucket", b, "--key", "big/large.bin", "--range", f"bytes={first}-{last}", *api, down).stdout)
        check(read(down) == large_data[first:last + 1] and out["ContentRange"] == f"bytes {first}-{last}/{len(large_data)}",
              f"get-object --range bytes={first}-{last} returns exactly those plaintext bytes")

    nokey = env.aws("s3", "cp", f"s3://{b}/notes/small.txt", down, ok=False)
    check(nokey.returncode != 0 and "400" in nokey.stderr, f"cp down without the key is refused (400):\n{nokey.stderr.strip()}")
    got = env.aws("s3api", "get-object", "--bucket", b, "--key", "notes/small.txt", down, ok=False)
    check(got.returncode != 0 and "InvalidRequest" in got.stderr, f"get-object without the key is InvalidRequest:\n{got.stderr.strip()}")
    got = env.aws("s3api", "get-object", "--bucket", b, "--key", "notes/small.txt", *wrong, down, ok=False)
    check(got.returncode != 0 and "AccessDenied" in got.stderr, f"get-object with another key is AccessDenied:\n{got.stderr.strip()}")
    headed = env.aws("s3api", "head-object", "--bucket", b, "--key", "notes/small.txt", *wrong, ok=False)
    check(headed.returncode != 0 and "403" in headed.stderr, f"head-object with another key is 403:\n{headed.stderr.strip()}")
    headed = env.aws("s3api", "head-object", "--bucket", b, "--key", "notes/small.txt", ok=False)
    check(headed.returncode != 0 and "400" in headed.stderr, f"head-object without the key is 400:\n{headed.stderr.strip()}")

    # s3api put-object, and copies: to a new key, re-encrypted under another key, and out of SSE-C.
    put = json.loads(env.aws("s3api", "put-object", "--bucket", b, "--key", "api.txt", "--body", small, *api).stdout)
    check(put.get("SSECustomerKeyMD5") == key_md5(key) and put["ETag"].strip('"') != hashlib.md5(read(small)).hexdigest(),
          "put-object echoes the key's MD5, and its ETag is not the plaintext's MD5")
    env.stored(b, "api.txt", small)
    env.aws("s3", "cp", f"s3://{b}/notes/small.txt", f"s3://{b}/notes/rekeyed.txt",
            "--sse-c-copy-source", "AES256", "--sse-c-copy-source-key", f"fileb://{key_file}",
            "--sse-c", "AES256", "--sse-c-key", f"fileb://{other_file}")
    env.stored(b, "notes/rekeyed.txt", small)
    env.aws("s3", "cp", f"s3://{b}/notes/rekeyed.txt", down, "--sse-c", "AES256", "--sse-c-key", f"fileb://{other_file}")
    check(read(down) == read(small), "a copy re-encrypted under another key reads back with that key")
    got = env.aws("s3", "cp", f"s3://{b}/notes/rekeyed.txt", down, *sse, ok=False)
    check(got.returncode != 0 and "403" in got.stderr, "the copy refuses the source's key (403)")
    env.aws("s3", "cp", f"s3://{b}/notes/small.txt", f"s3://{b}/notes/clear.txt",
            "--sse-c-copy-source", "AES256", "--sse-c-copy-source-key", f"fileb://{key_file}")
    env.aws("s3", "cp", f"s3://{b}/notes/clear.txt", down)
    check(read(down) == read(small), "a copy with only a source key is an ordinary object")
    refused = env.aws("s3", "cp", f"s3://{b}/notes/small.txt", f"s3://{b}/notes/nope.txt", ok=False)
    check(refused.returncode != 0 and "400" in refused.stderr, f"cp of an SSE-C source without its key is refused (400):\n{refused.stderr.strip()}")
    refused = env.aws("s3api", "copy-object", "--copy-source", f"{b}/notes/small.txt", "--bucket", b, "--key", "notes/nope.txt", ok=False)
    check(refused.returncode != 0 and "InvalidRequest" in refused.stderr, f"copy-object of an SSE-C source without its key is InvalidRequest:\n{refused.stderr.strip()}")


def scenario_boto3(env):
    s3 = env.client()
    b = "ssec-sdk"
    s3.create_bucket(Bucket=b)
    key = os.urandom(32)
    other = os.urandom(32)
    sse = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    body = random_bytes(300_000, seed=11)
    path = env.file("sdk-one.bin", body)

    put = s3.put_object(Bucket=b, Key="one.bin", Body=body, Metadata={"color": "blue"}, **sse)
    env.stored(b, "one.bin", path)
    check(put.get("SSECustomerAlgorithm") == "AES256" and put.get("SSECustomerKeyMD5") == key_md5(key), "put_object echoes the algorithm and the key's MD5")
    check(put["ETag"].strip('"') != hashlib.md5(body).hexdigest(), "an SSE-C ETag is not the MD5 of the plaintext")
    got = s3.get_object(Bucket=b, Key="one.bin", **sse)
    check(got["Body"].read() == body, "get_object with the key returns the plaintext")
    check(got["ContentLength"] == len(body) and got.get("SSECustomerKeyMD5") == key_md5(key), "get_object reports the plaintext length and echoes the key's MD5")
    check(got["Metadata"] == {"color": "blue"} and got["ETag"] == put["ETag"], "get_object returns the metadata and the ETag of the PUT")
    head = s3.head_object(Bucket=b, Key="one.bin", **sse)
    check(head["ContentLength"] == len(body) and head.get("SSECustomerAlgorithm") == "AES256", "head_object with the key reports the plaintext size and the algorithm")
    listed = s3.list_objects_v2(Bucket=b)["Contents"]
    check([(o["Key"], o["Size"]) for o in listed] == [("one.bin", len(body))], "list_objects_v2 shows the plaintext size")

    for header, (first, last) in [("bytes=0-0", (0, 0)), (f"bytes={CHUNK - 1}-{CHUNK}", (CHUNK - 1, CHUNK)),
                                  ("bytes=100000-250000", (100000, 250000)), ("bytes=-100", (len(body) - 100, len(body) - 1)),
                                  (f"bytes={len(body) - 7}-", (len(body) - 7, len(body) - 1))]:
        part = s3.get_object(Bucket=b, Key="one.bin", Range=header, **sse)
        check(part["Body"].read() == body[first:last + 1] and part["ContentRange"] == f"bytes {first}-{last}/{len(body)}",
              f"a ranged get ({header}) returns exactly those plaintext bytes")
    code, status = error_of(lambda: s3.get_object(Bucket=b, Key="one.bin", Range=f"bytes={len(body)}-", **sse))
    check(code == "InvalidRange" and status == 416, "a range past the plaintext end is InvalidRange (416)")

    code, status = error_of(lambda: s3.get_object(Bucket=b, Key="one.bin"))
    check(code == "InvalidRequest" and status == 400, f"get_object without the key is InvalidRequest (400), got {code} {status}")
    code, status = error_of(lambda: s3.head_object(Bucket=b, Key="one.bin"))
    check(status == 400, f"head_object without the key is 400, got {code} {status}")
    code, status = error_of(lambda: s3.get_object(Bucket=b, Key="one.bin", SSECustomerAlgorithm="AES256", SSECustomerKey=other))
    check(code == "AccessDenied" and status == 403, f"get_object with another key is AccessDenied (403), got {code} {status}")
    code, status = error_of(lambda: s3.head_object(Bucket=b, Key="one.bin", SSECustomerAlgorithm="AES256", SSECustomerKey=other))
    check(status == 403, f"head_object with another key is 403, got {code} {status}")
    # boto3 computes the key's MD5 itself: a hook replaces it before the request is signed.
    tampered = env.client()

    def wrong_md5(params, **_):
        params["SSECustomerKeyMD5"] = key_md5(other)

    tampered.meta.events.register("before-parameter-build.s3.GetObject", wrong_md5)
    code, status = error_of(lambda: tampered.get_object(Bucket=b, Key="one.bin", **sse))
    check(code == "InvalidArgument" and status == 400, f"a key-MD5 that does not match the key is InvalidArgument (400), got {code} {status}")
    code, status = error_of(lambda: s3.put_object(Bucket=b, Key="bad.bin", Body=b"x", SSECustomerAlgorithm="AES128", SSECustomerKey=key))
    check(code == "InvalidEncryptionAlgorithmError" and status == 400, f"an algorithm other than AES256 is InvalidEncryptionAlgorithmError, got {code} {status}")
    code, status = error_of(lambda: s3.put_object(Bucket=b, Key="bad.bin", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=key[:16]))
    check(code == "InvalidArgument" and status == 400, f"a 128-bit key is InvalidArgument, got {code} {status}")
    check(error_of(lambda: s3.head_object(Bucket=b, Key="bad.bin", **sse))[1] == 404, "a refused PUT stores nothing")

    s3.put_object(Bucket=b, Key="plain.txt", Body=b"in the clear")
    code, status = error_of(lambda: s3.get_object(Bucket=b, Key="plain.txt", **sse))
    check(code == "InvalidRequest" and status == 400, f"a key sent for an unencrypted object is InvalidRequest, got {code} {status}")

    empty = s3.put_object(Bucket=b, Key="empty", Body=b"", **sse)
    check(empty.get("SSECustomerKeyMD5") == key_md5(key), "an empty object can be SSE-C")
    got = s3.get_object(Bucket=b, Key="empty", **sse)
    check(got["Body"].read() == b"" and got["ContentLength"] == 0, "the empty SSE-C object reads back empty")

    # Copies: rotate the key in place, copy out of SSE-C, refuse a source without its key.
    src = {"Bucket": b, "Key": "one.bin"}
    copied = s3.copy_object(Bucket=b, Key="one.bin", CopySource=src,
                            CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key,
                            SSECustomerAlgorithm="AES256", SSECustomerKey=other)
    check(copied.get("SSECustomerKeyMD5") == key_md5(other), "copy_object onto itself with a new key answers with the new key's MD5")
    check(error_of(lambda: s3.get_object(Bucket=b, Key="one.bin", **sse))[0] == "AccessDenied", "after the rotation the old key is refused")
    rotated = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": other}
    check(s3.get_object(Bucket=b, Key="one.bin", **rotated)["Body"].read() == body, "after the rotation the new key reads the same plaintext")
    check(s3.head_object(Bucket=b, Key="one.bin", **rotated)["Metadata"] == {"color": "blue"}, "the rotation keeps the metadata")
    code, status = error_of(lambda: s3.copy_object(Bucket=b, Key="copy.bin", CopySource=src))
    check(code == "InvalidRequest" and status == 400, f"a copy of an SSE-C source without its key is InvalidRequest, got {code} {status}")
    code, status = error_of(lambda: s3.copy_object(Bucket=b, Key="copy.bin", CopySource=src, CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key))
    check(code == "AccessDenied" and status == 403, f"a copy with the wrong source key is AccessDenied, got {code} {status}")
    s3.copy_object(Bucket=b, Key="clear.bin", CopySource=src, CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=other)
    check(s3.get_object(Bucket=b, Key="clear.bin")["Body"].read() == body, "a copy out of SSE-C is an ordinary object")
    s3.copy_object(Bucket=b, Key="sealed-copy.bin", CopySource={"Bucket": b, "Key": "clear.bin"}, **sse)
    env.stored(b, "sealed-copy.bin", path)
    check(s3.get_object(Bucket=b, Key="sealed-copy.bin", **sse)["Body"].read() == body, "a copy into SSE-C reads back with its key")

    # Multipart: 5 MiB + 5 MiB + 3 bytes, parts under the upload's key only.
    data = random_bytes(10 * MIB + 3, seed=12)
    mp_path = env.file("sdk-multipart.bin", data)
    upload = s3.create_multipart_upload(Bucket=b, Key="multi.bin", **sse)
    check(upload.get("SSECustomerKeyMD5") == key_md5(key), "create_multipart_upload echoes the key's MD5")
    uid = upload["UploadId"]
    code, status = error_of(lambda: s3.upload_part(Bucket=b, Key="multi.bin", UploadId=uid, PartNumber=1, Body=data[:5 * MIB]))
    check(code == "InvalidRequest" and status == 400, f"a part without the upload's key is InvalidRequest, got {code} {status}")
    code, status = error_of(lambda: s3.upload_part(Bucket=b, Key="multi.bin", UploadId=uid, PartNumber=1, Body=data[:5 * MIB], **rotated))
    check(code == "AccessDenied" and status == 403, f"a part under another key is AccessDenied, got {code} {status}")
    parts = []
    for number, (start, end) in enumerate([(0, 5 * MIB), (5 * MIB, 10 * MIB), (10 * MIB, len(data))], start=1):
        done = s3.upload_part(Bucket=b, Key="multi.bin", UploadId=uid, PartNumber=number, Body=data[start:end], **sse)
        check(done.get("SSECustomerKeyMD5") == key_md5(key), f"upload_part {number} echoes the key's MD5")
        parts.append({"PartNumber": number, "ETag": done["ETag"]})
    sizes = [p["Size"] for p in s3.list_parts(Bucket=b, Key="multi.bin", UploadId=uid)["Parts"]]
    check(sizes == [5 * MIB, 5 * MIB, 3], f"list_parts shows plaintext part sizes ({sizes})")
    s3.complete_multipart_upload(Bucket=b, Key="multi.bin", UploadId=uid, MultipartUpload={"Parts": parts}, **sse)
    env.stored(b, "multi.bin", mp_path)
    got = s3.get_object(Bucket=b, Key="multi.bin", **sse)
    check(got["Body"].read() == data and got["ContentLength"] == len(data), "the multipart SSE-C object reads back whole")
    first, last = 5 * MIB - 100, 10 * MIB + 1
    part = s3.get_object(Bucket=b, Key="multi.bin", Range=f"bytes={first}-{last}", **sse)
    check(part["Body"].read() == data[first:last + 1], "a range across both part boundaries returns exactly those bytes")
    second = s3.get_object(Bucket=b, Key="multi.bin", PartNumber=2, **sse)
    check(second["Body"].read() == data[5 * MIB:10 * MIB] and second["PartsCount"] == 3, "get_object PartNumber=2 returns the second part's plaintext")
    check(error_of(lambda: s3.get_object(Bucket=b, Key="multi.bin"))[0] == "InvalidRequest", "the multipart object refuses a read without the key")

    # The managed transfer (multipart above its threshold) with ExtraArgs.
    cfg = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.upload_file(mp_path, b, "managed.bin", ExtraArgs=dict(sse), Config=cfg)
    env.stored(b, "managed.bin", mp_path)
    down = os.path.join(env.work, "managed-down.bin")
    s3.download_file(b, "managed.bin", down, ExtraArgs=dict(sse), Config=cfg)
    check(read(down) == data, "upload_file / download_file with SSECustomerKey round-trip")


def rest(env, method, path):
    """(status, content type, body) of `method path` on the REST API with the token."""
    request = urllib.request.Request(
        env.args.url + path,
        method=method,
        headers={"Authorization": f"Bearer {env.args.token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.headers.get("content-type", ""), answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


async def mcp_refusals(env, entries, bucket, plain):
    """MCP's `read_file` and file resources refuse every SSE-C object and read the plain one."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {env.args.mcp_token}"}, timeout=60)
    async with Client(streamable_http_client(env.args.url + "/mcp", http_client=http), mode="2026-07-28") as mcp:
        result = await mcp.call_tool("read_file", {"bucket": bucket, "key": "fronts/plain.txt"})
        check(
            not result.is_error and result.structured_content["text"].strip() == plain.decode().strip(),
            f"MCP read_file of an unencrypted object ({result.content})",
        )
        for entry in entries:
            bucket, key = entry["bucket"], entry["key"]
            plaintext = read(entry["plaintext"])
            result = await mcp.call_tool("read_file", {"bucket": bucket, "key": key})
            text = " ".join(getattr(c, "text", "") for c in result.content)
            check(
                result.is_error and "key its client holds" in text and not result.structured_content,
                f"MCP read_file {bucket}/{key}: a tool error saying why ({text})",
            )
            check(
                len(text) < 1024 and plaintext[:32].decode("latin-1") not in text,
                f"MCP read_file {bucket}/{key}: no object bytes",
            )
            uri = f"p8fs://objects/{bucket}/{urllib.parse.quote(key)}"
            try:
                read_back = await mcp.read_resource(uri)
                fail(f"MCP resources/read {uri} answered {read_back}")
            except Exception as refused:  # the SDK's MCPError
                check("key its client holds" in str(refused), f"MCP resources/read {uri}: refused ({refused})")


def scenario_fronts(env):
    for needed in ("url", "token", "mcp_token", "proto_dir"):
        if getattr(env.args, needed) is None:
            fail(f"scenario fronts needs --{needed.replace('_', '-')}")
    with open(os.path.join(env.work, "stored.json")) as f:
        entries = json.load(f)
    check(len(entries) >= 8, f"{len(entries)} SSE-C objects to look at")

    # A plain object beside them is served: the token is good for these calls.
    first = entries[0]["bucket"]
    plain = b"plain text anyone with the token may read\n"
    env.client().put_object(Bucket=first, Key="fronts/plain.txt", Body=plain)
    status, _, body = rest(env, "GET", f"/v1/objects/{first}/fronts/plain.txt")
    check(status == 200 and body == plain, f"REST GET of an unencrypted object: {status}")

    for entry in entries:
        bucket, key = entry["bucket"], entry["key"]
        path = f"{bucket}/{urllib.parse.quote(key)}"
        plaintext = read(entry["plaintext"])
        status, kind, body = rest(env, "GET", f"/v1/objects/{path}")
        check(status == 403, f"REST GET {bucket}/{key}: {status} {body[:200]!r}")
        check(kind.startswith("application/problem+json"), f"REST GET {bucket}/{key}: a problem ({kind})")
        problem = json.loads(body)
        check(problem.get("status") == 403, f"the problem of {bucket}/{key}: {problem}")
        check(len(body) < 4096 and plaintext[:32] not in body, f"REST GET {bucket}/{key}: no object bytes")
        status, _, body = rest(env, "HEAD", f"/v1/objects/{path}")
        check(status == 403 and body == b"", f"REST HEAD {bucket}/{key}: {status}")

    # gRPC, with stubs made from the server's own .proto files.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import grpc
    from grpc_clients import generate

    generate(env.args.proto_dir, tempfile.mkdtemp(dir=env.work))
    from p8fs.v1 import objects_pb2, objects_pb2_grpc

    target = urllib.parse.urlsplit(env.args.url).netloc
    with grpc.insecure_channel(target) as channel:
        stub = objects_pb2_grpc.ObjectsStub(channel)
        metadata = [("authorization", f"Bearer {env.args.token}")]
        plain_read = b"".join(
            m.data
            for m in stub.Download(
                objects_pb2.DownloadRequest(bucket=first, key="fronts/plain.txt"), metadata=metadata, timeout=60
            )
        )
        check(plain_read == plain, "gRPC Download of an unencrypted object")
        for entry in entries:
            bucket, key = entry["bucket"], entry["key"]
            try:
                got = list(
                    stub.Download(objects_pb2.DownloadRequest(bucket=bucket, key=key), metadata=metadata, timeout=60)
                )
                fail(f"gRPC Download {bucket}/{key} answered {len(got)} messages")
            except grpc.RpcError as e:
                check(
                    e.code() == grpc.StatusCode.PERMISSION_DENIED,
                    f"gRPC Download {bucket}/{key}: {e.code()} {e.details()}",
                )

    asyncio.run(mcp_refusals(env, entries, first, plain))

    # The index status settles on the refusal to index (the embedder is on).
    deadline = time.monotonic() + 120
    for entry in entries:
        bucket, key = entry["bucket"], entry["key"]
        while True:
            status, _, body = rest(env, "GET", f"/v1/index/{bucket}/{urllib.parse.quote(key)}")
            record = json.loads(body) if body else {}
            if status == 200 and record.get("state") == "failed":
                break
            if time.monotonic() > deadline:
                fail(f"the index status of {bucket}/{key} did not settle: {status} {record}")
            time.sleep(0.2)
        check(
            record.get("code") == "client_held_key" and record.get("reason") == "not indexed: client-held key",
            f"index status of {bucket}/{key}: {record}",
        )
        check(record.get("chunks") == 0, f"no chunks for {bucket}/{key}")


SCENARIOS = {"awscli": scenario_awscli, "boto3": scenario_boto3, "fronts": scenario_fronts}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--work", required=True)
    # Scenario `fronts` only: the main listener, tokens of the objects' tenant (the REST API's and
    # the MCP resource's), the .proto files.
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--mcp-token")
    parser.add_argument("--proto-dir")
    args = parser.parse_args()
    SCENARIOS[args.scenario](Env(args))
    print(f"scenario {args.scenario}: all checks passed")


if __name__ == "__main__":
    main()
