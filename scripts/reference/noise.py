"""Reference noise from the real torch and numpy, for test/fixtures/noise/reference.json.

Run with Debian's python (torch 1.13 from python3-torch, numpy 1.24 from python3-numpy), not a
pyenv python without them:

    /usr/bin/python3 scripts/reference/noise.py > test/fixtures/noise/reference.json

Each case is a fresh generator for (source, seed) and a sequence of calls on it, as diffusers
draws the initial latents and then each ancestral step's noise from one generator:
  torch: g = torch.Generator("cpu").manual_seed(seed); torch.randn(shape, generator=g) per call
  numpy: r = np.random.RandomState(seed); r.randn(*shape).astype(np.float32) per call
For each call: first and last 16 values (all of them under 16), sum and sum of squares in
float64 (math.fsum, exact before the one rounding), the SHA-256 of the float32 little-endian
bytes, and every value for tensors of at most 256 elements.
"""

import hashlib
import json
import math
import platform

import numpy as np
import torch

SEEDS = [0, 1, 42, 12345, 987654321, 2147483647]
SHAPES = [
    [1], [5], [15], [16], [17], [31], [32], [33], [168], [256],
    [4, 6, 7], [3, 4, 8, 6], [1, 4, 64, 64], [2, 4, 40, 24],
]
SEQUENCES = [
    [[256], [17], [3]],
    [[5], [16], [1], [15], [33]],
    [[3], [3], [1, 4, 8, 8], [7], [2]],
    [[1, 4, 64, 64], [1, 4, 64, 64], [1, 4, 64, 64]],
]
FULL_LIMIT = 256


def summary(values: np.ndarray, shape):
    flat = values.reshape(-1).astype(np.float32)
    as_double = [float(v) for v in flat]
    out = {
        "shape": list(shape),
        "first": as_double[:16],
        "last": as_double[-16:],
        "sum": math.fsum(as_double),
        "sumsq": math.fsum(v * v for v in as_double),
        "sha256": hashlib.sha256(flat.astype("<f4").tobytes()).hexdigest(),
    }
    if flat.size <= FULL_LIMIT:
        out["values"] = as_double
    return out


def run(source: str, seed: int, calls):
    if source == "torch":
        g = torch.Generator("cpu").manual_seed(seed)
        draw = lambda shape: torch.randn(shape, generator=g, dtype=torch.float32).numpy()
    else:
        r = np.random.RandomState(seed)
        draw = lambda shape: r.randn(*shape).astype(np.float32)
    return {"source": source, "seed": seed, "calls": [summary(draw(shape), shape) for shape in calls]}


def capability() -> str:
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def main():
    cases = []
    for source in ("torch", "numpy"):
        for seed in SEEDS:
            for shape in SHAPES:
                cases.append(run(source, seed, [shape]))
        for seed in (0, 42):
            for calls in SEQUENCES:
                cases.append(run(source, seed, calls))
    doc = {
        "generator": "scripts/reference/noise.py",
        "torch": torch.__version__,
        "torchCpuCapability": capability(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cases": cases,
    }
    print(json.dumps(doc, indent=None, separators=(",", ":")))


if __name__ == "__main__":
    main()
