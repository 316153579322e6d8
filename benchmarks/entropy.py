"""Entropy-coder throughput and overhead: progcodec.entropy versus constriction called directly.

    python benchmarks/entropy.py [--n 1000000]

Prints symbols/s for encode and decode of N discretized-Gaussian symbols (scales log-uniform
in [0.3, 20]) and of categorical tokens, and bits/symbol against the ideal -log2 p.
"""
from __future__ import annotations

import argparse
import time

import constriction
import numpy as np
import torch

from progcodec import entropy as E


def best(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    n = ap.parse_args().n
    rng = np.random.default_rng(0)
    scales = np.exp(rng.uniform(np.log(0.3), np.log(20), n))
    x = np.round(rng.normal(0, scales)).astype(np.int32)
    p = torch.special.ndtr(torch.from_numpy((x + 0.5) / scales)) - torch.special.ndtr(torch.from_numpy((x - 0.5) / scales))
    ideal = float(-torch.log2(p).sum()) / n
    rows = []

    params = [E.Gaussian(scales)]
    E.encode_layer([x[:10]], [E.Gaussian(scales[:10])])  # warm the table cache
    for i in range(E.SCALE_LEVELS):
        E._gaussian_model(i)
    te, (payload, check) = best(lambda: E.encode_layer([x], params))
    td, (y,) = best(lambda: E.decode_layer(payload, params, check))
    assert np.array_equal(x, y)
    rows.append(("progcodec Gaussian (64-entry table)", te, td, 8 * len(payload) / n))

    model = constriction.stream.model.QuantizedGaussian(-200, 200)
    means = np.zeros(n)

    def raw_enc():
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(x, model, means, scales)
        return enc.get_compressed()
    te, words = best(raw_enc)
    td, y = best(lambda: constriction.stream.queue.RangeDecoder(words).decode(model, means, scales))
    assert np.array_equal(x, y)
    rows.append(("constriction QuantizedGaussian, raw", te, td, 32 * len(words) / n))

    k, m = 256, (n // 4) // 64 * 64
    logits = rng.normal(0, 2, (m // 64, k))
    probs = np.repeat(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 64, axis=0)
    tokens = np.array([rng.choice(k, p=q) for q in probs[::64]]).repeat(64).astype(np.int32)
    cat = [E.Categorical(probs)]
    te, (cp, cc) = best(lambda: E.encode_layer([tokens], cat))
    td, (t2,) = best(lambda: E.decode_layer(cp, cat, cc))
    assert np.array_equal(tokens, t2)
    cat_ideal = float(-np.log2(probs[np.arange(m), tokens]).sum()) / m

    print(f"{n} Gaussian symbols, ideal {ideal:.4f} bits/symbol; {m} categorical tokens (K={k}),"
          f" ideal {cat_ideal:.4f} bits/token")
    print(f"| coder | encode Msym/s | decode Msym/s | bits/symbol | overhead vs ideal |")
    print("|---|---:|---:|---:|---:|")
    for name, te, td, bits in rows:
        print(f"| {name} | {n / te / 1e6:.2f} | {n / td / 1e6:.2f} | {bits:.4f} | {100 * (bits / ideal - 1):+.2f}% |")
    bits = 8 * len(cp) / m
    print(f"| progcodec Categorical, per-token tables | {m / te / 1e6:.2f} | {m / td / 1e6:.2f} | {bits:.4f} |"
          f" {100 * (bits / cat_ideal - 1):+.2f}% |")


if __name__ == "__main__":
    main()
