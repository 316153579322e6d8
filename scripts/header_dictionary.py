"""Write progcodec/data/header-dict-1.bin: the zstd dictionary of format 1.2's compressed
headers (docs/bitstream.md §2.2). Normative: once released it never changes (a new dictionary
needs a new minor version); tests check its SHA-256. It is raw content, the msgpack headers of
typical streams of the shipped plugins, so key names and common strings cost a few bits."""
from pathlib import Path

import msgpack

PLUGINS = [  # (model, rates, layer names, layer_steps)
    ("vq-vae", ["k256"], ["top-1/16", "bottom-1/4"], None),
    ("pq-mim", ["f8m4v64"], [f"stage{i}" for i in range(1, 6)], None),
    ("hqa", ["photo", "digits"], ["top-1/32", "codes-1/16", "codes-1/8", "codes-1/4", "codes-1/2"], None),
    ("qres-vae", ["low", "high"], ["z1-1/64", "z2-1/32", "z3-1/32", "z4-1/16", "z5-1/16", "z6-1/16", "z7-1/8",
                                   "z8-1/8", "z9-1/8", "z10-1/4", "z11-1/4", "z12-1/4"], None),
    ("pyramid", ["low", "medium", "high"], ["thumb-1/16", "residual-1/8", "residual-1/4", "residual-1/2", "residual-1/1"], None),
    ("overfit", ["lowest", "low", "medium", "high", "highest", "custom"],
     ["nets+grids-1/64,1/32", "grid-1/16", "grid-1/8", "grid-1/4", "grid-1/2", "grid-1/1"], [5, 2, 2, 2, 2, 2]),
]


def build() -> bytes:
    parts = []
    for model, rates, names, steps in PLUGINS:  # most common last: zstd prefers recent matches
        body = {"model": model, "rate": rates[len(rates) // 2], "model_version": "1", "weights": "0123456789abcdef",
                "width": 768, "height": 512, "mode": "RGB", "layers": [[n, 1024] for n in names],
                "encoded_layers": len(names), "coder": "range-v1/scales64-0.11-64/p16", "side": b"",
                "side_codec": "zstd" if steps is None else "raw"}
        if steps:
            body["layer_steps"] = steps
        parts.append(msgpack.packb(body, use_bin_type=True))
        parts.append(" ".join(rates).encode())
    parts.append(msgpack.packb({"source_mode": "L", "alpha": "rgba", "side_codec": "raw", "mode": "L"}, use_bin_type=True))
    return b"".join(parts)


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "progcodec" / "data" / "header-dict-1.bin"
    out.write_bytes(build())
    import hashlib
    print(f"wrote {out} ({out.stat().st_size} bytes, sha256 {hashlib.sha256(out.read_bytes()).hexdigest()})")
