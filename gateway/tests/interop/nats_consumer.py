"""Checks what the p8fs NATS publisher put in a JetStream stream, with the nats-py client.

Used by gateway/tests/events.rs. The test writes the key-value records k1, k2, ... kN of one
tenant, one write each, so the tenant's change with cursor i is the put of k<i>. This waits until
the stream holds N messages (or the timeout passes), waits a little longer for any duplicate, and
then checks that the stream holds exactly one message per change, in cursor order, each on
`<prefix>.<tenant>.kv.put` with `Nats-Msg-Id: <tenant>:<cursor>` and the change record as its
payload, and nothing else (no other tenant's change, nothing of the reserved tenant).

    nats_consumer.py --url URL --stream NAME --prefix PREFIX --tenant T --count N [--timeout S]
    nats_consumer.py ... --count-only      prints how many messages the stream holds, and exits

Prints a JSON summary on success; exits 1 naming the first mismatch.
"""

import argparse
import asyncio
import json
import sys
import time

import nats
from nats.js.errors import NotFoundError


def fail(message):
    print(f"nats_consumer: {message}", file=sys.stderr)
    sys.exit(1)


async def stream_messages(js, stream):
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return None
    return info.state


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--count-only", action="store_true")
    args = parser.parse_args()

    nc = await nats.connect(args.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    try:
        if args.count_only:
            state = await stream_messages(js, args.stream)
            print(json.dumps({"messages": state.messages if state else 0}))
            return

        deadline = time.monotonic() + args.timeout
        state = None
        while time.monotonic() < deadline:
            state = await stream_messages(js, args.stream)
            if state is not None and state.messages >= args.count:
                break
            await asyncio.sleep(0.1)
        have = state.messages if state else 0
        if have < args.count:
            fail(f"the stream holds {have} messages after {args.timeout}s; expected {args.count}")
        # Anything sent twice would arrive now.
        await asyncio.sleep(1.0)
        state = await stream_messages(js, args.stream)
        if state.messages != args.count:
            fail(f"the stream holds {state.messages} messages; expected exactly {args.count}")

        cursors = []
        for sequence in range(state.first_seq, state.last_seq + 1):
            message = await js.get_msg(args.stream, sequence)
            record = json.loads(message.data)
            cursor = int(record["cursor"])
            where = f"message {sequence} (cursor {cursor})"
            expected_subject = f"{args.prefix}.{args.tenant}.{record['kind']}.{record['op']}"
            if message.subject != expected_subject:
                fail(f"{where}: subject {message.subject!r}, expected {expected_subject!r}")
            if (record["kind"], record["op"]) != ("kv", "put"):
                fail(f"{where}: a {record['kind']} {record['op']}; the test wrote only kv puts")
            if record.get("key") != f"k{cursor}":
                fail(f"{where}: key {record.get('key')!r}, expected 'k{cursor}'")
            message_id = (message.headers or {}).get("Nats-Msg-Id")
            if message_id != f"{args.tenant}:{cursor}":
                fail(f"{where}: Nats-Msg-Id {message_id!r}, expected '{args.tenant}:{cursor}'")
            if not isinstance(record.get("at"), int) or record.get("version") is None:
                fail(f"{where}: the record lacks `at` or `version`: {record}")
            cursors.append(cursor)
        if cursors != list(range(1, args.count + 1)):
            fail(f"cursors are not 1..={args.count} in order: {cursors[:20]}...")
        print(json.dumps({"messages": len(cursors), "first": cursors[0], "last": cursors[-1]}))
    finally:
        await nc.close()


asyncio.run(main())
