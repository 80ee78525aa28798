"""Makes test/fixtures/safety/clip-input.json: CLIPImageProcessor's steps (openai/clip-vit-large-patch14
preprocessor config) on deterministic uint8 RGB images, with Pillow 9.4 doing the resize.

Run with Debian's python: /usr/bin/python3 scripts/reference/clip-preprocess-fixtures.py
This script holds no transformers code: it restates the steps of transformers' image_processing_clip.py
and image_transforms.py (read, not run): get_resize_output_image_size(default_to_square=False) ->
PIL Image.resize((w, h), BICUBIC, reducing_gap=None) -> center_crop with top/left (size - 224) // 2 ->
rescale (float64 multiply by 1/255, cast to float32) -> normalize ((x - mean) / std in float32).
"""
import hashlib
import json
import os
import sys

import numpy as np
import PIL
from PIL import Image

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
SIZES = [(512, 512), (512, 768), (768, 512), (64, 48), (300, 200), (100, 100), (224, 224), (225, 513)]


def pattern(width, height):
    # Same formula as test/local-safety.test.ts: smooth ramps, a product term and an XOR texture.
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    for c in range(3):
        out[..., c] = (x * x * 3 + y * y * 5 + x * y * 7 + c * 85 + ((x * 13) ^ (y * 29))) % 256
    return out


def shortest_edge(width, height, size=224):
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)  # (w, h)


cases = []
for width, height in SIZES:
    img = Image.fromarray(pattern(width, height), "RGB")
    w, h = shortest_edge(width, height)
    resized = np.array(img.resize((w, h), resample=Image.BICUBIC, reducing_gap=None))
    top, left = (h - 224) // 2, (w - 224) // 2
    crop = np.ascontiguousarray(resized[top : top + 224, left : left + 224])
    x = (crop.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    chw = np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32)
    flat = chw.reshape(-1)
    picks = [int(i) for i in np.linspace(0, flat.size - 1, 97).round()]
    cases.append(
        {
            "width": width,
            "height": height,
            "resized": [w, h],
            "crop": [left, top],
            "resizedSha256": hashlib.sha256(resized.tobytes()).hexdigest(),
            "pixelsSha256": hashlib.sha256(crop.tobytes()).hexdigest(),
            "firstRow": crop[0].reshape(-1)[:48].tolist(),
            "clipInputSha256": hashlib.sha256(flat.tobytes()).hexdigest(),
            "samples": [[i, float(flat[i])] for i in picks],
        }
    )

out = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/safety/clip-input.json"
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    json.dump({"pillow": PIL.__version__, "numpy": np.__version__, "cases": cases}, f, indent=1)
    f.write("\n")
print(out, len(cases))
