"""Mask resize fixture: what diffusers' mask processor (VaeImageProcessor with do_binarize,
do_convert_grayscale, resample "lanczos", resize_mode "default") makes of a small mask brought to a
larger size: PIL's LANCZOS resize, then 1 where >= 0.5. Writes test/fixtures/mask-resize/.

    /usr/bin/python3 scripts/reference/mask-resize.py test/fixtures/mask-resize
"""
import os
import sys

import numpy as np
import PIL
from PIL import Image

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
y, x = np.mgrid[0:24, 0:24]
small = np.where((x - 13.3) ** 2 + (y - 10.6) ** 2 < 7.2 ** 2, 255, 0).astype(np.uint8)
small[18:22, 3:9] = 255  # a second, square-cornered region
Image.fromarray(small, 'L').save(f'{out}/mask-24.png')
big = np.asarray(Image.fromarray(small, 'L').resize((64, 64), resample=Image.LANCZOS), dtype=np.float32) / 255.0
binary = (big >= 0.5).astype(np.uint8) * 255
Image.fromarray(binary, 'L').save(f'{out}/mask-24-to-64-binary.png')
with open(f'{out}/README.md', 'w') as f:
    f.write(f'Made by scripts/reference/mask-resize.py with Pillow {PIL.__version__} and numpy {np.__version__}: '
            'mask-24.png resized to 64x64 with LANCZOS (diffusers\' mask processor) and binarised at 0.5.\n')
