"""Memory-mapped prepared frames vs decoding JPEG files every epoch (the design choice of the
prepared format). Prints frames/s of both and their ratio."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from aubench.data.loader import FrameBatches, make_loader
from aubench.data.prepared import PreparedDataset
from aubench_synthau.generate import generate


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "bench", name="synth-bp4d", subjects=8, progress=False)
        ds = PreparedDataset(root)
        jpg_dir = Path(tmp) / "jpg"
        jpg_dir.mkdir()
        for i in range(len(ds)):
            Image.fromarray(np.asarray(ds.frames[i])).save(jpg_dir / f"{i}.jpg", quality=95)
        y, m = ds.labels(ds.au_set)
        rows = np.arange(len(ds))
        loader = make_loader(FrameBatches(ds, rows, y, m), 64, shuffle=True)
        t = time.perf_counter()
        n = sum(b["image"].shape[0] for b in loader)
        mmap_rate = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in np.random.default_rng(0).permutation(len(ds)):
            np.asarray(Image.open(jpg_dir / f"{i}.jpg").convert("RGB"))
        jpg_rate = len(ds) / (time.perf_counter() - t)
        print(f"frames: {len(ds)}  memmap batches: {mmap_rate:,.0f} frames/s  JPEG decode: {jpg_rate:,.0f} frames/s  "
              f"ratio {mmap_rate / jpg_rate:.1f}x")


if __name__ == "__main__":
    main()
