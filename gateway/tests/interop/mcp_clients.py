"""The official Python MCP SDK (`mcp`) against a running p8fs at /mcp.

    python3 mcp_clients.py SCENARIO --url BASE --token TOKEN --limited-token TOKEN
        --other-token TOKEN --rest-token TOKEN

BASE is the main listener (http://127.0.0.1:PORT). TOKEN has every scope the tools need, issued
for the MCP resource (BASE/mcp) in tenant A; --limited-token tenant A's with kv:read only, for
the resource too; --other-token tenant B's with every scope, for the resource; --rest-token
tenant A's with every scope for the default audience (the REST API's, which /mcp refuses).

Scenarios: `modern` (the 2026-07-28 revision: no initialize, no session) and `legacy` (2025-11-25:
initialize and Mcp-Session-Id) call every tool and check the structured results, the tool list's
schemas and annotations, and bad arguments answered as tool errors naming the field;
`stdio` runs the same tool checks through `p8fs mcp --stdio` (--p8fs names the binary), as a
desktop assistant launches it, on both revisions;
`oauth` signs in as an assistant does (--username and --password name a user of tenant A): the
SDK's OAuth client discovers the authorization server from the 401, registers with a Client ID
Metadata Document (served over HTTPS on a loopback port, its CA made by `make-ca DIR` and trusted
by the server through oauth.client_metadata_ca_file; --tls-dir names it) or dynamically, runs PKCE
with the resource
parameter, the user approves in headless Chromium (mcp_approve.mjs), and the tools answer, on
both revisions; the token's audience is the MCP resource and the REST API refuses it;
`two-nodes` opens a 2025-era session on one gateway node and goes on with it on a second node over
the same database (--second-url), which refuses it to another tenant;
`refusals` checks the protected resource (RFC 9728 metadata, 401 challenges, 403
insufficient_scope naming the scope, a token for another audience refused, a foreign Origin
refused) and that tenant B sees nothing of tenant A's, its session included.
Each prints what it checks and exits non-zero at the first failure.
"""

import argparse
import asyncio
import base64
import datetime
import http.server
import ipaddress
import ssl
import threading
import json
import sys
import urllib.parse
import uuid
import warnings

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

EXPECTED_TOOLS = {
    "remember": (False, False, False),
    "recall": (True, False, True),
    "forget": (False, True, True),
    "link": (False, False, True),
    "related": (True, False, True),
    "list_files": (True, False, True),
    "read_file": (True, False, True),
    "kv_get": (True, False, True),
    "kv_put": (False, True, True),
    "kv_list": (True, False, True),
    "search_vectors": (True, False, True),
    "shortest_path": (True, False, True),
}


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}", flush=True)


class Env:
    def __init__(self, args):
        self.base = args.url.rstrip("/")
        self.mcp = f"{self.base}/mcp"
        self.token = args.token
        self.limited_token = args.limited_token
        self.other_token = args.other_token
        self.rest_token = args.rest_token
        self.p8fs = args.p8fs
        self.second_url = args.second_url
        self.tls_dir = args.tls_dir
        self.stdio = False
        self.username = args.username
        self.password = args.password
        # Names no other run shares (the SQL servers keep their data).
        self.run = uuid.uuid4().hex[:10]

    def rest(self, method, path, body=None, content_type="application/json"):
        """A REST call with the REST token (setting up what the tools read)."""
        headers = {"authorization": f"Bearer {self.rest_token}"}
        data = None
        if body is not None:
            headers["content-type"] = content_type
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = httpx2.request(method, f"{self.base}{path}", headers=headers, content=data, timeout=60)
        if answer.status_code >= 300:
            fail(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer


def client(env, token, mode, message_handler=None):
    if env.stdio:
        # A desktop assistant's way: launch `p8fs mcp --stdio`, which relays to the server.
        params = StdioServerParameters(
            command=env.p8fs,
            args=["mcp", "--stdio", "--server", env.base],
            env={"P8FS_TOKEN": token, "PATH": "/usr/bin:/bin"},
        )
        return Client(params, mode=mode)
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=60)
    return Client(streamable_http_client(env.mcp, http_client=http), mode=mode, message_handler=message_handler)


async def call(mcp, name, arguments):
    """A tool call that must succeed; its structured content."""
    result = await mcp.call_tool(name, arguments)
    if result.is_error:
        fail(f"{name}({arguments}) failed: {[c.text for c in result.content]}")
    return result.structured_content


async def call_error(mcp, name, arguments, field, what):
    """A tool call that must fail as a tool result (isError) naming `field`."""
    result = await mcp.call_tool(name, arguments)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    check(result.is_error and field in text, f"{what}: isError naming {field} ({text})")


def set_up(env):
    """Files, a vector collection and a small graph, made through REST."""
    bucket = f"mcp-{env.run}"
    env.rest("PUT", f"/v1/objects/{bucket}")
    env.rest(
        "PUT",
        f"/v1/objects/{bucket}/notes/garden.md",
        b"# Garden\n\nThe tomatoes need watering every second day in July.\n",
        "text/markdown",
    )
    env.rest("PUT", f"/v1/objects/{bucket}/notes/todo.txt", b"buy seeds\n", "text/plain")
    collection = f"mcpv{env.run}"
    env.rest("PUT", f"/v1/collections/{collection}", {"dimension": 3, "metric": "l2"})
    for name, vector in {"a": [0, 0, 0], "b": [1, 0, 0], "c": [5, 5, 5]}.items():
        env.rest(
            "PUT",
            f"/v1/collections/{collection}/records/{name}",
            {"vector": vector, "metadata": {"name": name}},
        )
    for node in ["n1", "n2", "n3"]:
        env.rest("PUT", f"/v1/graph/nodes/{env.run}{node}", {"label": "place"})
    for src, dst in [("n1", "n2"), ("n2", "n3")]:
        env.rest("PUT", f"/v1/graph/edges/{env.run}{src}/road/{env.run}{dst}", {"weight": 1.0})
    return bucket, collection


async def tool_checks(env, mode):
    # Names of this run only: a scenario may run the checks more than once.
    env.run = uuid.uuid4().hex[:10]
    bucket, collection = set_up(env)
    updates = asyncio.Queue()

    async def on_message(message):
        uri = getattr(getattr(message, "params", None), "uri", None)
        if uri is not None:
            await updates.put(uri)

    async with client(env, env.token, mode, on_message) as mcp:
        if mode == "legacy":
            check(mcp.protocol_version == "2025-11-25", f"legacy negotiates 2025-11-25 ({mcp.protocol_version})")
        else:
            check(mcp.protocol_version == mode, f"modern runs on {mode} ({mcp.protocol_version})")
        listed = (await mcp.list_tools()).tools
        by_name = {tool.name: tool for tool in listed}
        check(set(by_name) == set(EXPECTED_TOOLS), f"the tools are listed ({sorted(by_name)})")
        for name, (read_only, destructive, idempotent) in EXPECTED_TOOLS.items():
            tool = by_name[name]
            hints = tool.annotations
            check(
                tool.input_schema.get("type") == "object"
                and (tool.output_schema or {}).get("type") == "object"
                and hints is not None
                and (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint)
                == (read_only, destructive, idempotent),
                f"{name}: input and output schemas, annotations {(read_only, destructive, idempotent)}",
            )

        meeting = await call(
            mcp,
            "remember",
            {
                "text": "The quarterly planning meeting moved to Thursday at 10am in room 4B.",
                "tags": ["meeting", env.run],
                "metadata": {"project": "apollo"},
            },
        )
        cake = await call(
            mcp,
            "remember",
            {"text": "Grandma's lemon cake needs three lemons and a cup of sugar.", "tags": ["recipe", env.run]},
        )
        check(meeting["id"] and meeting["chunks"] >= 1 and sorted(meeting["tags"]) == sorted(["meeting", env.run]), f"remember: {meeting}")
        recalled = await call(mcp, "recall", {"query": "when is the planning meeting?", "k": 2, "tags": [env.run]})
        results = recalled["results"]
        check(
            len(results) == 2 and results[0]["memory_id"] == meeting["id"] and results[0]["score"] > results[1]["score"],
            f"recall ranks the meeting first ({[(r['memory_id'], round(r['score'], 3)) for r in results]})",
        )
        check(results[0]["source"] == "memory" and "Thursday" in results[0]["text"], "recall returns the chunk's text and source")
        approximate = await call(
            mcp, "recall", {"query": "when is the planning meeting?", "k": 2, "tags": [env.run], "mode": "approximate", "ef": 8}
        )
        check(approximate == recalled, f"recall with mode approximate finds what exact finds ({approximate})")
        only_recipes = await call(mcp, "recall", {"query": "meeting", "tags": ["recipe", env.run]})
        check(
            [r["memory_id"] for r in only_recipes["results"]] == [cake["id"]],
            "recall with tags keeps only the tagged memories",
        )
        templates = (await mcp.list_resource_templates()).resource_templates
        check(
            sorted(t.uri_template for t in templates) == ["p8fs://memories/{id}", "p8fs://objects/{bucket}/{+key}"],
            "resource templates for memories and files",
        )
        listed_resources = (await mcp.list_resources()).resources
        check(
            f"p8fs://memories/{meeting['id']}" in [r.uri for r in listed_resources],
            "the memories are listed as resources",
        )
        read = await mcp.read_resource(f"p8fs://memories/{meeting['id']}")
        check("room 4B" in read.contents[0].text, "a memory resource reads as its text")
        read = await mcp.read_resource(f"p8fs://objects/{bucket}/notes/garden.md")
        check("tomatoes need watering" in read.contents[0].text, "a file resource reads as its extracted text")
        try:
            await mcp.read_resource("p8fs://memories/m0000")
            fail("reading a memory that does not exist must fail")
        except Exception as missing:  # the SDK's MCPError
            check("m0000" in str(missing), f"an unknown resource is an error naming it ({missing})")
        linked = await call(mcp, "link", {"from": meeting["id"], "to": cake["id"], "rel": "mentions"})
        check(linked == {"from": meeting["id"], "rel": "mentions", "to": cake["id"]}, f"link: {linked}")
        related = await call(mcp, "related", {"id": meeting["id"]})
        check(
            [m["id"] for m in related["memories"]] == [cake["id"]] and related["memories"][0]["hops"] == 1,
            f"related walks the link ({related})",
        )

        buckets = await call(mcp, "list_files", {})
        check(bucket in buckets["buckets"], "list_files without a bucket lists the buckets")
        listing = await call(mcp, "list_files", {"bucket": bucket, "delimiter": "/"})
        check(listing["folders"] == ["notes/"] and listing["files"] == [], f"list_files rolls folders up ({listing})")
        first = await call(mcp, "list_files", {"bucket": bucket, "prefix": "notes/", "limit": 1})
        second = await call(mcp, "list_files", {"bucket": bucket, "prefix": "notes/", "limit": 1, "after": first["next"]})
        check(
            [f["key"] for f in first["files"] + second["files"]] == ["notes/garden.md", "notes/todo.txt"]
            and second["next"] is None,
            "list_files pages with next as after",
        )
        garden = await call(mcp, "read_file", {"bucket": bucket, "key": "notes/garden.md"})
        check(
            garden["format"] == "markdown" and "tomatoes need watering" in garden["text"] and not garden["truncated"],
            f"read_file extracts the text ({garden['format']})",
        )
        cut = await call(mcp, "read_file", {"bucket": bucket, "key": "notes/garden.md", "max_bytes": 10})
        check(cut["truncated"] and len(cut["text"].encode()) <= 10, "read_file cuts at max_bytes")

        key = f"notes/{env.run}"
        put = await call(mcp, "kv_put", {"key": key, "value": {"mood": "sunny", "n": 3}})
        check(put["key"] == key and put["version"] >= 1, f"kv_put: {put}")
        got = await call(mcp, "kv_get", {"key": key})
        check(got["found"] and got["value"] == {"mood": "sunny", "n": 3}, f"kv_get: {got}")
        missing = await call(mcp, "kv_get", {"key": f"{key}-none"})
        check(missing == {"key": f"{key}-none", "value": None, "found": False, "version": None, "expires_at": None}, "kv_get of nothing")
        listed = await call(mcp, "kv_list", {"prefix": key})
        check([r["key"] for r in listed["records"]] == [key], "kv_list by prefix")

        hits = await call(mcp, "search_vectors", {"collection": collection, "vector": [0.9, 0, 0], "k": 2})
        check([h["id"] for h in hits["hits"]] == ["b", "a"], f"search_vectors nearest first ({hits})")
        filtered = await call(
            mcp, "search_vectors", {"collection": collection, "vector": [0.9, 0, 0], "k": 2, "filter": {"name": "c"}}
        )
        check([h["id"] for h in filtered["hits"]] == ["c"], "search_vectors with a metadata filter")
        # Approximate searches of a collection this small are answered exactly, whatever ef.
        # (`search_mode`: `mode` is this scenario's protocol revision.)
        for search_mode in [{"mode": "exact"}, {"mode": "approximate"}, {"mode": "approximate", "ef": 1}, {"mode": "approximate", "ef": 4096}]:
            same = await call(mcp, "search_vectors", {"collection": collection, "vector": [0.9, 0, 0], "k": 2, **search_mode})
            check(same == hits, f"search_vectors with {search_mode} finds what exact finds ({same})")
        path = await call(mcp, "shortest_path", {"from": f"{env.run}n1", "to": f"{env.run}n3"})
        check(
            path["found"] and path["nodes"] == [f"{env.run}n1", f"{env.run}n2", f"{env.run}n3"] and path["total"] == 2,
            f"shortest_path: {path['nodes']}",
        )
        none = await call(mcp, "shortest_path", {"from": f"{env.run}n3", "to": f"{env.run}n1"})
        check(none["found"] is False, "shortest_path against the edges' direction finds none")

        await call_error(mcp, "recall", {"query": "x", "k": 0}, "k", "recall with k 0")
        await call_error(mcp, "remember", {"text": ""}, "text", "remember with empty text")
        await call_error(mcp, "kv_put", {"key": key}, "value", "kv_put without a value")
        await call_error(mcp, "kv_get", {"key": ""}, "key", "kv_get with an empty key")
        await call_error(mcp, "search_vectors", {"collection": collection, "vector": [1, 2]}, "vector", "a vector of the wrong dimension")
        for tool, arguments in [
            ("search_vectors", {"collection": collection, "vector": [0.9, 0, 0]}),
            ("recall", {"query": "meeting"}),
        ]:
            await call_error(mcp, tool, {**arguments, "mode": "fast"}, "mode", f"{tool} with mode fast")
            await call_error(mcp, tool, {**arguments, "mode": "approximate", "ef": 0}, "ef", f"{tool} with ef 0")
            await call_error(mcp, tool, {**arguments, "mode": "approximate", "ef": 4097}, "ef", f"{tool} with ef past 4096")
            await call_error(mcp, tool, {**arguments, "ef": 8}, "ef", f"{tool} with ef and no mode")
            await call_error(mcp, tool, {**arguments, "mode": "exact", "ef": 8}, "ef", f"{tool} with ef and mode exact")
        await call_error(mcp, "read_file", {"bucket": bucket, "key": "notes/garden.md", "max_bytes": 0}, "max_bytes", "read_file with max_bytes 0")
        await call_error(mcp, "remember", {"text": "x", "ttl_seconds": 1}, "ttl", "remember with a ttl under a minute")

        if env.stdio:
            forgot = await call(mcp, "forget", {"id": cake["id"]})
            check(forgot == {"forgotten": True}, "forget removes a memory")
        else:
            # Forgets the memory while subscribed to it.
            await subscription_checks(env, mcp, mode, updates, bucket, cake["id"])
        again = await call(mcp, "forget", {"id": cake["id"]})
        check(again == {"forgotten": False}, "forgetting it again finds nothing")
        after = await call(mcp, "recall", {"query": "lemon cake", "tags": ["recipe", env.run]})
        check(after["results"] == [], "a forgotten memory is never recalled")
    return meeting["id"], key


async def subscription_checks(env, mcp, mode, updates, bucket, memory_id):
    """A file written through REST and a memory forgotten arrive as resource updates."""
    file_uri = f"p8fs://objects/{bucket}/notes/todo.txt"
    memory_uri = f"p8fs://memories/{memory_id}"
    if mode == "legacy":
        # The SDK warns that resources/subscribe is gone from 2026-07-28: it is the legacy API here.
        warnings.filterwarnings("ignore", message="resources/(un)?subscribe")
        await mcp.subscribe_resource(file_uri)
        await mcp.subscribe_resource(memory_uri)
        await asyncio.sleep(0.5)
        env.rest("PUT", f"/v1/objects/{bucket}/notes/todo.txt", b"buy more seeds\n", "text/plain")
        env.rest("PUT", f"/v1/objects/{bucket}/notes/other.txt", b"not watched\n", "text/plain")
        got = await asyncio.wait_for(updates.get(), 20)
        check(got == file_uri, f"resources/subscribe: the file's update arrives ({got})")
        await call(mcp, "forget", {"id": memory_id})
        got = await asyncio.wait_for(updates.get(), 20)
        check(got == memory_uri, f"resources/subscribe: the forgotten memory's update arrives ({got})")
        await mcp.unsubscribe_resource(file_uri)
        await asyncio.sleep(0.5)
        env.rest("PUT", f"/v1/objects/{bucket}/notes/todo.txt", b"again\n", "text/plain")
        await asyncio.sleep(1.5)
        check(updates.empty(), "after resources/unsubscribe nothing arrives")
        return
    async with mcp.listen(resource_subscriptions=[file_uri, memory_uri]) as subscription:
        check(
            sorted(subscription.honored.resource_subscriptions or []) == sorted([file_uri, memory_uri]),
            "subscriptions/listen honours both resources",
        )
        env.rest("PUT", f"/v1/objects/{bucket}/notes/other.txt", b"not watched\n", "text/plain")
        env.rest("PUT", f"/v1/objects/{bucket}/notes/todo.txt", b"buy more seeds\n", "text/plain")
        event = await asyncio.wait_for(subscription.__anext__(), 20)
        check(event.uri == file_uri, f"subscriptions/listen: the file's update arrives ({event})")
        await call(mcp, "forget", {"id": memory_id})
        event = await asyncio.wait_for(subscription.__anext__(), 20)
        check(event.uri == memory_uri, f"subscriptions/listen: the forgotten memory's update arrives ({event})")


async def scenario_modern(env):
    await tool_checks(env, "2026-07-28")


async def scenario_legacy(env):
    await tool_checks(env, "legacy")


def raw(env, token, body, headers=None):
    """A JSON-RPC POST to /mcp as a plain HTTP client."""
    sent = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if token:
        sent["authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    return httpx2.post(env.mcp, headers=sent, content=json.dumps(body).encode(), timeout=60)


def initialize_request():
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }


async def scenario_refusals(env):
    metadata_url = f"{env.base}/.well-known/oauth-protected-resource/mcp"
    for url in [metadata_url, f"{env.base}/.well-known/oauth-protected-resource"]:
        metadata = httpx2.get(url, timeout=30).json()
        check(
            metadata["resource"] == env.mcp and metadata["authorization_servers"] == [env.base]
            and "memories:read" in metadata["scopes_supported"],
            f"RFC 9728 metadata at {url[len(env.base):]}",
        )

    anonymous = raw(env, None, initialize_request())
    challenge = anonymous.headers.get("www-authenticate", "")
    check(
        anonymous.status_code == 401 and f'resource_metadata="{metadata_url}"' in challenge,
        f"no token: 401 pointing at the metadata ({challenge})",
    )
    foreign = raw(env, env.rest_token, initialize_request())
    challenge = foreign.headers.get("www-authenticate", "")
    check(
        foreign.status_code == 401 and 'error="invalid_token"' in challenge,
        f"a token for another audience: 401 invalid_token ({challenge})",
    )
    garbage = raw(env, "not.a.token", initialize_request())
    check(garbage.status_code == 401, "a malformed token: 401")

    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "remember", "arguments": {"text": "should never be stored"}},
    }
    limited = raw(env, env.limited_token, call, {"mcp-protocol-version": "2025-11-25"})
    challenge = limited.headers.get("www-authenticate", "")
    check(
        limited.status_code == 403 and 'error="insufficient_scope"' in challenge and 'scope="memories:write"' in challenge,
        f"a call beyond the token's scopes: 403 naming memories:write ({challenge})",
    )
    evil = raw(env, env.token, initialize_request(), {"origin": "https://evil.example"})
    check(evil.status_code == 403, f"a foreign Origin is refused ({evil.status_code})")

    # Tenant A remembers; tenant B (same tools, same server) sees none of it.
    meeting, key = await tool_checks(env, "2026-07-28")
    async with client(env, env.other_token, "2026-07-28") as other:
        recalled = await call_tool_structured(other, "recall", {"query": "planning meeting Thursday", "k": 10})
        check(
            all(r.get("memory_id") != meeting for r in recalled["results"]),
            "tenant B never recalls tenant A's memories",
        )
        got = await call_tool_structured(other, "kv_get", {"key": key})
        check(got["found"] is False, "tenant B does not see tenant A's record")
        result = await other.call_tool("related", {"id": meeting})
        check(result.is_error and "not found" in result.content[0].text, "tenant B cannot walk from tenant A's memory")

    # A legacy session belongs to the token's subject and tenant.
    opened = raw(env, env.token, initialize_request())
    session = opened.headers.get("mcp-session-id")
    check(opened.status_code == 200 and session, "initialize opens a session")
    hijack = raw(
        env,
        env.other_token,
        {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
        {"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"},
    )
    check(hijack.status_code == 404, f"another tenant's token cannot use the session ({hijack.status_code})")


def answer(response):
    """The JSON-RPC message of an answer, JSON or the last message of an SSE stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        messages = [
            json.loads(line[len("data:"):])
            for line in response.text.splitlines()
            if line.startswith("data:") and line[len("data:"):].strip()
        ]
        return messages[-1] if messages else None
    return response.json()


async def scenario_two_nodes(env):
    """A 2025-era session opened on one gateway node is served by another."""
    second = env.second_url.rstrip("/") + "/mcp"
    version = {"mcp-protocol-version": "2025-11-25"}
    opened = raw(env, env.token, initialize_request())
    session = opened.headers.get("mcp-session-id")
    check(opened.status_code == 200 and session, "node 1: initialize opens a session")
    ready = raw(env, env.token, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"mcp-session-id": session, **version})
    check(ready.status_code in (200, 202), f"node 1: initialized ({ready.status_code})")

    def on_second(token, body):
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "authorization": f"Bearer {token}",
            "mcp-session-id": session,
            **version,
        }
        return httpx2.post(second, headers=headers, content=json.dumps(body).encode(), timeout=60)

    listed = on_second(env.token, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    tools = (answer(listed) or {}).get("result", {}).get("tools", [])
    check(listed.status_code == 200 and len(tools) == len(EXPECTED_TOOLS), f"node 2 serves the session ({listed.status_code})")
    key = f"two-nodes/{uuid.uuid4().hex[:8]}"
    put = on_second(env.token, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                "params": {"name": "kv_put", "arguments": {"key": key, "value": 42}}})
    check((answer(put) or {}).get("result", {}).get("structuredContent", {}).get("key") == key, "node 2: a tool call in the session")
    got = raw(env, env.token, {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                               "params": {"name": "kv_get", "arguments": {"key": key}}},
              {"mcp-session-id": session, **version})
    check((answer(got) or {}).get("result", {}).get("structuredContent", {}).get("value") == 42, "node 1 reads what node 2 wrote, in the same session")
    hijack = on_second(env.other_token, {"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
    check(hijack.status_code == 404, f"node 2 refuses the session to another tenant ({hijack.status_code})")


async def call_tool_structured(mcp, name, arguments):
    result = await mcp.call_tool(name, arguments)
    if result.is_error:
        fail(f"{name} failed: {[c.text for c in result.content]}")
    return result.structured_content


async def scenario_stdio(env):
    env.stdio = True
    await tool_checks(env, "legacy")
    await tool_checks(env, "2026-07-28")
    # The relay answers a refused message with an error naming the status, never silence.
    async with client(env, env.limited_token, "legacy") as limited:
        try:
            result = await limited.call_tool("remember", {"text": "should never be stored"})
            fail(f"a call beyond the token's scopes must fail through the relay ({result})")
        except Exception as refused:  # the SDK's MCPError
            check("403" in str(refused) and "memories:write" in str(refused), f"the relay reports the 403 ({refused})")


class MemoryStorage:
    """The OAuth client's token and registration storage, in memory."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


# Never listened on: the browser answers the redirect itself (mcp_approve.mjs).
REDIRECT_URI = "http://127.0.0.1:9/callback"
SCOPE = "memories:read memories:write kv:read kv:write"


def make_ca(directory):
    """A CA and a certificate it signs for 127.0.0.1, for the HTTPS server of a Client ID Metadata
    Document (the SDK takes only https document URLs); p8fs trusts the CA through
    oauth.client_metadata_ca_file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    window = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p8fs test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(window[0])
        .not_valid_after(window[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(window[0])
        .not_valid_after(window[1])
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    with open(f"{directory}/ca.pem", "wb") as out:
        out.write(ca.public_bytes(pem))
    with open(f"{directory}/leaf.pem", "wb") as out:
        out.write(leaf.public_bytes(pem))
    with open(f"{directory}/leaf.key", "wb") as out:
        out.write(
            leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )


def serve_client_metadata(tls_dir):
    """A Client ID Metadata Document over HTTPS on a loopback port; returns its URL (the
    client_id)."""
    holder = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(holder["document"]).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(f"{tls_dir}/leaf.pem", f"{tls_dir}/leaf.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}/mcp-client.json"
    holder["document"] = {
        "client_id": url,
        "client_name": "MCP test assistant",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return url


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def oauth_round(env, registration, mode, metadata_url=None):
    """Discovery, registration (a Client ID Metadata Document, or dynamic), PKCE, approval in
    Chromium, then tool calls."""
    storage = MemoryStorage()
    redirect = {}

    async def approve(url):
        approval = await asyncio.create_subprocess_exec(
            "node", "mcp_approve.mjs", "--url", url, "--redirect-uri", REDIRECT_URI,
            "--username", env.username, "--password", env.password,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await approval.communicate()
        if approval.returncode != 0:
            fail(f"the approval in Chromium failed: {err.decode()[-2000:]}")
        redirect.update(json.loads(out))
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        check(query.get("resource") == env.mcp, f"{registration}/{mode}: the client asks for the resource {env.mcp}")
        check(query.get("code_challenge_method") == "S256", f"{registration}/{mode}: PKCE with S256")

    async def callback():
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(redirect["redirect"]).query))
        check(query.get("iss") == env.base, f"{registration}/{mode}: the redirect carries iss (RFC 9207)")
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    provider = OAuthClientProvider(
        server_url=env.mcp,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[REDIRECT_URI],
            client_name="MCP test assistant",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            scope=SCOPE,
        ),
        storage=storage,
        redirect_handler=approve,
        callback_handler=callback,
        client_metadata_url=metadata_url,
    )
    http = httpx2.AsyncClient(auth=provider, timeout=60)
    async with Client(streamable_http_client(env.mcp, http_client=http), mode=mode) as mcp:
        remembered = await call(mcp, "remember", {"text": f"OAuth works for {registration} on {mode}.", "tags": [env.run]})
        recalled = await call(mcp, "recall", {"query": f"does OAuth work for {registration}?", "tags": [env.run]})
        check(
            remembered["id"] in [r["memory_id"] for r in recalled["results"]],
            f"{registration}/{mode}: tools answer with the token the assistant got",
        )
    token = storage.tokens.access_token
    check(claims(token)["aud"] == env.mcp, f"{registration}/{mode}: the token's audience is the MCP resource")
    client_id = storage.client_info.client_id
    if registration == "cimd":
        check(client_id == metadata_url, f"cimd/{mode}: the client_id is the metadata document's URL")
    else:
        check(bool(client_id) and client_id != metadata_url, f"dcr/{mode}: a registered client_id ({client_id})")
    check(
        "MCP test assistant" in redirect["consent"],
        f"{registration}/{mode}: the consent page names the client",
    )
    # The token works for MCP only: REST refuses it.
    rest = httpx2.get(f"{env.base}/v1/kv", headers={"authorization": f"Bearer {token}"}, timeout=30)
    check(rest.status_code == 401, f"{registration}/{mode}: the REST API refuses the MCP token ({rest.status_code})")


async def scenario_oauth(env):
    metadata_url = serve_client_metadata(env.tls_dir)
    for mode in ["2026-07-28", "legacy"]:
        await oauth_round(env, "cimd", mode, metadata_url)
        await oauth_round(env, "dcr", mode)


SCENARIOS = {
    "modern": scenario_modern,
    "legacy": scenario_legacy,
    "refusals": scenario_refusals,
    "stdio": scenario_stdio,
    "oauth": scenario_oauth,
    "two-nodes": scenario_two_nodes,
}


def main():
    if sys.argv[1:2] == ["make-ca"]:
        make_ca(sys.argv[2])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--limited-token", required=True)
    parser.add_argument("--other-token", required=True)
    parser.add_argument("--rest-token", required=True)
    parser.add_argument("--p8fs", help="the p8fs binary (the stdio scenario)")
    parser.add_argument("--second-url", help="a second gateway node on the same database (two-nodes)")
    parser.add_argument("--tls-dir", help="make-ca's directory (the oauth scenario)")
    parser.add_argument("--username", help="a user of tenant A (the oauth scenario)")
    parser.add_argument("--password", help="the user's password (the oauth scenario)")
    args = parser.parse_args()
    asyncio.run(SCENARIOS[args.scenario](Env(args)))
    print(f"scenario {args.scenario}: all checks passed", flush=True)


if __name__ == "__main__":
    main()
