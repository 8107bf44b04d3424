"""Cut a dataset down to some of its classes and/or a seeded number of its images, as an .npz that
`gankit train --data`, `gankit fid` and `gankit eval` read. The fine-tuning and small-data measurements of
docs/experiments.md:

    python scripts/subset.py fashion-mnist:train --classes 0-7 --out fm07.npz
    python scripts/subset.py fashion-mnist:train --classes 8,9 --n 1000 --out fm89-1000.npz
    python scripts/subset.py fashion-mnist:test --classes 8,9 --out fm89-test.npz
    python scripts/subset.py data/emoji/images:train --n 500 --out emoji-500.npz    # a folder's training part
    python scripts/subset.py data/emoji/images:test --out emoji-held-out.npz        # ... and its 5% held out

Labels are kept as they are (class 8 stays 8), so a run on the subset names the classes as the full set does.
"""

import argparse

import numpy as np
import torch

from gankit.data import load_images
from gankit.data.folders import FolderOptions
from gankit.errors import GankitError
from gankit.files import atomic_write


def parse_classes(text: str) -> list[int]:
    """'0-7' or '8,9' or '1,3-5' → the sorted class numbers."""
    classes = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        classes.update(range(int(low), int(high or low) + 1))
    return sorted(classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="DATA:SPLIT, e.g. fashion-mnist:train")
    parser.add_argument("--classes", help="e.g. 0-7 or 8,9 (all when left out)")
    parser.add_argument("--n", type=int, default=None, help="a seeded draw of this many images (all when left out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--holdout", type=float, default=0.05, help="a folder's or .npz's held-out share, as gankit train's --holdout"
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    name, _, split = args.source.rpartition(":")
    if split not in ("train", "test"):
        parser.error(f"{args.source}: name the split, DATA:train or DATA:test")
    try:
        classes = parse_classes(args.classes) if args.classes else None
        images = load_images(name, split, folder=FolderOptions(holdout=args.holdout))
    except ValueError:
        parser.error(f"--classes {args.classes}: expected numbers and ranges, e.g. 0-7 or 8,9")
    except GankitError as e:  # an unknown name, a corrupt file: one line, exit code 2
        parser.error(str(e))
    keep = torch.arange(len(images.x))
    if classes:
        if images.y is None:
            parser.error(f"{args.source} has no class labels")
        keep = torch.isin(images.y, torch.tensor(classes)).nonzero().squeeze(1)
    if args.n is not None:
        if args.n > len(keep):
            parser.error(f"--n {args.n}: {args.source} has only {len(keep)} such images")
        order = torch.randperm(len(keep), generator=torch.Generator().manual_seed(args.seed))
        keep = keep[order[: args.n]].sort().values
    arrays = {"x": images.x[keep].permute(0, 2, 3, 1).numpy()}  # channels-last, as read_npz expects
    if images.y is not None:
        arrays["y"] = images.y[keep].numpy()

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: numpy would append .npz to the temporary name
            np.savez_compressed(f, **arrays)

    atomic_write(args.out, write)
    y = arrays.get("y")
    counts = "" if y is None else " (per class " + ", ".join(f"{c}: {int((y == c).sum())}" for c in np.unique(y)) + ")"
    print(f"{args.out}: {len(arrays['x'])} images {arrays['x'].shape[1:]}{counts}")


if __name__ == "__main__":
    main()
