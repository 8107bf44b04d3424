"""How fast a large folder of pictures becomes a training tensor, and at what memory cost: the first load (every
image decoded and fitted, by as many worker processes as cores) and the cached one (the next run on the unchanged
folder).

    python scripts/ingest_bench.py                      # 20,000 mixed-size JPEGs in /tmp/gankit-ingest
    python scripts/ingest_bench.py --images 2000 --dir /tmp/small

The folder is made once (seeded): colour and grey JPEGs from 48 to 640 px a side in every aspect, a few stray files
and a few truncated JPEGs. Each load runs in a fresh process with an empty (then the filled) cache, as `gankit train`
would load it (the training part of a 5% holdout); it reports the time to import gankit and torch, the time to load,
the final uint8 tensor's size, and the peak resident memory above what the process held before loading (the
workers' peak beside it).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

LOAD = """
import json, resource, sys, time
start = time.perf_counter()
import torch
from gankit.data import load_images
from gankit.data.folders import FolderOptions
imported = time.perf_counter()
rss_before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
data = load_images(sys.argv[1], "train", folder=FolderOptions(holdout=0.05))
loaded = time.perf_counter()
print(json.dumps({
    "import_s": imported - start, "load_s": loaded - imported, "shape": list(data.x.shape),
    "array_mb": data.x.untyped_storage().nbytes() / 2**20, "rss_before_mb": rss_before / 2**20,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "workers_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "notes": list(data.notes),
}))
"""


def make_folder(root: Path, n: int, seed: int = 0) -> None:
    """n JPEGs of random sizes and aspects (a tenth grey), smooth gradients with noise so they compress like photos;
    plus 20 stray files and n/2000 truncated JPEGs."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(48, 641, 2))
        low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC)
        noise = rng.integers(-12, 13, (h, w, 3))
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        if i % 10 == 0:
            image = image.convert("L")
        folder = root / f"{i // 1000:02d}"  # photos arrive in batches of sub-folders, unlabelled
        folder.mkdir(exist_ok=True)
        image.save(folder / f"{i:05d}.jpg", quality=int(rng.integers(70, 96)))
    for i in range(20):
        (root / f"notes_{i}.txt").write_text("stray")
    for i in range(0, n, 2000):
        path = root / f"{i // 1000:02d}" / f"{i:05d}.jpg"
        path.write_bytes(path.read_bytes()[:300])


def load_in_a_fresh_process(root: Path, cache: Path) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run([sys.executable, "-c", LOAD, str(root)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"loading failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "gankit-ingest")
    args = parser.parse_args()
    root = args.dir / f"jpegs-{args.images}"
    if not root.is_dir():
        start = time.perf_counter()
        make_folder(root, args.images)
        print(f"made {args.images} JPEGs in {root} in {time.perf_counter() - start:.0f} s")
    with tempfile.TemporaryDirectory() as cache:
        for name in ("first load", "cached load"):
            r = load_in_a_fresh_process(root, Path(cache))
            above = r["peak_mb"] - r["rss_before_mb"]
            print(
                f"{name}: {r['load_s']:.2f} s (+{r['import_s']:.2f} s importing), tensor {r['shape']} "
                f"{r['array_mb']:.0f} MB, peak RSS {above:.0f} MB above the {r['rss_before_mb']:.0f} MB held before "
                f"loading = {above / r['array_mb']:.2f}× the tensor (workers' peak {r['workers_peak_mb']:.0f} MB)"
            )
        print("notes: " + "; ".join(r["notes"]))


if __name__ == "__main__":
    main()
