"""GraphQL clients no one here wrote (the `gql` package), against a running p8fs at /graphql.

    python3 graphql_clients.py SCENARIO --url BASE --token TOKEN --other-token TOKEN
        --limited-token TOKEN [--expiring-token TOKEN]
        [--s3-endpoint URL --s3-key ID --s3-secret SECRET]

BASE is the main listener (http://127.0.0.1:PORT); TOKEN has every data scope of tenant A,
--other-token the same of tenant B, --limited-token tenant A's with kv:read and kv:write only,
--expiring-token (the subscription scenarios) tenant A's with kv:read, expiring within seconds;
the S3 listener and tenant A's access key (the http scenario) upload objects with boto3.

Scenarios: `http` (gql's AIOHTTPTransport: kv, vectors with exact and approximate search,
memories and search by meaning (the server embeds with the builtin model), graph, buckets and
objects, variables, Relay paging), `errors` (gql's RequestsHTTPTransport: CONFLICT, a FORBIDDEN field beside one
that succeeds, the other tenant sees null, bad input as BAD_USER_INPUT naming its field),
`ws-transport` and `ws-apollo` (subscriptions over gql's WebsocketsTransport with the
graphql-transport-ws and the graphql-ws subprotocols: changes made through the REST API arrive,
resuming after a cursor gives the next change only, a bad cursor is BAD_USER_INPUT, a kind
beyond the token's scopes is FORBIDDEN, a subscription ends with UNAUTHENTICATED when its token
expires, a connection without a valid token is refused).
Each prints what it checks and exits non-zero at the first failure.
"""

import argparse
import asyncio
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import boto3
from botocore.config import Config
from gql import Client, GraphQLRequest
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport
from gql.transport.websockets import WebsocketsTransport

# How long a subscription may take to deliver a change.
DELIVERY_TIMEOUT = 15.0


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


def request(document, **variables):
    return GraphQLRequest(document, variable_values=variables or None)


def codes(error):
    """The extensions.code of each error of a TransportQueryError."""
    return [(e.get("extensions") or {}).get("code") for e in (error.errors or [])]


class Env:
    def __init__(self, args):
        self.base = args.url.rstrip("/")
        self.graphql = f"{self.base}/graphql"
        self.websocket = "ws" + self.graphql[len("http") :]
        self.token = args.token
        self.other_token = args.other_token
        self.limited_token = args.limited_token
        self.expiring_token = args.expiring_token
        self.s3 = (args.s3_endpoint, args.s3_key, args.s3_secret)

    def boto3(self):
        """boto3 with tenant A's S3 access key: object bytes go through S3."""
        endpoint, key, secret = self.s3
        if not (endpoint and key and secret):
            fail("the http scenario needs --s3-endpoint, --s3-key and --s3-secret")
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def aiohttp(self, token):
        return Client(
            transport=AIOHTTPTransport(
                url=self.graphql, headers={"Authorization": f"Bearer {token}"}
            ),
            fetch_schema_from_transport=False,
        )

    def requests(self, token):
        return Client(
            transport=RequestsHTTPTransport(
                url=self.graphql,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
                retries=0,
            ),
            fetch_schema_from_transport=False,
        )

    def rest_put(self, key, value):
        """PUT /v1/kv/KEY with a JSON body through the REST API; the written version."""
        url = f"{self.base}/v1/kv/{urllib.parse.quote(key, safe='/')}"
        req = urllib.request.Request(
            url,
            data=json.dumps(value).encode(),
            method="PUT",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as e:
            fail(f"REST PUT {key}: {e.code} {e.read().decode(errors='replace')}")
        if body.get("key") != key or not body.get("version"):
            fail(f"REST PUT {key} answered {body}")
        return body["version"]


async def expect_error(session, req, code, what):
    """Runs `req`, which must fail with `code`; returns the TransportQueryError."""
    try:
        result = await session.execute(req)
    except TransportQueryError as e:
        check(code in codes(e), f"{what}: extensions.code {code} (errors {e.errors})")
        return e
    fail(f"{what}: expected a {code} error, got {result}")


# --- http: every part of the schema over gql's aiohttp transport


async def kv_checks(session):
    put = await session.execute(
        request(
            "mutation($key: String!, $value: JSON!) { kvPut(key: $key, value: $value) { key version } }",
            key="gql/a",
            value={"n": 1, "tags": ["x", "y"]},
        )
    )
    check(put["kvPut"]["key"] == "gql/a", f"kvPut with variables: {put}")
    first_version = put["kvPut"]["version"]
    got = await session.execute(
        request('{ kv(key: "gql/a") { key value version expiresAt } }')
    )
    check(
        got["kv"] == {
            "key": "gql/a",
            "value": {"n": 1, "tags": ["x", "y"]},
            "version": first_version,
            "expiresAt": None,
        },
        f"kv returns the record as written: {got}",
    )
    missing = await session.execute(request('{ kv(key: "gql/none") { key } }'))
    check(missing["kv"] is None, "kv of an absent key is null")

    for i in range(5):
        await session.execute(
            request(
                "mutation($k: String!, $v: JSON!) { kvPut(key: $k, value: $v) { version } }",
                k=f"gql/page/{i}",
                v=i,
            )
        )
    scan = """query($after: String) {
        kvScan(prefix: "gql/page/", first: 2, after: $after) {
          edges { cursor node { key value } }
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        }
      }"""
    seen = []
    after = None
    pages = 0
    while True:
        page = (await session.execute(request(scan, after=after)))["kvScan"]
        pages += 1
        edges = page["edges"]
        info = page["pageInfo"]
        check(1 <= len(edges) <= 2, f"page {pages} has 1 or 2 edges: {edges}")
        check(
            info["startCursor"] == edges[0]["cursor"]
            and info["endCursor"] == edges[-1]["cursor"],
            f"page {pages}: pageInfo's cursors are its first and last edge's",
        )
        check(
            info["hasPreviousPage"] == (after is not None),
            f"page {pages}: hasPreviousPage {info['hasPreviousPage']}",
        )
        seen += [(e["node"]["key"], e["node"]["value"]) for e in edges]
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
        check(pages < 5, "kvScan paging ends")
    check(
        seen == [(f"gql/page/{i}", i) for i in range(5)],
        f"kvScan pages with `after` give every record once, in key order: {seen}",
    )
    check(pages == 3, f"5 records in pages of 2 are 3 pages ({pages})")

    created = await session.execute(
        request('mutation { kvPutIfAbsent(key: "gql/once", value: "first") { key version } }')
    )
    check(created["kvPutIfAbsent"]["key"] == "gql/once", "kvPutIfAbsent creates")
    error = await expect_error(
        session,
        request('mutation { kvPutIfAbsent(key: "gql/once", value: "second") { version } }'),
        "CONFLICT",
        "kvPutIfAbsent on an existing key",
    )
    check(error.errors[0].get("path") == ["kvPutIfAbsent"], f"the error's path: {error.errors}")
    still = await session.execute(request('{ kv(key: "gql/once") { value } }'))
    check(still["kv"]["value"] == "first", "the refused kvPutIfAbsent changed nothing")

    cas = """mutation($version: String!, $value: JSON!) {
        kvCompareAndSwap(key: "gql/a", version: $version, value: $value) { version }
      }"""
    swapped = await session.execute(request(cas, version=first_version, value={"n": 2}))
    second_version = swapped["kvCompareAndSwap"]["version"]
    check(
        int(second_version) > int(first_version),
        f"kvCompareAndSwap with the current version writes a newer one ({first_version} -> {second_version})",
    )
    await expect_error(
        session,
        request(cas, version=first_version, value={"n": 3}),
        "CONFLICT",
        "kvCompareAndSwap with a stale version",
    )
    now = await session.execute(request('{ kv(key: "gql/a") { value version } }'))
    check(
        now["kv"] == {"value": {"n": 2}, "version": second_version},
        f"the stale swap changed nothing: {now}",
    )

    deleted = await session.execute(request('mutation { kvDelete(key: "gql/a") }'))
    check(deleted["kvDelete"] is True, "kvDelete of a record returns true")
    again = await session.execute(request('mutation { kvDelete(key: "gql/a") }'))
    check(again["kvDelete"] is False, "kvDelete of an absent key returns false")
    gone = await session.execute(request('{ kv(key: "gql/a") { key } }'))
    check(gone["kv"] is None, "the deleted record is gone")


async def vector_checks(session):
    made = await session.execute(
        request(
            'mutation { createCollection(name: "gqlvec", dimension: 3, metric: COSINE) { name dimension metric } }'
        )
    )
    check(
        made["createCollection"] == {"name": "gqlvec", "dimension": 3, "metric": "COSINE"},
        f"createCollection: {made}",
    )
    upsert = """mutation($id: String!, $v: [Float!]!, $m: JSON) {
        upsertVector(collection: "gqlvec", id: $id, vector: $v, metadata: $m) { id vector metadata }
      }"""
    for id_, vector, color in [
        ("east", [1.0, 0.0, 0.0], "red"),
        ("north", [0.0, 1.0, 0.0], "blue"),
        ("northeast", [0.7, 0.7, 0.0], "red"),
    ]:
        stored = await session.execute(request(upsert, id=id_, v=vector, m={"color": color}))
        check(
            stored["upsertVector"]["id"] == id_
            and stored["upsertVector"]["metadata"] == {"color": color}
            # Components are stored as 32-bit floats.
            and all(abs(a - b) < 1e-6 for a, b in zip(stored["upsertVector"]["vector"], vector))
            and len(stored["upsertVector"]["vector"]) == 3,
            f"upsertVector {id_}: {stored}",
        )
    found = await session.execute(
        request(
            """query($q: [Float!]!) {
              collection(name: "gqlvec") {
                name dimension
                all: search(vector: $q, k: 3) { id distance metadata }
                red: search(vector: $q, k: 3, filter: {color: "red"}) { id }
              }
            }""",
            q=[1.0, 0.1, 0.0],
        )
    )
    collection = found["collection"]
    check(collection["dimension"] == 3, "collection returns the dimension")
    ids = [hit["id"] for hit in collection["all"]]
    check(ids == ["east", "northeast", "north"], f"search orders by distance: {ids}")
    distances = [hit["distance"] for hit in collection["all"]]
    check(distances == sorted(distances), f"distances ascend: {distances}")
    check(
        collection["all"][0]["metadata"] == {"color": "red"},
        "a search hit carries its metadata",
    )
    check(
        [hit["id"] for hit in collection["red"]] == ["east", "northeast"],
        f"search with a metadata filter: {collection['red']}",
    )
    absent = await session.execute(request('{ collection(name: "gqlnone") { name } }'))
    check(absent["collection"] is None, "collection of an absent name is null")

    # Approximate searches of a collection this small are answered exactly, whatever ef.
    modes = await session.execute(
        request(
            """query($q: [Float!]!) {
              collection(name: "gqlvec") {
                exact: search(vector: $q, k: 3, mode: EXACT) { id distance metadata }
                approximate: search(vector: $q, k: 3, mode: APPROXIMATE) { id distance metadata }
                narrow: search(vector: $q, k: 3, mode: APPROXIMATE, ef: 1) { id distance metadata }
                wide: search(vector: $q, k: 3, mode: APPROXIMATE, ef: 4096) { id distance metadata }
                red: search(vector: $q, k: 3, filter: {color: "red"}, mode: APPROXIMATE, ef: 8) { id }
              }
            }""",
            q=[1.0, 0.1, 0.0],
        )
    )
    modes = modes["collection"]
    check(
        all(modes[name] == collection["all"] for name in ["exact", "approximate", "narrow", "wide"]),
        f"search with mode APPROXIMATE finds what EXACT finds: {modes}",
    )
    check(
        [hit["id"] for hit in modes["red"]] == ["east", "northeast"],
        f"an approximate search with a metadata filter: {modes['red']}",
    )
    await bad_search_mode(session, 'collection(name: "gqlvec") { search(vector: [1, 0, 0]%s) { id } }')


async def bad_search_mode(session, field):
    """`field` with bad `mode` and `ef` arguments (%s where they go) is refused naming them."""
    for arguments, what in [
        (", mode: APPROXIMATE, ef: 0", "ef 0"),
        (", mode: APPROXIMATE, ef: 4097", "ef past 4096"),
        (", mode: APPROXIMATE, ef: -1", "a negative ef"),
        (", mode: EXACT, ef: 8", "ef with mode EXACT"),
        (", ef: 8", "ef without a mode"),
    ]:
        document = "{ " + field % arguments + " }"
        error = await expect_error(session, request(document), "BAD_USER_INPUT", f"{document}: {what}")
        check(
            (error.errors[0].get("extensions") or {}).get("field") == "ef",
            f"{what}: BAD_USER_INPUT naming ef ({error.errors})",
        )
    # A mode that is not one of the enum's never reaches a resolver: the engine refuses it,
    # naming the argument.
    document = "{ " + field % ", mode: FAST" + " }"
    try:
        result = await session.execute(request(document))
    except TransportQueryError as e:
        check(
            any('"mode"' in error.get("message", "") for error in e.errors or []),
            f"mode FAST is refused naming mode ({e.errors})",
        )
    else:
        fail(f"mode FAST: expected an error, got {result}")


async def memory_checks(session):
    remember = """mutation($text: String!) {
        remember(text: $text, tags: ["gqlmem"], metadata: {topic: "travel"}) { id chunks tags }
      }"""
    ferry = (await session.execute(request(remember, text="The ferry to the island leaves the harbour at seven every morning.")))["remember"]
    soup = (await session.execute(request(remember, text="Tomato soup needs basil and a pinch of salt.")))["remember"]
    check(ferry["chunks"] >= 1 and ferry["tags"] == ["gqlmem"], f"remember: {ferry}")
    found = await session.execute(
        request(
            """query($q: String!) {
              exact: search(text: $q, k: 2, tags: ["gqlmem"]) { score text source { kind memory } tags metadata }
              approximate: search(text: $q, k: 2, tags: ["gqlmem"], mode: APPROXIMATE, ef: 8) {
                score text source { kind memory } tags metadata
              }
            }""",
            q="when does the boat leave?",
        )
    )
    exact = found["exact"]
    check(
        [hit["source"]["memory"] for hit in exact] == [ferry["id"], soup["id"]] and exact[0]["score"] > exact[1]["score"],
        f"search by meaning ranks the ferry first: {exact}",
    )
    check(found["approximate"] == exact, f"search with mode APPROXIMATE finds what EXACT finds: {found['approximate']}")
    await bad_search_mode(session, 'search(text: "ferry"%s) { score }')


async def graph_checks(session):
    put_node = """mutation($id: String!, $label: String!, $p: JSON) {
        putNode(id: $id, label: $label, properties: $p) { id label properties }
      }"""
    for id_, name in [("gql-a", "Ada"), ("gql-b", "Bo"), ("gql-c", "Cy")]:
        node = await session.execute(request(put_node, id=id_, label="person", p={"name": name}))
        check(
            node["putNode"] == {"id": id_, "label": "person", "properties": {"name": name}},
            f"putNode {id_}: {node}",
        )
    for src, dst in [("gql-a", "gql-b"), ("gql-b", "gql-c")]:
        edge = await session.execute(
            request(
                "mutation($s: String!, $d: String!) { putEdge(src: $s, rel: \"knows\", dst: $d, weight: 2.5) { src rel dst weight } }",
                s=src,
                d=dst,
            )
        )
        check(
            edge["putEdge"] == {"src": src, "rel": "knows", "dst": dst, "weight": 2.5},
            f"putEdge {src} -> {dst}: {edge}",
        )
    await expect_error(
        session,
        request('mutation { putEdge(src: "gql-a", rel: "knows", dst: "gql-nobody") { src } }'),
        "NOT_FOUND",
        "putEdge to a node that does not exist",
    )
    got = await session.execute(
        request(
            """{
              node(id: "gql-a") {
                id label properties
                neighbors(depth: 2) { hops node { id properties } }
                edges(direction: OUT) { dst target { id } }
              }
            }"""
        )
    )
    node = got["node"]
    check(node["properties"] == {"name": "Ada"}, f"node returns its properties: {node}")
    check(
        node["neighbors"]
        == [
            {"hops": 1, "node": {"id": "gql-b", "properties": {"name": "Bo"}}},
            {"hops": 2, "node": {"id": "gql-c", "properties": {"name": "Cy"}}},
        ],
        f"node.neighbors(depth: 2) gives each node with its hops: {node['neighbors']}",
    )
    check(
        node["edges"] == [{"dst": "gql-b", "target": {"id": "gql-b"}}],
        f"node.edges(OUT) with its target: {node['edges']}",
    )
    path = await session.execute(
        request(
            '{ shortestPath(src: "gql-a", dst: "gql-c") { nodes { id } edges { src dst } total } }'
        )
    )
    path = path["shortestPath"]
    check(
        [n["id"] for n in path["nodes"]] == ["gql-a", "gql-b", "gql-c"]
        and [(e["src"], e["dst"]) for e in path["edges"]] == [("gql-a", "gql-b"), ("gql-b", "gql-c")]
        and path["total"] == 2,
        f"shortestPath a -> c goes through b in 2 hops: {path}",
    )
    weighted = await session.execute(
        request('{ shortestPath(src: "gql-a", dst: "gql-c", weighted: true) { total } }')
    )
    check(weighted["shortestPath"]["total"] == 5.0, f"weighted total: {weighted}")
    none = await session.execute(
        request('{ shortestPath(src: "gql-c", dst: "gql-a") { total } }')
    )
    check(none["shortestPath"] is None, "no path against the edges' direction: null")


async def object_checks(session, env):
    made = await session.execute(request('mutation { createBucket(name: "gql-bucket") { name createdAt } }'))
    check(
        made["createBucket"]["name"] == "gql-bucket" and made["createBucket"]["createdAt"] > 0,
        f"createBucket: {made}",
    )
    await expect_error(
        session,
        request('mutation { createBucket(name: "gql-bucket") { name } }'),
        "CONFLICT",
        "createBucket of an existing name",
    )
    buckets = await session.execute(request("{ buckets { name } }"))
    check(
        {"name": "gql-bucket"} in buckets["buckets"],
        f"buckets lists the new bucket: {buckets}",
    )
    listing = await session.execute(
        request(
            '{ objects(bucket: "gql-bucket", delimiter: "/") { objects { key size } commonPrefixes next } }'
        )
    )
    check(
        listing["objects"] == {"objects": [], "commonPrefixes": [], "next": None},
        f"objects of an empty bucket: {listing}",
    )

    s3 = env.boto3()
    uploads = {
        "docs/a.txt": b"alpha\n",
        "docs/b.txt": b"bravo bravo\n",
        "top.txt": b"top level\n",
    }
    for key, body in uploads.items():
        s3.put_object(
            Bucket="gql-bucket",
            Key=key,
            Body=body,
            ContentType="text/plain",
            Metadata={"origin": "boto3"},
        )
    rolled = await session.execute(
        request('{ objects(bucket: "gql-bucket", delimiter: "/") { objects { key } commonPrefixes next } }')
    )
    check(
        rolled["objects"]
        == {"objects": [{"key": "top.txt"}], "commonPrefixes": ["docs/"], "next": None},
        f"objects with a delimiter rolls docs/ up: {rolled}",
    )
    listing = """query($after: String) {
        objects(bucket: "gql-bucket", prefix: "docs/", first: 1, after: $after) {
          objects { key size etag contentType metadata lastModified } next
        }
      }"""
    seen = []
    after = None
    for _ in range(4):
        page = (await session.execute(request(listing, after=after)))["objects"]
        seen += page["objects"]
        after = page["next"]
        if after is None:
            break
    check(
        [o["key"] for o in seen] == ["docs/a.txt", "docs/b.txt"],
        f"objects pages with `next` as `after`: {[o['key'] for o in seen]}",
    )
    for meta in seen:
        body = uploads[meta["key"]]
        check(
            meta["size"] == len(body)
            and meta["etag"] == hashlib.md5(body).hexdigest()
            and meta["contentType"] == "text/plain"
            and meta["metadata"] == {"origin": "boto3"}
            and meta["lastModified"] > 0,
            f"{meta['key']}: the size, ETag, content type and metadata boto3 stored ({meta})",
        )
    signed = await session.execute(
        request(
            """{ objects(bucket: "gql-bucket", prefix: "docs/") {
                 objects { key downloadUrl(expiresIn: 120) { url expiresAt } } } }"""
        )
    )
    for item in signed["objects"]["objects"]:
        link = item["downloadUrl"]
        check(
            link["url"].startswith(env.s3[0] + "/gql-bucket/docs/")
            and "X-Amz-Signature=" in link["url"]
            and link["expiresAt"] > 0,
            f"{item['key']}: a presigned URL on the S3 listener ({link})",
        )
        # A plain GET with no token and no AWS client, as a browser or curl would.
        with urllib.request.urlopen(link["url"], timeout=10) as answer:
            check(
                answer.status == 200 and answer.read() == uploads[item["key"]],
                f"{item['key']}: the presigned URL downloads the bytes boto3 uploaded",
            )
        try:
            urllib.request.urlopen(
                urllib.request.Request(link["url"], data=b"overwrite", method="PUT"), timeout=10
            )
            fail(f"{item['key']}: a presigned download URL must not allow a PUT")
        except urllib.error.HTTPError as refused:
            check(refused.code == 403, f"a PUT with a download URL is refused: {refused.code}")
    await expect_error(
        session,
        request('{ object(bucket: "gql-bucket", key: "docs/a.txt") { downloadUrl(expiresIn: 0) { url } } }'),
        "BAD_USER_INPUT",
        "downloadUrl with expiresIn 0",
    )
    one = await session.execute(
        request('{ object(bucket: "gql-bucket", key: "top.txt") { key size } }')
    )
    check(one["object"] == {"key": "top.txt", "size": len(uploads["top.txt"])}, f"object: {one}")
    removed = await session.execute(
        request('mutation { deleteObject(bucket: "gql-bucket", key: "top.txt") }')
    )
    check(removed["deleteObject"] is True, "deleteObject of an object returns true")
    gone = await session.execute(
        request('{ object(bucket: "gql-bucket", key: "top.txt") { key } }')
    )
    check(gone["object"] is None, "the deleted object is null")
    left = s3.list_objects_v2(Bucket="gql-bucket")
    check(
        [o["Key"] for o in left.get("Contents", [])] == ["docs/a.txt", "docs/b.txt"],
        "boto3 no longer lists the object deleted through GraphQL",
    )
    await expect_error(
        session,
        request('{ objects(bucket: "gql-no-bucket") { next } }'),
        "NOT_FOUND",
        "objects of a bucket that does not exist",
    )


async def scenario_http(env):
    async with env.aiohttp(env.token) as session:
        typename = await session.execute(request("{ __typename }"))
        check(typename == {"__typename": "Query"}, "a query over aiohttp")
        await kv_checks(session)
        await vector_checks(session)
        await memory_checks(session)
        await graph_checks(session)
        await object_checks(session, env)


# --- errors: partial results, tenants and bad input over gql's requests transport


def sync_error(session, req, what):
    try:
        result = session.execute(req)
    except TransportQueryError as e:
        return e
    fail(f"{what}: expected an error, got {result}")


async def scenario_errors(env):
    with env.requests(env.token) as session:
        session.execute(request('mutation { kvPut(key: "gql/err", value: {tenant: "A"}) { version } }'))
        session.execute(request('mutation { putNode(id: "gql-secret", label: "doc") { id } }'))

    with env.requests(env.limited_token) as session:
        error = sync_error(
            session,
            request('{ kv(key: "gql/err") { value } node(id: "gql-secret") { id } }'),
            "a field beyond the token's scopes",
        )
        check(
            error.data is not None and error.data.get("kv") == {"value": {"tenant": "A"}},
            f"the field within the scopes succeeds beside the refused one: data {error.data}",
        )
        check(error.data.get("node") is None, "the refused field is null")
        check(
            [(e.get("path"), (e.get("extensions") or {}).get("code")) for e in error.errors]
            == [(["node"], "FORBIDDEN")],
            f"one FORBIDDEN error on node: {error.errors}",
        )
        denied = sync_error(
            session,
            request('mutation { putNode(id: "gql-x", label: "doc") { id } }'),
            "a mutation beyond the token's scopes",
        )
        check(codes(denied) == ["FORBIDDEN"], f"putNode without graph:write: {denied.errors}")

    with env.requests(env.other_token) as session:
        other = session.execute(
            request('{ kv(key: "gql/err") { value } node(id: "gql-secret") { id } kvScan(prefix: "gql/") { edges { node { key } } } }')
        )
        check(
            other == {"kv": None, "node": None, "kvScan": {"edges": []}},
            f"the other tenant sees null (no error) for the first tenant's key and node: {other}",
        )

    with env.requests(env.token) as session:
        bad_cases = [
            ('{ kv(key: "") { key } }', "key", "an empty key"),
            ('{ kvScan(first: 0) { edges { cursor } } }', "first", "first: 0"),
            ('{ kvScan(after: "%%%") { edges { cursor } } }', "after", "a cursor this API did not issue"),
            ('mutation { kvCompareAndSwap(key: "gql/err", version: "v1", value: 1) { version } }', "version", "a version that is not one"),
            ('mutation { createCollection(name: "gqlbad", dimension: 0, metric: L2) { name } }', "dimension", "dimension 0"),
            ('{ node(id: "gql-secret") { neighbors(depth: 9) { hops } } }', "depth", "depth 9"),
            ('{ shortestPath(src: "gql-secret", dst: "gql-secret", maxDepth: 40) { total } }', "maxDepth", "maxDepth 40"),
        ]
        for document, field, what in bad_cases:
            error = sync_error(session, request(document), what)
            check(
                codes(error) == ["BAD_USER_INPUT"]
                and (error.errors[0].get("extensions") or {}).get("field") == field,
                f"{what}: BAD_USER_INPUT naming {field} ({error.errors})",
            )
        # A variable of the wrong type never reaches a resolver: the engine refuses it.
        wrong = sync_error(
            session,
            request("query($k: String!) { kv(key: $k) { key } }", k=42),
            "a variable of the wrong type",
        )
        check(bool(wrong.errors), f"a variable of the wrong type is refused: {wrong.errors}")


# --- subscriptions over both WebSocket subprotocols


CHANGES = """subscription($prefix: String!, $after: String) {
  changes(kinds: [KV], prefix: $prefix, after: $after) { cursor op kind key version }
}"""


def websocket_client(env, subprotocol, token):
    """A client whose connection_init carries `token` (none when it is None)."""
    init_payload = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(
        transport=WebsocketsTransport(
            url=env.websocket,
            subprotocols=[subprotocol],
            init_payload=init_payload,
            ack_timeout=10,
        ),
        fetch_schema_from_transport=False,
    )


class Subscription:
    """A running subscription whose results a task puts on a queue."""

    def __init__(self, session, variables):
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._pump(session, variables))

    async def _pump(self, session, variables):
        try:
            async for result in session.subscribe(request(CHANGES, **variables)):
                await self.queue.put(result["changes"])
        except Exception as e:  # handed to the reader, which fails with it
            await self.queue.put(e)

    async def next(self, what, timeout=DELIVERY_TIMEOUT):
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            fail(f"{what}: no change within {timeout} s")
        if isinstance(item, Exception):
            fail(f"{what}: the subscription failed: {item!r}")
        return item

    async def nothing(self, seconds, what):
        try:
            item = await asyncio.wait_for(self.queue.get(), seconds)
        except asyncio.TimeoutError:
            print(f"ok: {what}")
            return
        fail(f"{what}: got {item}")

    async def close(self):
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


async def live(env, subscription, prefix):
    """Waits until `subscription` delivers: writes probe keys through REST until one arrives
    (a subscription starts at the log's head when the server gets it, which no message
    acknowledges), then takes the probes written after it, so the next change is the caller's."""
    written = []
    for n in range(40):
        key = f"{prefix}probe-{n}"
        written.append((key, env.rest_put(key, n)))
        try:
            first = await asyncio.wait_for(subscription.queue.get(), 0.5)
            break
        except asyncio.TimeoutError:
            continue
    else:
        fail("the subscription delivered none of 40 probe writes")
    if isinstance(first, Exception):
        fail(f"the subscription failed: {first!r}")
    keys = [key for key, _ in written]
    check(first["key"] in keys, f"the subscription delivers a probe write: {first}")
    for key, version in written[keys.index(first["key"]) + 1 :]:
        change = await subscription.next(f"probe {key}")
        check(
            (change["key"], change["version"]) == (key, version),
            f"the probes arrive in commit order: {key}",
        )


async def until_expiry(env, subprotocol):
    """Follows the changes with the expiring token until the subscription ends; its error."""
    async with websocket_client(env, subprotocol, env.expiring_token) as session:
        try:
            async for result in session.subscribe(
                request('subscription { changes(prefix: "never/") { cursor } }')
            ):
                fail(f"{subprotocol}: the expiring token's subscription got {result}")
        except TransportQueryError as e:
            return e
    fail(f"{subprotocol}: the expiring token's subscription ended without an error")


async def scenario_subscriptions(env, subprotocol):
    prefix = f"sub-{subprotocol}/"
    if not env.expiring_token:
        fail("the subscription scenarios need --expiring-token")
    # Runs beside the rest: the token expires seconds from now.
    expiry = asyncio.create_task(until_expiry(env, subprotocol))

    async with websocket_client(env, subprotocol, env.token) as session:
        subscription = Subscription(session, {"prefix": prefix})
        await live(env, subscription, prefix)

        version_a = env.rest_put(f"{prefix}a", {"n": "a"})
        change_a = await subscription.next("the change of a")
        check(
            change_a == {
                "cursor": change_a["cursor"],
                "op": "PUT",
                "kind": "KV",
                "key": f"{prefix}a",
                "version": version_a,
            },
            f"{subprotocol}: a REST PUT arrives as a change: {change_a}",
        )
        # Outside the prefix: filtered out.
        env.rest_put(f"elsewhere-{subprotocol}/x", 1)
        version_b = env.rest_put(f"{prefix}b", {"n": "b"})
        change_b = await subscription.next("the change of b")
        check(
            (change_b["key"], change_b["version"]) == (f"{prefix}b", version_b),
            f"{subprotocol}: the next change is b's (the key outside the prefix is not sent): {change_b}",
        )
        check(
            int(change_b["cursor"]) > int(change_a["cursor"]),
            "cursors increase",
        )
        await subscription.close()

    async with websocket_client(env, subprotocol, env.token) as session:
        resumed = Subscription(session, {"prefix": prefix, "after": change_a["cursor"]})
        first = await resumed.next("the change after a's cursor")
        check(
            first == change_b,
            f"{subprotocol}: resuming after a's cursor gives b's change, not a's: {first}",
        )
        await resumed.nothing(1.0, f"{subprotocol}: nothing more after b until the next write")
        version_c = env.rest_put(f"{prefix}c", {"n": "c"})
        change_c = await resumed.next("the change of c")
        check(
            (change_c["key"], change_c["version"], change_c["op"]) == (f"{prefix}c", version_c, "PUT"),
            f"{subprotocol}: the resumed subscription goes on live: {change_c}",
        )
        await resumed.close()

    # A cursor that is not one: BAD_USER_INPUT naming `after`, before anything is followed.
    async with websocket_client(env, subprotocol, env.token) as session:
        try:
            async for result in session.subscribe(request(CHANGES, prefix=prefix, after="abc")):
                fail(f"{subprotocol}: a subscription after a bad cursor got {result}")
        except TransportQueryError as e:
            check(
                codes(e) == ["BAD_USER_INPUT"]
                and (e.errors[0].get("extensions") or {}).get("field") == "after",
                f"{subprotocol}: changes(after: \"abc\") is BAD_USER_INPUT naming after ({e.errors})",
            )
        else:
            fail(f"{subprotocol}: a subscription after a bad cursor ended without an error")

    # A kind the token may not read: the subscription fails with FORBIDDEN.
    async with websocket_client(env, subprotocol, env.limited_token) as session:
        try:
            async for result in session.subscribe(
                request('subscription { changes(kinds: [NODE]) { cursor } }')
            ):
                fail(f"{subprotocol}: a subscription to NODE without graph:read got {result}")
        except TransportQueryError as e:
            check(
                codes(e) == ["FORBIDDEN"],
                f"{subprotocol}: changes(kinds: [NODE]) without graph:read is FORBIDDEN ({e.errors})",
            )
        else:
            fail(f"{subprotocol}: a subscription to NODE without graph:read ended without an error")

    try:
        expired = await asyncio.wait_for(expiry, 60)
    except asyncio.TimeoutError:
        fail(f"{subprotocol}: the expiring token's subscription did not end within 60 s")
    check(
        codes(expired) == ["UNAUTHENTICATED"] and "expired" in expired.errors[0]["message"],
        f"{subprotocol}: a subscription ends with UNAUTHENTICATED when its token expires ({expired.errors})",
    )

    # No token, or one that is not valid, in connection_init: the server refuses the
    # connection (graphql-ws with a connection_error message, graphql-transport-ws by closing
    # the socket with the reason) and nothing is delivered.
    for token, why in [(None, "connection_init must carry the bearer token"), ("not-a-token", "unauthorized")]:
        refused = None
        try:
            async with websocket_client(env, subprotocol, token) as session:
                async for result in session.subscribe(request(CHANGES, prefix=prefix)):
                    fail(f"{subprotocol}: a subscription with token {token!r} got {result}")
        except Exception as e:
            refused = e
        told = []
        cause = refused
        while cause is not None:
            told.append(repr(cause))
            cause = cause.__cause__ or cause.__context__
        check(
            refused is not None and why in " ".join(told),
            f"{subprotocol}: a connection with token {token!r} is refused ({' <- '.join(told)})",
        )


SCENARIOS = {
    "http": scenario_http,
    "errors": scenario_errors,
    "ws-transport": lambda env: scenario_subscriptions(env, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL),
    "ws-apollo": lambda env: scenario_subscriptions(env, WebsocketsTransport.APOLLO_SUBPROTOCOL),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--other-token", required=True)
    parser.add_argument("--limited-token", required=True)
    parser.add_argument("--s3-endpoint", help="the S3 listener (http)")
    parser.add_argument("--s3-key", help="tenant A's S3 access key id (http)")
    parser.add_argument("--s3-secret", help="its secret (http)")
    parser.add_argument(
        "--expiring-token",
        help="tenant A's kv:read token that expires within seconds (ws-transport, ws-apollo)",
    )
    args = parser.parse_args()
    asyncio.run(SCENARIOS[args.scenario](Env(args)))
    print(f"scenario {args.scenario}: all checks passed")


if __name__ == "__main__":
    main()
