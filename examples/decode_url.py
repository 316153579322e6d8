"""Decode a progcodec stream from a URL progressively, saving every refinement as it arrives.

    progcodec serve some/folder --throttle 256kbit &          # or any HTTP server
    python examples/decode_url.py http://127.0.0.1:8000/files/photo.pcs [out_dir]
"""
import sys
import time
import urllib.request
from pathlib import Path

import progcodec
from progcodec.net import iter_body

url = sys.argv[1]
out = Path(sys.argv[2] if len(sys.argv) > 2 else "refinements")
out.mkdir(exist_ok=True)
t0 = time.perf_counter()
with urllib.request.urlopen(url, timeout=30) as resp:
    # iter_body hands over whatever has arrived (read1); passing `resp` itself works too.
    # latest_only: when several layers are already buffered, render only the newest.
    try:
        for step in progcodec.decode_stream(iter_body(resp), latest_only=True):
            path = out / f"layer{step.layer:02d}.png"
            step.image.save(path)
            print(f"{time.perf_counter() - t0:6.2f} s  layer {step.layer}/{step.layers_total}"
                  f"  {step.bytes_consumed:>8} B  {step.bpp:.3f} bpp  -> {path}")
    except (progcodec.TruncatedError, ConnectionError, TimeoutError) as exc:
        print(f"connection lost: {exc} (the last file written is the best refinement received)")
