"""Two events appended one after the other vs as one NATS atomic batch.

Why this exists: issue 18 proposed atomic batch publish (NATS >= 2.12,
`allow_atomic`) to cut the executor's writes. Measured, it costs more than it
saves on file-backed streams, so SKYNET does not use it (docs/benchmarks.md).
Run `run.sh` beside this file to measure it again on a newer server.
"""
import asyncio
import json
import sys
import time
import uuid

import nats

PAIRS = 2000
PAYLOAD = b"x" * 300


async def main(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for storage in ("file", "memory"):
        name = f"ATOMIC_{storage.upper()}"
        cfg = {"name": name, "subjects": [f"{name}.>"], "allow_atomic": True, "storage": storage}
        await js._jsm._api_request(f"$JS.API.STREAM.CREATE.{name}", json.dumps(cfg).encode(), timeout=5)

        async def one_by_one(i: str) -> None:
            await js.publish(f"{name}.{i}.a", PAYLOAD, headers={"Nats-Msg-Id": f"{i}a"})
            await js.publish(f"{name}.{i}.b", PAYLOAD, headers={"Nats-Msg-Id": f"{i}b"})

        async def batch(i: str) -> None:
            b = uuid.uuid4().hex
            await nc.publish(f"{name}.{i}.a", PAYLOAD,
                             headers={"Nats-Msg-Id": f"{i}a", "Nats-Batch-Id": b, "Nats-Batch-Sequence": "1"})
            r = await nc.request(f"{name}.{i}.b", PAYLOAD, timeout=10, headers={
                "Nats-Msg-Id": f"{i}b", "Nats-Batch-Id": b, "Nats-Batch-Sequence": "2", "Nats-Batch-Commit": "1"})
            if b'"error"' in r.data:
                raise SystemExit(f"batch refused: {r.data!r}")

        for how, append in (("one by one", one_by_one), ("atomic batch", batch)):
            for concurrency in (1, 32):
                sem = asyncio.Semaphore(concurrency)
                run = uuid.uuid4().hex[:8]

                async def go(k: int) -> None:
                    async with sem:
                        await append(f"{run}{k}")

                started = time.perf_counter()
                await asyncio.gather(*(go(k) for k in range(PAIRS)))
                secs = time.perf_counter() - started
                print(f"{storage:6} {how:12} concurrency {concurrency:2}: {PAIRS / secs:7.0f} pairs/s")
    await nc.close()


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
