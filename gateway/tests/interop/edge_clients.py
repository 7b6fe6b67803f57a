"""Clients no one here wrote, through `p8fs edge` in front of several `p8fs serve` nodes
(gateway/tests/edge.rs): a GraphQL subscription over WebSocket (gql's WebsocketsTransport, both
subprotocols) receiving changes written through REST on whichever node the edge picks; an MCP
tool call with the official SDK (streamable HTTP, 2026-07-28); gRPC with grpcio over h2c
(health, Kv.Put and Kv.Get, a garbage token refused as UNAUTHENTICATED).

Usage: edge_clients.py graphql --url http://EDGE --token=T
       edge_clients.py mcp --url http://EDGE --token=T   (a token for <issuer>/mcp)
       edge_clients.py grpc --url http://EDGE --proto-dir DIR --token=T [--ca CA.pem]
       (with --ca: TLS to the edge's TLS listener, HTTP/2 by ALPN)
Prints "edge clients <scenario>: all checks passed" at the end; any failed check raises.
"""

import argparse
import asyncio
import sys
import tempfile
import urllib.parse
import urllib.request
import json
import uuid


def fail(message):
    raise SystemExit(f"FAILED: {message}")


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


def rest_put(base, token, key, value):
    request = urllib.request.Request(
        f"{base}/v1/kv/{urllib.parse.quote(key, safe='')}",
        data=json.dumps(value).encode(),
        method="PUT",
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        if answer.status >= 300:
            fail(f"PUT {key}: {answer.status}")


# --- GraphQL subscription over WebSocket

CHANGES = """subscription($prefix: String!) {
  changes(kinds: [KV], prefix: $prefix) { cursor op kind key }
}"""


async def graphql(args):
    from gql import Client, gql
    from gql.transport.websockets import WebsocketsTransport

    websocket = "ws" + args.url[len("http"):] + "/graphql"
    for subprotocol in ["graphql-transport-ws", "graphql-ws"]:
        prefix = f"edge-{uuid.uuid4().hex[:8]}/"
        client = Client(
            transport=WebsocketsTransport(
                url=websocket,
                subprotocols=[subprotocol],
                init_payload={"Authorization": f"Bearer {args.token}"},
                ack_timeout=10,
            ),
            fetch_schema_from_transport=False,
        )
        async with client as session:
            received = asyncio.Queue()

            async def pump():
                try:
                    async for result in session.subscribe(
                        gql(CHANGES), variable_values={"prefix": prefix}
                    ):
                        await received.put(result["changes"])
                except Exception as e:
                    await received.put(e)

            task = asyncio.create_task(pump())
            # The subscription starts at the log's head when the node gets it: write probes
            # until one arrives, then the rest must arrive in order.
            first = None
            for n in range(40):
                await asyncio.to_thread(rest_put, args.url, args.token, f"{prefix}probe{n}", {"n": n})
                try:
                    first = await asyncio.wait_for(received.get(), 0.5)
                    break
                except asyncio.TimeoutError:
                    continue
            if first is None or isinstance(first, Exception):
                fail(f"{subprotocol}: the subscription delivered no probe write ({first!r})")
            keys = [f"{prefix}k{i}" for i in range(10)]
            for i, key in enumerate(keys):
                await asyncio.to_thread(rest_put, args.url, args.token, key, {"i": i})
            seen = []
            while len(seen) < len(keys):
                item = await asyncio.wait_for(received.get(), 20)
                if isinstance(item, Exception):
                    fail(f"{subprotocol}: the subscription failed: {item!r}")
                if item["key"] in keys:
                    seen.append(item["key"])
            check(seen == keys, f"{subprotocol}: 10 changes through the edge, in order")
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


# --- MCP


async def mcp(args):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    key = f"edge-{uuid.uuid4().hex[:8]}"
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {args.token}"}, timeout=60)
    async with Client(streamable_http_client(f"{args.url}/mcp", http_client=http), mode="2026-07-28") as session:
        put = await session.call_tool("kv_put", {"key": key, "value": {"via": "edge"}})
        check(not put.is_error, f"kv_put through the edge: {put.structured_content}")
        got = await session.call_tool("kv_get", {"key": key})
        check(
            not got.is_error and got.structured_content["value"] == {"via": "edge"},
            f"kv_get through the edge: {got.structured_content}",
        )
    # A token the edge refuses: 401 with the resource metadata of the node's own challenge.
    request = urllib.request.Request(
        f"{args.url}/mcp",
        data=b"{}",
        method="POST",
        headers={"authorization": "Bearer not-a-token", "content-type": "application/json"},
    )
    try:
        urllib.request.urlopen(request, timeout=30)
        fail("a garbage token on /mcp was let through")
    except urllib.error.HTTPError as e:
        challenge = e.headers.get("www-authenticate", "")
        check(
            e.code == 401 and "invalid_token" in challenge and "resource_metadata=" in challenge,
            f"a garbage token on /mcp: {e.code} {challenge}",
        )


# --- gRPC


def grpc_calls(args):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    sys.path.insert(0, ".")
    from grpc_clients import generate

    target = urllib.parse.urlparse(args.url).netloc
    with tempfile.TemporaryDirectory() as out:
        generate(args.proto_dir, out)
        from p8fs.v1 import kv_pb2, kv_pb2_grpc

        if args.ca:
            # TLS, HTTP/2 by ALPN, to the edge's TLS listener.
            with open(args.ca, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            channel = grpc.secure_channel(target, credentials)
        else:
            channel = grpc.insecure_channel(target)
        with channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
            check(status.status == health_pb2.HealthCheckResponse.SERVING, "grpc.health.v1 through the edge")
            stub = kv_pb2_grpc.KvStub(channel)
            metadata = [("authorization", f"Bearer {args.token}")]
            key = f"edge-{uuid.uuid4().hex[:8]}"
            value = json.dumps({"via": "grpc"})
            stub.Put(kv_pb2.PutRequest(key=key, value_json=value), metadata=metadata, timeout=30)
            got = stub.Get(kv_pb2.GetRequest(key=key), metadata=metadata, timeout=30)
            check(json.loads(got.value_json) == {"via": "grpc"}, "Kv.Put then Kv.Get through the edge")
            try:
                stub.Get(kv_pb2.GetRequest(key=key), metadata=[("authorization", "Bearer garbage")], timeout=30)
                fail("a garbage token was let through")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"a garbage token is UNAUTHENTICATED ({e.code()})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["graphql", "mcp", "grpc"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--proto-dir")
    parser.add_argument("--ca", help="grpc: the CA of the edge's TLS listener (then TLS)")
    args = parser.parse_args()
    if args.scenario == "graphql":
        asyncio.run(graphql(args))
    elif args.scenario == "mcp":
        asyncio.run(mcp(args))
    else:
        grpc_calls(args)
    print(f"edge clients {args.scenario}: all checks passed")


if __name__ == "__main__":
    main()
