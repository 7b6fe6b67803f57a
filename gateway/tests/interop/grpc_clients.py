"""The gRPC front-end as clients no one here wrote meet it: Python grpcio over HTTP/2 in
cleartext (prior knowledge) against the main listener of a running `p8fs serve`, with stubs
generated from the server's own .proto files by grpcio-tools at run time, grpcio-health-checking
for grpc.health.v1 and grpcio-reflection's descriptor database for server reflection.

Every method of every p8fs.v1 service is called and every answer checked: key-value records with
compare-and-swap and paging, vectors with filtered search (exact and approximate), the graph with traversals, buckets and
objects (a 100 MiB object streamed up and down in chunks, digests compared), memories
(remember and search by meaning with the builtin embedder), and a Watch receiving a change written through REST
(`PUT /v1/kv/...`), ending at its deadline and at its token's expiry. Errors carry their codes:
bad input is INVALID_ARGUMENT with a google.rpc.BadRequest naming the field, a missing or garbage
token UNAUTHENTICATED, a missing scope PERMISSION_DENIED; another tenant sees nothing and changes
nothing.

Usage: grpc_clients.py main --url http://127.0.0.1:PORT --proto-dir DIR --token=T --other-token=T
       --limited-token=T
       grpc_clients.py expiry --url ... --proto-dir DIR --token=T --other-token=T
       --limited-token=T --expiring-token=T   (a token made just before, expiring in seconds)
Prints "grpc clients <scenario>: all checks passed" at the end; any failed check raises.
"""

import argparse
import hashlib
import json
import os
import queue
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_tools import protoc
from google.protobuf import descriptor_pb2

# google.rpc.Status and the details the server sends, wire-compatible with googleapis'
# definitions (which grpcio-tools does not ship).
RPC_PROTO = """
syntax = "proto3";
package google.rpc;
import "google/protobuf/any.proto";
message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
message BadRequest {
  message FieldViolation { string field = 1; string description = 2; }
  repeated FieldViolation field_violations = 1;
}
message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
"""

SERVICES = ["Kv", "Vectors", "Graph", "Objects", "Memories", "Changes"]
MIB = 1 << 20


def generate(proto_dir, out):
    """Stubs for p8fs/v1/*.proto and the google.rpc details, into `out`."""
    protos = sorted(
        os.path.join("p8fs", "v1", name)
        for name in os.listdir(os.path.join(proto_dir, "p8fs", "v1"))
        if name.endswith(".proto")
    )
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["protoc", "-I", proto_dir, "-I", include, "--python_out", out, "--grpc_python_out", out]
    if protoc.main(args + protos) != 0:
        raise SystemExit("grpc_tools.protoc failed on the p8fs protos")
    rpc_dir = os.path.join(out, "rpcsrc", "google", "rpc")
    os.makedirs(rpc_dir)
    with open(os.path.join(rpc_dir, "status.proto"), "w") as f:
        f.write(RPC_PROTO)
    rpc_args = ["protoc", "-I", os.path.join(out, "rpcsrc"), "-I", include, "--python_out", out]
    if protoc.main(rpc_args + ["google/rpc/status.proto"]) != 0:
        raise SystemExit("grpc_tools.protoc failed on google.rpc")
    sys.path.insert(0, out)


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def expect_code(code, call, *args, **kwargs):
    """Calls `call` and returns the RpcError it must fail with, with `code`."""
    try:
        result = call(*args, **kwargs)
        if hasattr(result, "__iter__") and not isinstance(result, (bytes, str)):
            for _ in result:
                pass
    except grpc.RpcError as error:
        check(error.code() == code, f"expected {code}, got {error.code()}: {error.details()}")
        return error
    raise AssertionError(f"expected {code}, the call succeeded")


def details(error):
    """The google.rpc details of an error, decoded."""
    from google.rpc import status_pb2

    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            found = {}
            for detail in status.details:
                if detail.type_url.endswith("google.rpc.BadRequest"):
                    found["bad_request"] = status_pb2.BadRequest.FromString(detail.value)
                elif detail.type_url.endswith("google.rpc.ErrorInfo"):
                    found["error_info"] = status_pb2.ErrorInfo.FromString(detail.value)
            return found
    return {}


def expect_invalid(field, call, *args, **kwargs):
    error = expect_code(grpc.StatusCode.INVALID_ARGUMENT, call, *args, **kwargs)
    bad = details(error).get("bad_request")
    check(bad is not None, f"no BadRequest detail for {field}: {error.details()}")
    fields = [v.field for v in bad.field_violations]
    check(fields == [field], f"BadRequest names {fields}, not {field}")
    return error


class Client:
    def __init__(self, channel, token):
        from p8fs.v1 import (
            changes_pb2_grpc,
            graph_pb2_grpc,
            kv_pb2_grpc,
            memories_pb2_grpc,
            objects_pb2_grpc,
            vectors_pb2_grpc,
        )

        self.metadata = [("authorization", f"Bearer {token}")] if token is not None else []
        self.kv = kv_pb2_grpc.KvStub(channel)
        self.vectors = vectors_pb2_grpc.VectorsStub(channel)
        self.graph = graph_pb2_grpc.GraphStub(channel)
        self.objects = objects_pb2_grpc.ObjectsStub(channel)
        self.memories = memories_pb2_grpc.MemoriesStub(channel)
        self.changes = changes_pb2_grpc.ChangesStub(channel)

    def __getattr__(self, name):
        raise AttributeError(name)


def call(client, service, method, request, **kwargs):
    return getattr(getattr(client, service), method)(request, metadata=client.metadata, **kwargs)


def health(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ["", "p8fs.v1.Kv", "p8fs.v1.Objects"]:
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        check(
            answer.status == health_pb2.HealthCheckResponse.SERVING,
            f"health of {service!r}: {answer.status}",
        )
    expect_code(
        grpc.StatusCode.NOT_FOUND,
        stub.Check,
        health_pb2.HealthCheckRequest(service="no.such.Service"),
        timeout=10,
    )
    print("health: SERVING")


def reflection(channel):
    # v1alpha through grpcio-reflection's own descriptor database.
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    for name in SERVICES:
        check(f"p8fs.v1.{name}" in services, f"reflection lists {sorted(services)}")
    kv_file = database.FindFileContainingSymbol("p8fs.v1.Kv")
    check(kv_file.name == "p8fs/v1/kv.proto", f"the file of p8fs.v1.Kv: {kv_file.name}")
    check(
        [m.name for m in kv_file.service[0].method]
        == ["Get", "Put", "PutIfAbsent", "CompareAndSwap", "Delete", "Scan"],
        "the methods of p8fs.v1.Kv",
    )
    # v1: the same messages (wire-identical) under the v1 service name.
    info = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    answers = list(
        info(
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(file_by_filename="p8fs/v1/objects.proto"),
                ]
            ),
            timeout=10,
        )
    )
    listed = {s.name for s in answers[0].list_services_response.service}
    check({f"p8fs.v1.{n}" for n in SERVICES} <= listed, f"v1 lists {sorted(listed)}")
    file = descriptor_pb2.FileDescriptorProto.FromString(
        answers[1].file_descriptor_response.file_descriptor_proto[0]
    )
    check(file.package == "p8fs.v1" and file.service[0].name == "Objects", "v1 file_by_filename")
    print(f"reflection: {len(listed)} services, v1 and v1alpha")


def kv(me, other):
    from p8fs.v1 import kv_pb2 as pb

    written = call(me, "kv", "Put", pb.PutRequest(key="grpc/a", value_json='{"n": 1}'))
    check(written.key == "grpc/a" and written.version > 0, f"put: {written}")
    record = call(me, "kv", "Get", pb.GetRequest(key="grpc/a"))
    check(json.loads(record.value_json) == {"n": 1}, f"get: {record}")
    check(record.version == written.version and not record.HasField("expires_at"), "version")
    expect_code(
        grpc.StatusCode.ALREADY_EXISTS,
        call, me, "kv", "PutIfAbsent", pb.PutRequest(key="grpc/a", value_json="2"),
    )
    created = call(me, "kv", "PutIfAbsent", pb.PutRequest(key="grpc/b", value_json="[1,2]", ttl_ms=3_600_000))
    check(created.version > written.version, "put_if_absent version")
    check(call(me, "kv", "Get", pb.GetRequest(key="grpc/b")).HasField("expires_at"), "ttl")
    swapped = call(
        me, "kv", "CompareAndSwap",
        pb.CompareAndSwapRequest(key="grpc/a", expected_version=written.version, value_json='{"n": 2}'),
    )
    expect_code(
        grpc.StatusCode.ABORTED,
        call, me, "kv", "CompareAndSwap",
        pb.CompareAndSwapRequest(key="grpc/a", expected_version=written.version, value_json="3"),
    )
    expect_code(
        grpc.StatusCode.NOT_FOUND,
        call, me, "kv", "CompareAndSwap",
        pb.CompareAndSwapRequest(key="grpc/none", expected_version=1, value_json="3"),
    )
    check(
        json.loads(call(me, "kv", "Get", pb.GetRequest(key="grpc/a")).value_json) == {"n": 2},
        "the swapped value",
    )
    for i in range(5):
        call(me, "kv", "Put", pb.PutRequest(key=f"grpc/page/{i}", value_json=str(i)))
    keys, start_after = [], None
    while True:
        request = pb.ScanRequest(prefix="grpc/page/", limit=2)
        if start_after is not None:
            request.start_after = start_after
        page = call(me, "kv", "Scan", request)
        check(len(page.items) <= 2, "page size")
        keys += [item.key for item in page.items]
        if not page.HasField("next"):
            break
        start_after = page.next
    check(keys == [f"grpc/page/{i}" for i in range(5)], f"scanned {keys}")
    call(me, "kv", "Delete", pb.DeleteRequest(key="grpc/b"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "kv", "Get", pb.GetRequest(key="grpc/b"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "kv", "Delete", pb.DeleteRequest(key="grpc/b"))

    # Bad input names its field.
    expect_invalid("key", call, me, "kv", "Get", pb.GetRequest(key=""))
    expect_invalid("value_json", call, me, "kv", "Put", pb.PutRequest(key="k", value_json="{"))
    expect_invalid("ttl_ms", call, me, "kv", "Put", pb.PutRequest(key="k", value_json="1", ttl_ms=-5))
    expect_invalid("limit", call, me, "kv", "Scan", pb.ScanRequest(limit=5000))
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "kv", "Get", pb.GetRequest(key="k"))

    # The other tenant sees nothing and changes nothing of ours.
    expect_code(grpc.StatusCode.NOT_FOUND, call, other, "kv", "Get", pb.GetRequest(key="grpc/a"))
    check(not call(other, "kv", "Scan", pb.ScanRequest(prefix="grpc/")).items, "other's scan")
    expect_code(grpc.StatusCode.NOT_FOUND, call, other, "kv", "Delete", pb.DeleteRequest(key="grpc/a"))
    expect_code(
        grpc.StatusCode.NOT_FOUND,
        call, other, "kv", "CompareAndSwap",
        pb.CompareAndSwapRequest(key="grpc/a", expected_version=swapped.version, value_json="9"),
    )
    call(other, "kv", "Put", pb.PutRequest(key="grpc/a", value_json='"theirs"'))
    mine = call(me, "kv", "Get", pb.GetRequest(key="grpc/a"))
    check(json.loads(mine.value_json) == {"n": 2} and mine.version == swapped.version, "untouched")
    print("kv: every method, paging, conditions, bad input, tenants")


def vectors(me, other):
    from p8fs.v1 import vectors_pb2 as pb

    made = call(me, "vectors", "CreateCollection", pb.CreateCollectionRequest(name="grpcvec", dimension=3, metric="cosine"))
    check(made.created and made.dimension == 3 and made.metric == "cosine", f"created: {made}")
    again = call(me, "vectors", "CreateCollection", pb.CreateCollectionRequest(name="grpcvec", dimension=3, metric="cosine"))
    check(not again.created, "the identical collection is found, not created")
    expect_code(
        grpc.StatusCode.ABORTED,
        call, me, "vectors", "CreateCollection",
        pb.CreateCollectionRequest(name="grpcvec", dimension=4, metric="cosine"),
    )
    expect_invalid("metric", call, me, "vectors", "CreateCollection", pb.CreateCollectionRequest(name="x", dimension=3, metric="manhattan"))
    records = {
        "a": ([1, 0, 0], {"lang": "en"}),
        "b": ([0.9, 0.1, 0], {"lang": "de"}),
        "c": ([0, 1, 0], {"lang": "en"}),
    }
    for rid, (vector, metadata) in records.items():
        call(me, "vectors", "Upsert", pb.UpsertRequest(collection="grpcvec", id=rid, vector=vector, metadata_json=json.dumps(metadata)))
    hits = call(me, "vectors", "Search", pb.SearchRequest(collection="grpcvec", query=[1, 0, 0], k=3)).hits
    check([h.id for h in hits] == ["a", "b", "c"], f"search: {[h.id for h in hits]}")
    check(abs(hits[0].distance) < 1e-9, f"distance to itself {hits[0].distance}")
    check(json.loads(hits[0].metadata_json) == {"lang": "en"}, "hit metadata")
    filtered = call(me, "vectors", "Search", pb.SearchRequest(collection="grpcvec", query=[1, 0, 0], k=3, filter={"lang": '"en"'})).hits
    check([h.id for h in filtered] == ["a", "c"], f"filtered: {[h.id for h in filtered]}")
    # Approximate searches of a collection this small are answered exactly, whatever ef.
    for mode in [
        {"mode": pb.SEARCH_MODE_EXACT},
        {"mode": pb.SEARCH_MODE_APPROXIMATE},
        {"mode": pb.SEARCH_MODE_APPROXIMATE, "ef": 1},
        {"mode": pb.SEARCH_MODE_APPROXIMATE, "ef": 4096},
    ]:
        found = call(me, "vectors", "Search", pb.SearchRequest(collection="grpcvec", query=[1, 0, 0], k=3, **mode)).hits
        check(list(found) == list(hits), f"search with {mode}: {[h.id for h in found]}")
    found = call(me, "vectors", "Search", pb.SearchRequest(collection="grpcvec", query=[1, 0, 0], k=3, filter={"lang": '"en"'}, mode=pb.SEARCH_MODE_APPROXIMATE, ef=8)).hits
    check([h.id for h in found] == ["a", "c"], f"approximate and filtered: {[h.id for h in found]}")
    bad_search_mode(lambda **mode: call(me, "vectors", "Search", pb.SearchRequest(collection="grpcvec", query=[1, 0, 0], **mode)))
    expect_invalid("vector", call, me, "vectors", "Upsert", pb.UpsertRequest(collection="grpcvec", id="d", vector=[1, 0]))
    expect_invalid("k", call, me, "vectors", "Search", pb.SearchRequest(collection="grpcvec", query=[1, 0, 0], k=0))
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "vectors", "Upsert", pb.UpsertRequest(collection="nocoll", id="d", vector=[1, 0, 0]))
    call(me, "vectors", "Delete", pb.DeleteVectorRequest(collection="grpcvec", id="b"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "vectors", "Delete", pb.DeleteVectorRequest(collection="grpcvec", id="b"))
    # The other tenant has no such collection; ours keeps its records.
    expect_code(grpc.StatusCode.NOT_FOUND, call, other, "vectors", "Search", pb.SearchRequest(collection="grpcvec", query=[1, 0, 0]))
    expect_code(grpc.StatusCode.NOT_FOUND, call, other, "vectors", "Delete", pb.DeleteVectorRequest(collection="grpcvec", id="a"))
    hits = call(me, "vectors", "Search", pb.SearchRequest(collection="grpcvec", query=[1, 0, 0], k=3)).hits
    check([h.id for h in hits] == ["a", "c"], "ours after the other tenant's calls")
    print("vectors: create, upsert, filtered search (exact and approximate), delete, bad input, tenants")


def bad_search_mode(search):
    """`search(mode=..., ef=...)` with a bad ef, or a mode that is none of the enum's, is
    INVALID_ARGUMENT naming the field."""
    from p8fs.v1 import vectors_pb2 as pb

    for mode, ef in [
        (pb.SEARCH_MODE_APPROXIMATE, 0),
        (pb.SEARCH_MODE_APPROXIMATE, 4097),
        (pb.SEARCH_MODE_EXACT, 8),
        (pb.SEARCH_MODE_UNSPECIFIED, 8),
    ]:
        expect_invalid("ef", search, mode=mode, ef=ef)
    # proto3 enums are open: a number the server does not know arrives as it is.
    expect_invalid("mode", search, mode=7)


def graph(me, other, limited):
    from p8fs.v1 import graph_pb2 as pb

    for node in ["ga", "gb", "gc", "gd"]:
        call(me, "graph", "PutNode", pb.PutNodeRequest(id=node, label="doc", properties_json=json.dumps({"name": node})))
    node = call(me, "graph", "GetNode", pb.GetNodeRequest(id="ga"))
    check(node.label == "doc" and json.loads(node.properties_json) == {"name": "ga"}, f"node {node}")
    call(me, "graph", "PutEdge", pb.PutEdgeRequest(src="ga", rel="links", dst="gb"))
    call(me, "graph", "PutEdge", pb.PutEdgeRequest(src="gb", rel="links", dst="gc", weight=2.5))
    call(me, "graph", "PutEdge", pb.PutEdgeRequest(src="ga", rel="cites", dst="gd"))
    reached = call(me, "graph", "Neighbors", pb.NeighborsRequest(id="ga", depth=2)).items
    check(sorted((r.id, r.hops) for r in reached) == [("gb", 1), ("gc", 2), ("gd", 1)], f"neighbors {reached}")
    only_links = call(me, "graph", "Neighbors", pb.NeighborsRequest(id="ga", rels=["links"])).items
    check([r.id for r in only_links] == ["gb"], "neighbors by relation")
    into = call(me, "graph", "Neighbors", pb.NeighborsRequest(id="gc", direction="in")).items
    check([r.id for r in into] == ["gb"], "incoming neighbors")
    path = call(me, "graph", "ShortestPath", pb.ShortestPathRequest(src="ga", dst="gc", weighted=True))
    check(path.HasField("path") and list(path.path.nodes) == ["ga", "gb", "gc"], f"path {path}")
    check(abs(path.path.total - 3.5) < 1e-9 and path.path.edges[1].weight == 2.5, "path weights")
    none = call(me, "graph", "ShortestPath", pb.ShortestPathRequest(src="gc", dst="ga"))
    check(not none.HasField("path"), "no path against the edges")
    expect_invalid("direction", call, me, "graph", "Neighbors", pb.NeighborsRequest(id="ga", direction="sideways"))
    expect_invalid("depth", call, me, "graph", "Neighbors", pb.NeighborsRequest(id="ga", depth=99))
    expect_invalid("weight", call, me, "graph", "PutEdge", pb.PutEdgeRequest(src="ga", rel="x", dst="gb", weight=-1))
    expect_invalid("properties_json", call, me, "graph", "PutNode", pb.PutNodeRequest(id="x", label="l", properties_json="[1]"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "graph", "PutEdge", pb.PutEdgeRequest(src="ga", rel="x", dst="nowhere"))
    call(me, "graph", "DeleteEdge", pb.DeleteEdgeRequest(src="ga", rel="cites", dst="gd"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "graph", "DeleteEdge", pb.DeleteEdgeRequest(src="ga", rel="cites", dst="gd"))
    call(me, "graph", "DeleteNode", pb.DeleteNodeRequest(id="gd"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "graph", "GetNode", pb.GetNodeRequest(id="gd"))
    # A token without graph scopes, and another tenant.
    expect_code(grpc.StatusCode.PERMISSION_DENIED, call, limited, "graph", "GetNode", pb.GetNodeRequest(id="ga"))
    expect_code(grpc.StatusCode.PERMISSION_DENIED, call, limited, "graph", "PutNode", pb.PutNodeRequest(id="zz", label="l"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, other, "graph", "GetNode", pb.GetNodeRequest(id="ga"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, other, "graph", "DeleteNode", pb.DeleteNodeRequest(id="ga"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, other, "graph", "Neighbors", pb.NeighborsRequest(id="ga"))
    check(call(me, "graph", "GetNode", pb.GetNodeRequest(id="ga")).id == "ga", "ours still there")
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "graph", "GetNode", pb.GetNodeRequest(id="zz"))
    print("graph: nodes, edges, neighbours, shortest path, scopes, tenants")


def chunks(total, digest, piece=MIB):
    """`total` pseudo-random bytes in pieces of `piece`, hashed into `digest` as they go."""
    from p8fs.v1 import objects_pb2 as pb

    block = hashlib.sha256(b"seed").digest() * (piece // 32)
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        data = bytes([sent // piece % 251]) + block[1:size]
        digest.update(data)
        sent += size
        yield pb.UploadRequest(data=data)


def objects(me, other, limited):
    from p8fs.v1 import objects_pb2 as pb

    made = call(me, "objects", "CreateBucket", pb.CreateBucketRequest(name="grpc-bucket"))
    check(made.created and made.name == "grpc-bucket", f"bucket {made}")
    check(not call(me, "objects", "CreateBucket", pb.CreateBucketRequest(name="grpc-bucket")).created, "existing bucket")
    names = [b.name for b in call(me, "objects", "ListBuckets", pb.ListBucketsRequest()).buckets]
    check("grpc-bucket" in names, f"buckets {names}")
    expect_invalid("name", call, me, "objects", "CreateBucket", pb.CreateBucketRequest(name="No_Such"))

    def upload(key, payload, content_type=None):
        start = pb.UploadStart(bucket="grpc-bucket", key=key)
        if content_type:
            start.content_type = content_type
        messages = [pb.UploadRequest(start=start)] + [pb.UploadRequest(data=payload)]
        return me.objects.Upload(iter(messages), metadata=me.metadata)

    for key in ["dir/a.txt", "dir/b.txt", "dir/sub/c.txt", "top.txt"]:
        info = upload(key, key.encode(), "text/plain")
        check(info.key == key and info.size == len(key), f"upload {info}")
        check(info.etag == hashlib.md5(key.encode()).hexdigest(), "the ETag is the MD5")
    listing = call(me, "objects", "ListObjects", pb.ListObjectsRequest(bucket="grpc-bucket", delimiter="/"))
    check([o.key for o in listing.objects] == ["top.txt"] and list(listing.common_prefixes) == ["dir/"], f"listing {listing}")
    under = call(me, "objects", "ListObjects", pb.ListObjectsRequest(bucket="grpc-bucket", prefix="dir/", delimiter="/"))
    check([o.key for o in under.objects] == ["dir/a.txt", "dir/b.txt"] and list(under.common_prefixes) == ["dir/sub/"], f"under {under}")
    keys, cursor = [], ""
    while True:
        page = call(me, "objects", "ListObjects", pb.ListObjectsRequest(bucket="grpc-bucket", limit=1, cursor=cursor))
        keys += [o.key for o in page.objects]
        if not page.HasField("next"):
            break
        cursor = page.next
    check(keys == ["dir/a.txt", "dir/b.txt", "dir/sub/c.txt", "top.txt"], f"paged {keys}")
    expect_invalid("cursor", call, me, "objects", "ListObjects", pb.ListObjectsRequest(bucket="grpc-bucket", cursor="zz"))
    head = call(me, "objects", "Head", pb.HeadRequest(bucket="grpc-bucket", key="top.txt"))
    check(head.size == 7 and head.content_type == "text/plain", f"head {head}")

    # 100 MiB up and down, in 1 MiB messages, digests compared.
    total = 100 * MIB
    sent = hashlib.sha256()
    started = time.monotonic()
    messages = iter([pb.UploadRequest(start=pb.UploadStart(bucket="grpc-bucket", key="big.bin"))])
    import itertools

    info = me.objects.Upload(itertools.chain(messages, chunks(total, sent)), metadata=me.metadata, timeout=600)
    up = time.monotonic() - started
    check(info.size == total, f"uploaded {info.size}")
    received = hashlib.sha256()
    size, largest, first = 0, 0, None
    started = time.monotonic()
    for message in call(me, "objects", "Download", pb.DownloadRequest(bucket="grpc-bucket", key="big.bin"), timeout=600):
        if message.WhichOneof("part") == "info":
            check(first is None and size == 0, "info comes first, once")
            first = message.info
            continue
        received.update(message.data)
        size += len(message.data)
        largest = max(largest, len(message.data))
    down = time.monotonic() - started
    check(first is not None and first.size == total and first.etag == info.etag, f"download info {first}")
    check(size == total and received.hexdigest() == sent.hexdigest(), "the downloaded bytes are the uploaded ones")
    check(largest <= MIB, f"a download message of {largest} bytes")
    print(f"objects: 100 MiB up in {up:.1f} s, down in {down:.1f} s, sha256 {sent.hexdigest()[:16]}")

    # Upload rules: `start` first, chunks of at most 1 MiB, a message over 4 MiB refused whole.
    expect_invalid("start", me.objects.Upload, iter([pb.UploadRequest(data=b"x")]), metadata=me.metadata)
    expect_invalid(
        "data",
        me.objects.Upload,
        iter([pb.UploadRequest(start=pb.UploadStart(bucket="grpc-bucket", key="toolarge")), pb.UploadRequest(data=b"x" * (MIB + 1))]),
        metadata=me.metadata,
    )
    # tonic answers a message over its decoding limit with OUT_OF_RANGE.
    expect_code(
        grpc.StatusCode.OUT_OF_RANGE,
        me.objects.Upload,
        iter([pb.UploadRequest(start=pb.UploadStart(bucket="grpc-bucket", key="huge")), pb.UploadRequest(data=b"x" * (5 * MIB))]),
        metadata=me.metadata,
    )
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "objects", "Head", pb.HeadRequest(bucket="grpc-bucket", key="toolarge"))
    expect_code(
        grpc.StatusCode.NOT_FOUND,
        me.objects.Upload,
        iter([pb.UploadRequest(start=pb.UploadStart(bucket="no-such-bucket", key="k")), pb.UploadRequest(data=b"x")]),
        metadata=me.metadata,
    )

    # Scopes and tenants.
    expect_code(grpc.StatusCode.PERMISSION_DENIED, call, limited, "objects", "ListBuckets", pb.ListBucketsRequest())
    check("grpc-bucket" not in [b.name for b in call(other, "objects", "ListBuckets", pb.ListBucketsRequest()).buckets], "other's buckets")
    expect_code(grpc.StatusCode.NOT_FOUND, call, other, "objects", "Head", pb.HeadRequest(bucket="grpc-bucket", key="top.txt"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, other, "objects", "Download", pb.DownloadRequest(bucket="grpc-bucket", key="top.txt"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, other, "objects", "Delete", pb.DeleteObjectRequest(bucket="grpc-bucket", key="top.txt"))
    expect_code(
        grpc.StatusCode.NOT_FOUND,
        other.objects.Upload,
        iter([pb.UploadRequest(start=pb.UploadStart(bucket="grpc-bucket", key="top.txt")), pb.UploadRequest(data=b"theirs")]),
        metadata=other.metadata,
    )
    check(call(me, "objects", "Head", pb.HeadRequest(bucket="grpc-bucket", key="top.txt")).etag == hashlib.md5(b"top.txt").hexdigest(), "ours untouched")
    call(me, "objects", "Delete", pb.DeleteObjectRequest(bucket="grpc-bucket", key="big.bin"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "objects", "Head", pb.HeadRequest(bucket="grpc-bucket", key="big.bin"))
    expect_code(grpc.StatusCode.NOT_FOUND, call, me, "objects", "Delete", pb.DeleteObjectRequest(bucket="grpc-bucket", key="big.bin"))
    print("objects: buckets, listings, paging, upload rules, scopes, tenants")


def memories(me, limited, other):
    from p8fs.v1 import memories_pb2 as pb

    tag = f"grpc{os.getpid()}"
    harbour = call(
        me,
        "memories",
        "Remember",
        pb.RememberRequest(
            text="The ferry to the island leaves the harbour at seven every morning.",
            metadata_json=json.dumps({"topic": "travel"}),
            tags=[tag],
        ),
    )
    check(harbour.id and harbour.chunks >= 1 and list(harbour.tags) == [tag], f"Remember: {harbour.id}")
    soup = call(me, "memories", "Remember", pb.RememberRequest(text="Tomato soup needs basil and a pinch of salt.", tags=[tag]))
    found = call(me, "memories", "Search", pb.MemorySearchRequest(q="when does the boat leave?", k=2, tags=[tag]))
    check(
        [hit.memory_id for hit in found.hits] == [harbour.id, soup.id] and found.hits[0].score > found.hits[1].score,
        f"Search ranks the ferry first: {[(h.memory_id, round(h.score, 3)) for h in found.hits]}",
    )
    check(json.loads(found.hits[0].metadata_json) == {"topic": "travel"}, "Search returns the metadata")
    filtered = call(me, "memories", "Search", pb.MemorySearchRequest(q="ferry", tags=[tag], metadata={"topic": json.dumps("travel")}))
    check([hit.memory_id for hit in filtered.hits] == [harbour.id], "Search filters by metadata")
    from p8fs.v1 import vectors_pb2

    approximate = call(
        me,
        "memories",
        "Search",
        pb.MemorySearchRequest(q="when does the boat leave?", k=2, tags=[tag], mode=vectors_pb2.SEARCH_MODE_APPROXIMATE, ef=8),
    )
    check(list(approximate.hits) == list(found.hits), f"Search with mode approximate finds what exact finds: {approximate.hits}")
    bad_search_mode(lambda **mode: call(me, "memories", "Search", pb.MemorySearchRequest(q="ferry", tags=[tag], **mode)))
    theirs = call(other, "memories", "Search", pb.MemorySearchRequest(q="ferry harbour", k=10))
    check(all(hit.memory_id not in (harbour.id, soup.id) for hit in theirs.hits), "the other tenant never finds ours")
    expect_invalid("text", call, me, "memories", "Remember", pb.RememberRequest(text=""))
    expect_invalid("k", call, me, "memories", "Search", pb.MemorySearchRequest(q="x", k=0))
    expect_code(grpc.StatusCode.PERMISSION_DENIED, call, limited, "memories", "Search", pb.MemorySearchRequest(q="note"))
    expect_code(grpc.StatusCode.PERMISSION_DENIED, call, limited, "memories", "Remember", pb.RememberRequest(text="no"))
    print("memories: remember, search by meaning with filters, tenants, bad input, scopes")


def rest_put(url, token, key, value):
    request = urllib.request.Request(
        f"{url}/v1/kv/{urllib.parse.quote(key, safe='')}",
        data=json.dumps(value).encode(),
        method="PUT",
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        check(response.status in (200, 201), f"REST PUT {response.status}")


def changes(me, limited, url, token):
    from p8fs.v1 import changes_pb2 as pb

    received = queue.Queue()
    stream = call(me, "changes", "Watch", pb.WatchRequest(kinds=[pb.CHANGE_KIND_KV], prefix="watch/"), timeout=60)
    # The answer's headers come once the server follows the log from its head.
    stream.initial_metadata()

    def follow():
        try:
            for change in stream:
                received.put(change)
        except grpc.RpcError as error:
            received.put(error)

    threading.Thread(target=follow, daemon=True).start()
    rest_put(url, token, "other/ignored", 1)
    rest_put(url, token, "watch/x", {"via": "rest"})
    change = received.get(timeout=30)
    check(not isinstance(change, Exception), f"watch failed: {change}")
    check(change.path == "watch/x" and change.kind == pb.CHANGE_KIND_KV and change.op == pb.CHANGE_OP_PUT, f"change {change}")
    check(change.HasField("version") and change.cursor > 0, "cursor and version")
    stream.cancel()
    # Resuming after a cursor gives the next change only.
    rest_put(url, token, "watch/y", 2)
    resumed = call(me, "changes", "Watch", pb.WatchRequest(after=change.cursor, prefix="watch/"), timeout=30)
    nxt = next(iter(resumed))
    check(nxt.path == "watch/y" and nxt.cursor > change.cursor, f"resumed with {nxt}")
    resumed.cancel()
    # A deadline ends a quiet watch.
    started = time.monotonic()
    expect_code(grpc.StatusCode.DEADLINE_EXCEEDED, call, me, "changes", "Watch", pb.WatchRequest(prefix="quiet/"), timeout=2)
    check(time.monotonic() - started < 10, "the deadline ended the watch")
    expect_code(grpc.StatusCode.PERMISSION_DENIED, call, limited, "changes", "Watch", pb.WatchRequest(kinds=[pb.CHANGE_KIND_NODE]), timeout=10)
    expect_invalid("after", call, me, "changes", "Watch", pb.WatchRequest(after=1 << 60), timeout=10)
    print("changes: a REST write arrives, resume after a cursor, deadline, scopes")


def expiry(expiring):
    """A watch opened with a token about to expire ends with UNAUTHENTICATED at the expiry."""
    from p8fs.v1 import changes_pb2 as pb

    started = time.monotonic()
    stream = call(expiring, "changes", "Watch", pb.WatchRequest(), timeout=60)
    stream.initial_metadata()
    opened = time.monotonic() - started
    error = expect_code(grpc.StatusCode.UNAUTHENTICATED, lambda: stream)
    check("expired" in error.details(), f"the expiry's message: {error.details()}")
    print(f"changes: a watch opened in {opened:.1f} s ended at the token's expiry after {time.monotonic() - started:.1f} s")


def auth(channel):
    from p8fs.v1 import kv_pb2 as pb

    nobody = Client(channel, None)
    expect_code(grpc.StatusCode.UNAUTHENTICATED, call, nobody, "kv", "Get", pb.GetRequest(key="grpc/a"))
    garbage = Client(channel, "not.a.token")
    expect_code(grpc.StatusCode.UNAUTHENTICATED, call, garbage, "kv", "Get", pb.GetRequest(key="grpc/a"))
    basic = Client(channel, None)
    basic.metadata = [("authorization", "Basic dXNlcjpwYXNz")]
    expect_code(grpc.StatusCode.UNAUTHENTICATED, call, basic, "kv", "Put", pb.PutRequest(key="grpc/a", value_json="1"))
    expect_code(
        grpc.StatusCode.UNIMPLEMENTED,
        channel.unary_unary("/p8fs.v1.Kv/NoSuchMethod", request_serializer=pb.GetRequest.SerializeToString, response_deserializer=pb.KvRecord.FromString),
        pb.GetRequest(key="x"),
    )
    print("auth: missing, garbage and non-bearer credentials are UNAUTHENTICATED")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--other-token", required=True)
    parser.add_argument("--limited-token", required=True)
    parser.add_argument("--expiring-token")
    parser.add_argument("scenario", choices=["main", "expiry"])
    args = parser.parse_args()
    target = urllib.parse.urlparse(args.url).netloc
    with tempfile.TemporaryDirectory() as out:
        generate(args.proto_dir, out)
        options = [("grpc.max_receive_message_length", 8 * MIB)]
        with grpc.insecure_channel(target, options=options) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            if args.scenario == "expiry":
                expiry(Client(channel, args.expiring_token))
            else:
                me = Client(channel, args.token)
                other = Client(channel, args.other_token)
                limited = Client(channel, args.limited_token)
                health(channel)
                reflection(channel)
                auth(channel)
                kv(me, other)
                vectors(me, other)
                graph(me, other, limited)
                changes(me, limited, args.url, args.token)
                objects(me, other, limited)
                memories(me, limited, other)
    print(f"grpc clients {args.scenario}: all checks passed")


if __name__ == "__main__":
    main()
