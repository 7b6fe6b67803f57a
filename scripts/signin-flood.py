#!/usr/bin/env python3
"""Floods POST /oauth/signin of a running `p8fs serve` with anonymous sign-ins (wrong passwords
for random usernames, each costing the server an argon2 verification) over many concurrent
keep-alive connections, and reports the answers and, given the server's pid, its peak resident
memory (VmHWM in /proc/<pid>/status).

Standard library only. Connections can come from several loopback source addresses
(127.0.0.2, 127.0.0.3, ...; all of 127.0.0.0/8 is loopback on Linux) so the per-address
sign-in limit does not stop the flood before the password pool is saturated.

    scripts/signin-flood.py --url http://127.0.0.1:8099 --connections 1000 --sources 250 \
        --duration 30 --pid "$(pgrep -n -x p8fs)"
"""

import argparse
import asyncio
import collections
import re
import secrets
import sys
import time
import urllib.parse


def vm_hwm_kib(pid):
    """The peak resident set size of `pid` in KiB, or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


async def read_response(reader):
    """(status, headers, body) of one HTTP/1.1 response."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    headers = {}
    cookies = []
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        value = value.strip()
        if name == "set-cookie":
            cookies.append(value)
        headers[name] = value
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    headers["set-cookie"] = cookies
    return status, headers, body


async def request(reader, writer, host, method, path, cookie=None, form=None):
    body = urllib.parse.urlencode(form).encode() if form is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if form is not None:
        lines.append("Content-Type: application/x-www-form-urlencoded")
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    return await read_response(reader)


async def worker(args, index, deadline, counts, latencies, samples):
    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname, url.port or 80
    local = None
    if args.sources > 0:
        local = (f"127.0.0.{2 + index % args.sources}", 0)
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        except OSError as error:
            counts[f"connect error: {error.strerror}"] += 1
            await asyncio.sleep(0.1)
            continue
        try:
            status, headers, body = await request(
                reader, writer, url.netloc, "GET", "/oauth/signin"
            )
            cookie = headers["set-cookie"][0].split(";")[0] if headers["set-cookie"] else None
            match = re.search(rb'name="csrf" value="([^"]*)"', body)
            if status != 200 or cookie is None or match is None:
                counts[f"GET {status}"] += 1
                continue
            csrf = match.group(1).decode()
            while time.monotonic() < deadline:
                form = {
                    "username": "flood-" + secrets.token_hex(6),
                    "password": secrets.token_urlsafe(12),
                    "csrf": csrf,
                    "next": "/device",
                }
                started = time.monotonic()
                status, headers, body = await request(
                    reader, writer, url.netloc, "POST", "/oauth/signin", cookie, form
                )
                samples.setdefault(status, body)
                latencies[status].append(time.monotonic() - started)
                counts[status] += 1
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as error:
            counts[f"error: {type(error).__name__}"] += 1
        finally:
            writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument(
        "--sources",
        type=int,
        default=0,
        help="spread connections over this many source addresses 127.0.0.2...; 0: the default",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--pid", type=int, help="the server's pid, to report its VmHWM")
    parser.add_argument(
        "--verbose", action="store_true", help="show the error message of each kind of answer"
    )
    args = parser.parse_args()
    if args.sources > 253:
        parser.error("--sources: at most 253 (127.0.0.2 to 127.0.0.254)")

    before = vm_hwm_kib(args.pid) if args.pid else None
    counts = collections.Counter()
    latencies = collections.defaultdict(list)
    samples = {}
    deadline = time.monotonic() + args.duration
    started = time.monotonic()
    await asyncio.gather(
        *(
            worker(args, i, deadline, counts, latencies, samples)
            for i in range(args.connections)
        )
    )
    elapsed = time.monotonic() - started
    total = sum(v for k, v in counts.items() if isinstance(k, int))
    print(f"{args.connections} connections, {args.sources or 1} source address(es), "
          f"{elapsed:.1f} s: {total} sign-in answers ({total / elapsed:.0f}/s)")
    for key, value in sorted(counts.items(), key=lambda kv: str(kv[0])):
        line = f"  {key}: {value}"
        if key in latencies and latencies[key]:
            ordered = sorted(latencies[key])
            line += (f" (median {ordered[len(ordered) // 2] * 1000:.0f} ms, "
                     f"p99 {ordered[int(len(ordered) * 0.99)] * 1000:.0f} ms)")
        print(line)
        if args.verbose and key in samples:
            match = re.search(rb'id="error"[^>]*>([^<]*)', samples[key])
            print("    " + (match.group(1) if match else samples[key][:200]).decode(errors="replace"))
    if args.pid:
        after = vm_hwm_kib(args.pid)
        print(f"server VmHWM: {before} KiB before, {after} KiB after")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
