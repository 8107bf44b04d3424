"""`gankit data check PATH`: what a folder of pictures holds before a run trains on it, one line per finding.

Counts per class, sizes and aspects, modes and transparency, stray and unreadable files, exact duplicates (the same
bytes) and near duplicates (the same perceptual hash), held-out images that also stand in the training part, the
`--fit` / `--resolution` it recommends, and a contact sheet of 64 images as they will train.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gankit import host
from gankit.config import parse_background
from gankit.data.folders import CHUNK, FolderOptions, choose_side, decode, fit, list_folder, or_why, probe, worker_pool
from gankit.data.sources import held_out_order
from gankit.data.streams import Stream, seeded
from gankit.errors import DataError
from gankit.files import sha256_file
from gankit.images import grid, save_png

SHEET_IMAGES = 64


def perceptual_hash(array: np.ndarray) -> int:
    """dHash: the signs of horizontal steps of a 9×8 grey thumbnail, 64 bits; equal for resized, recompressed or
    slightly recoloured copies of one picture."""
    grey = Image.fromarray(array).convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


NEAR_BITS = 4  # two perceptual hashes that differ in at most this many of their 64 bits are near duplicates


def _groups(keys: dict[Path, object]) -> list[list[Path]]:
    by_key = defaultdict(list)
    for path, key in keys.items():
        by_key[key].append(path)
    return [sorted(paths) for paths in by_key.values() if len(paths) > 1]


def near_groups(hashes: dict[Path, int], radius: int = NEAR_BITS) -> list[list[Path]]:
    """The paths linked, directly or through others, by perceptual hashes at most `radius` bits apart (Hamming).

    Without comparing every pair: two 64-bit hashes within r bits agree exactly on at least one of r + 1 disjoint
    blocks of their bits (pigeonhole), so only hashes that share a block are compared."""
    unique = sorted(set(hashes.values()))
    parent = list(range(len(unique)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    edges = np.linspace(0, 64, radius + 2).astype(int)
    for low, high in zip(edges[:-1], edges[1:]):
        buckets = defaultdict(list)
        for i, h in enumerate(unique):
            buckets[(h >> low) & ((1 << (high - low)) - 1)].append(i)
        for members in buckets.values():
            for a, i in enumerate(members):
                for j in members[a + 1 :]:
                    if (unique[i] ^ unique[j]).bit_count() <= radius:
                        parent[root(i)] = root(j)
    index = {h: i for i, h in enumerate(unique)}
    return _groups({path: root(index[h]) for path, h in hashes.items()})


def inspect(path: Path, background: tuple[int, int, int]) -> dict:
    """What the check needs of one image, computed in a worker: header facts, whether it decodes grey, the file's
    SHA-256 and the picture's perceptual hash (from a reduced-scale decode: a thumbnail is all the hash sees)."""
    with Image.open(path) as image:
        mode, has_alpha = image.mode, image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    w, h, _ = probe(path)
    array = decode(path, background, side=64)
    return dict(mode=mode, alpha=has_alpha, size=(w, h), grey=array.ndim == 2, sha256=sha256_file(path),
                phash=perceptual_hash(array))  # fmt: skip


def _inspect_all(paths: list[Path], background) -> list[dict | str]:
    return [or_why(lambda p: inspect(p, background), path) for path in paths]


def _named(root: Path, groups: list[list[Path]], most: int = 3) -> str:
    shown = "; ".join(" = ".join(str(p.relative_to(root)) for p in group[:3]) for group in groups[:most])
    return shown + (f"; and {len(groups) - most} more groups" if len(groups) > most else "")


def check_folder(root: Path, options: FolderOptions = FolderOptions(holdout=0.05), sheet: Path | None = None):
    """(findings, ok): one line per finding; ok is False where training on the folder would stop."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder.")
    background = parse_background(options.background)
    paths, others = list_folder(root)
    findings, ok = [], True
    modes, sizes, digests, phashes, grey, bad = Counter(), {}, {}, {}, {}, []
    transparent = 0
    with worker_pool(host.current().cores if len(paths) > 2 * CHUNK else 1) as run:
        for path, facts in zip(paths, run(functools.partial(_inspect_all, background=background), paths)):
            if isinstance(facts, str):
                bad.append((path, facts))
                continue
            modes[facts["mode"]] += 1
            transparent += facts["alpha"]
            sizes[path], digests[path], phashes[path], grey[path] = (
                facts["size"], facts["sha256"], facts["phash"], facts["grey"])  # fmt: skip
    kinds = ", ".join(f"{k} ×{n}" for k, n in Counter(p.suffix.lower() or p.name for p in others).most_common(4))
    stray = f"; {len(others)} other files, skipped when training ({kinds})"
    findings.append(f"images: {len(paths)}" + (stray if others else ""))
    if bad:
        listed = "; ".join(f"{p.relative_to(root)}: {why}" for p, why in bad[:5])
        too_many = len(bad) > options.max_bad * len(paths)
        ok &= not too_many
        verdict = (
            f"more than --max-bad {options.max_bad:g}: training would stop" if too_many else "skipped when training"
        )
        findings.append(f"unreadable: {len(bad)} ({listed}{' …' if len(bad) > 5 else ''}) — {verdict}")
    if not sizes:
        findings.append("no readable images: nothing to train on")
        return findings, False
    tops = {p: p.relative_to(root).parts for p in sizes}
    nested = [p for p, parts in tops.items() if len(parts) > 1]
    if nested:
        counts = Counter(tops[p][0] for p in nested)
        listed = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        findings.append(f"classes: {len(counts)} ({listed})")
        few = [name for name, n in counts.items() if n < 2]
        if few:
            ok = False
            findings.append(f"class {few[0]} holds {counts[few[0]]} readable image: a class needs 2 or more")
        if len(nested) < len(sizes):
            ok = False
            findings.append("images at the top level beside class sub-folders: put each in a class folder, or none")
    else:
        findings.append("classes: none (no sub-folders): G will be unconditional")
    size_counts = Counter(sizes.values())
    shown = ", ".join(f"{w}×{h} ×{n}" for (w, h), n in size_counts.most_common(3))
    findings.append(f"sizes: {len(size_counts)} distinct ({shown}{' …' if len(size_counts) > 3 else ''})")
    aspects = np.array([w / h for w, h in sizes.values()])
    square = float(np.mean(np.isclose(aspects, 1.0)))
    if square == 1:
        findings.append("aspect: all square")
    else:
        findings.append(f"aspect: {square:.0%} square, width/height from {aspects.min():.2f} to {aspects.max():.2f}")
    findings.append("modes: " + ", ".join(f"{m} ×{n}" for m, n in modes.most_common()))
    if transparent:
        findings.append(f"transparency: {transparent} images, composited onto --background {options.background}")
    findings.append("colour: " + ("all grey: one channel" if all(grey.values()) else "colour"))
    exact = _groups(digests)
    findings.append(f"exact duplicates: {len(exact)} groups" + (f" ({_named(root, exact)})" if exact else ""))
    linked = near_groups(phashes)
    near = [g for g in linked if len({digests[p] for p in g}) > 1]
    findings.append(f"near duplicates (perceptual hashes ≤ {NEAR_BITS} of 64 bits apart): {len(near)} groups"
                    + (f" ({_named(root, near)})" if near else ""))  # fmt: skip
    held = set(_held_out(list(sizes), options.holdout))
    if held:
        leaks = [p for g in linked if held & set(g) for p in g if p not in held]
        findings.append(
            f"held out: {len(held)} images ({options.holdout:.0%}); "
            + (f"{len(leaks)} training images look like held-out ones (e.g. {leaks[0].relative_to(root)})"
               if leaks else "none of them has a near duplicate in the training part")
        )  # fmt: skip
    side = options.side or choose_side(list(sizes.values()))
    far_from_square = float(np.mean((aspects < 0.8) | (aspects > 1.25)))
    how = "pad" if far_from_square > 0.5 else "crop"
    why = f"{far_from_square:.0%} of the images are far from square" if how == "pad" else "most are square or nearly"
    findings.append(f"recommended: --resolution {side} --fit {how} ({why}; median short side "
                    f"{int(np.median([min(s) for s in sizes.values()]))})")  # fmt: skip
    if sheet is not None:
        order = torch.randperm(len(sizes), generator=seeded(0, Stream.SAMPLES))[:SHEET_IMAGES].tolist()
        chosen = [decode(list(sizes)[i], background) for i in order]
        fitted = [fit(a, side, how if options.side is None else options.fit, background) for a in chosen]
        colour = any(a.ndim == 3 for a in fitted)
        batch = np.stack([np.repeat(a[:, :, None], 3, 2) if colour and a.ndim == 2 else a for a in fitted])
        batch = torch.from_numpy(batch if batch.ndim == 4 else batch[..., None]).permute(0, 3, 1, 2)
        save_png(grid(batch.contiguous(), nrow=8), sheet)
        findings.append(f"contact sheet: {sheet} ({len(fitted)} random images as they will train)")
    return findings, ok


def _held_out(paths: list[Path], holdout: float) -> list[Path]:
    """The images --holdout keeps out of training: the same draw as training's (held_out_order)."""
    drawn = held_out_order(len(paths), holdout)
    return [] if drawn is None else [paths[i] for i in drawn[0][: drawn[1]].tolist()]
