"""An asyncio client: decode several progcodec URLs concurrently without blocking the event loop.

    python examples/asyncio_client.py http://127.0.0.1:8000/files/a.pcs http://127.0.0.1:8000/files/b.pcs
"""
import asyncio
import sys
import time

import progcodec
from progcodec.net import aopen_url


async def show(url: str, t0: float) -> None:
    name = url.rsplit("/", 1)[-1]
    try:
        # aopen_url: HTTP/1.1 on asyncio streams, each read bounded by the timeout.
        # adecode_stream runs the model in a worker thread. (With httpx: r.aiter_bytes().)
        async for step in progcodec.adecode_stream(aopen_url(url, timeout=10), latest_only=True):
            print(f"{time.perf_counter() - t0:6.2f} s  {name}: layer {step.layer}/{step.layers_total}, "
                  f"{step.bytes_consumed} B, {step.bpp:.3f} bpp")
            step.image.save(f"{name}.layer{step.layer}.png")
    except (progcodec.BitstreamError, OSError, TimeoutError) as exc:
        print(f"{name}: stopped: {exc}")


async def main(urls):
    t0 = time.perf_counter()

    async def heartbeat():  # proves the loop stays free while bytes trickle in
        while True:
            await asyncio.sleep(0.5)
            print(f"{time.perf_counter() - t0:6.2f} s  (event loop alive)")

    beat = asyncio.create_task(heartbeat())
    await asyncio.gather(*(show(u, t0) for u in urls))
    beat.cancel()


asyncio.run(main(sys.argv[1:]))
