"""Folders of pictures as users have them: any size and aspect, any mode, stray files beside them, a few broken ones.

Every image is decoded once, brought to RGB or grey explicitly (transparency composited onto a stated background),
and fitted to one square side (`crop`: the centre square; `pad`: letterboxed onto the background; `stretch`), so the
folder becomes one uint8 tensor like any other dataset. What was done is returned as notes for the training line.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

from gankit.config import parse_background
from gankit.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
FITS = ("crop", "pad", "stretch")
DCGAN_SIDES = (16, 32, 64, 128)  # the sides a folder of mixed sizes is fitted to when no --resolution is given


@dataclass(frozen=True)
class FolderOptions:
    fit: str = "crop"  # crop, pad or stretch: how an image that is not square becomes square
    background: str = "white"  # white, black or R,G,B: under transparent pixels, and pad's borders
    side: int | None = None  # the side every image is fitted to; None = the images' own when all are one square size
    max_bad: float = 0.01  # the share of unreadable images skipped (with a warning) before the folder is refused
    holdout: float = 0.0  # folders and .npz: the share held out from training, gankit eval's reference

    @classmethod
    def from_config(cls, cfg) -> FolderOptions:
        """From a TrainConfig or a run's config.json (a dict); runs from before these settings read as the defaults."""
        get = cfg.get if isinstance(cfg, dict) else (lambda key, default=None: getattr(cfg, key, default))
        holdout = get("holdout") or 0.0  # runs from before --holdout trained on the whole folder
        return cls(get("fit", "crop"), get("background", "white"), get("resolution"), get("max_bad", 0.01), holdout)


def list_folder(root: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under root, sorted; hidden files and folders are passed over."""
    images, others = [], []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(s for s in subfolders if not s.startswith("."))
        for file in sorted(files):
            if not file.startswith("."):
                path = Path(folder, file)
                (images if path.suffix.lower() in IMAGE_EXTENSIONS else others).append(path)
    return images, others


UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)  # what a broken file raises
GREY_MODES = ("1", "L", "I", "F")  # and "I;16…": decoded as one channel
ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def probe(path: Path) -> tuple[int, int, str]:
    """(width, height as displayed, mode) from the file's header, without decoding its pixels."""
    with Image.open(path) as image:
        w, h = image.size
        rotated = image.getexif().get(ExifTags.Base.Orientation) in ROTATED
        return (h, w, image.mode) if rotated else (w, h, image.mode)


def decodes_grey(mode: str, background: tuple[int, int, int]) -> bool:
    """Whether an image of this mode decodes to one channel: grey modes, and grey with alpha on a grey background."""
    grey = mode in GREY_MODES or mode.startswith("I;16")
    return grey or (mode in ("LA", "La") and len(set(background)) == 1)


def decode(path: Path, background: tuple[int, int, int], side: int | None = None) -> np.ndarray:
    """(H, W) uint8 for a grey image, else (H, W, 3) uint8 RGB; transparency composited onto `background`. Each
    mode is converted on purpose, so Pillow has nothing to warn about; raises ValueError or OSError if unreadable.
    With `side`, a JPEG is decoded at the smallest of 1/2, 1/4, 1/8 of its size that stays at least side × side
    (its DCT scaling, as Pillow's thumbnail does): several times faster on photos bound to be shrunk anyway."""
    with Image.open(path) as image:
        if side is not None and image.format == "JPEG":
            image.draft(image.mode, (side, side))
        image.load()
        image = ImageOps.exif_transpose(image)  # photos are stored sideways with a rotation tag
        if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grey: the top 8 bits, rounded
            return np.rint(np.asarray(image, dtype=np.float64).clip(0, 65535) / 257).astype(np.uint8)
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif image.mode in ("1", "F"):
            image = image.convert("L")
        elif image.mode in ("LA", "La", "PA", "RGBa"):
            image = image.convert("RGBA")
        if image.mode == "RGBA":
            alpha = np.asarray(image.getchannel("A"), dtype=np.float32)[:, :, None] / 255
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
            array = np.rint(rgb * alpha + np.asarray(background, dtype=np.float32) * (1 - alpha)).astype(np.uint8)
            grey = _channels_equal(image) and len(set(background)) == 1  # grey on a grey background stays grey
            return array[:, :, 0].copy() if grey else array
        if image.mode == "L":
            return np.asarray(image)
        return np.asarray(image.convert("RGB"))  # RGB, CMYK, YCbCr, LAB, HSV


def _channels_equal(image: Image.Image) -> bool:
    r, g, b, _ = image.split()
    return r.tobytes() == g.tobytes() == b.tobytes()


def choose_side(sizes: list[tuple[int, int]]) -> int:
    """The DCGAN side nearest the median short side of the images (the larger on a tie); 28 where all are 28."""
    shorts = sorted(min(w, h) for w, h in sizes)
    if shorts[0] == shorts[-1] == 28:
        return 28
    median = shorts[len(shorts) // 2]
    return min(DCGAN_SIDES, key=lambda s: (abs(s - median), -s))


def fit(array: np.ndarray, side: int, how: str, background: tuple[int, int, int]) -> np.ndarray:
    """One decoded image as side × side (antialiased resize)."""
    h, w = array.shape[:2]
    if (h, w) == (side, side):
        return array
    image = Image.fromarray(array)
    if how == "crop" and h != w:
        short = min(h, w)
        top, left = (h - short) // 2, (w - short) // 2
        image = image.crop((left, top, left + short, top + short))
    elif how == "pad" and h != w:
        long = max(h, w)
        fill = background[0] if array.ndim == 2 else background
        canvas = Image.new(image.mode, (long, long), fill)
        canvas.paste(image, ((long - w) // 2, (long - h) // 2))
        image = canvas
    return np.asarray(image.resize((side, side), Image.Resampling.LANCZOS))


CHUNK = 32  # images per task handed to a worker process


def read_image_folder(root: Path, options: FolderOptions = FolderOptions(), workers: int = 1):
    """Every readable image under `root`, fitted to one square side; its immediate sub-folders, when the images are
    in them, are the classes. Returns (x uint8 (N, C, S, S), labels or None, class names or None, notes).

    Two passes, each shared among `workers` processes: the headers give every size and mode, so the side and the
    channels are known before any pixel is decoded; then each image is decoded and fitted in a worker and copied
    into the one output tensor. Peak memory is that tensor and a few images per worker — except in the one case
    the headers cannot tell: images with transparency that all turn out grey are decoded as colour first."""
    if options.fit not in FITS:
        raise ConfigError(f"fit must be one of {', '.join(FITS)}, got {options.fit!r}")
    background = parse_background(options.background)
    paths, others = list_folder(root)
    if not paths:
        found = f" (only {len(others)} other files)" if others else ""
        raise DataError(f"{root} contains no images ({', '.join(IMAGE_EXTENSIONS)}){found}.")
    bad = []
    with worker_pool(workers if len(paths) > 2 * CHUNK else 1) as run:
        headers = {}
        for path, header in zip(paths, run(_probe_all, paths)):
            if isinstance(header, str):
                bad.append((path, header))
            else:
                headers[path] = header
        sizes = [(w, h) for w, h, _ in headers.values()]
        same_square = len(set(sizes)) == 1 and sizes[0][0] == sizes[0][1]
        side = options.side or (sizes[0][0] if same_square else choose_side(sizes)) if sizes else 0
        channels = 1 if all(decodes_grey(mode, background) for _, _, mode in headers.values()) else 3
        x = torch.empty((len(headers), channels, side, side), dtype=torch.uint8)
        kept, all_grey = [], True
        decoding = functools.partial(_decode_all, background=background, side=side, how=options.fit)
        for path, array in zip(headers, run(decoding, list(headers))):
            if isinstance(array, str):
                bad.append((path, array))
                continue
            all_grey &= array.ndim == 2
            if array.ndim == 3 and x.shape[1] == 1:  # a header that said grey, pixels that are colour: widen once
                x = x.expand(-1, 3, -1, -1).clone()
            x.numpy()[len(kept)] = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
            kept.append(path)
    notes = []
    if others:
        kinds = Counter(p.suffix.lower() or p.name for p in others).most_common(3)
        notes.append(f"{len(others)} files that are not images skipped ({', '.join(k for k, _ in kinds)})")
    if bad:
        bad.sort()
        listed = "; ".join(f"{p.relative_to(root)}: {why}" for p, why in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        if len(bad) > options.max_bad * len(paths):
            raise DataError(
                f"{len(bad)} of {len(paths)} images in {root} are unreadable, more than --max-bad {options.max_bad:g} "
                f"allows: {listed}{more}."
            )
        notes.append(f"{len(bad)} unreadable images skipped ({listed}{more})")
    if not kept:
        raise DataError(f"{root} contains no readable images.")
    x = x[: len(kept)]  # a view: the rows of images that failed only when decoded (at most --max-bad) stay unused
    if channels == 3 and all_grey:
        x = x[:, :1].clone()
    labels, class_names = _class_labels(root, kept)
    sizes = [headers[p][:2] for p in kept]
    if not (len(set(sizes)) == 1 and sizes[0] == (side, side)):
        counts = Counter(sizes).most_common(2)
        seen = ", ".join(f"{w}×{h}" for (w, h), _ in counts) + (" …" if len(set(sizes)) > 2 else "")
        done = {"crop": "centre-cropped to square and", "pad": "padded to square and", "stretch": ""}[options.fit]
        notes.append(f"images of {len(set(sizes))} sizes ({seen}) {done} resized to {side}×{side}".replace("  ", " "))
    notes.append("grey" if x.shape[1] == 1 else "colour")
    return x, labels, class_names, notes


@contextlib.contextmanager
def worker_pool(workers: int):
    """run(task, paths) → one result per path, in order, computed a chunk at a time: in this process, or shared
    among worker processes. The workers need only Pillow and NumPy; they fork where the system can, so nothing
    (torch above all) is imported again."""
    if workers <= 1:
        yield lambda task, paths: itertools.chain.from_iterable(map(task, _chunks(paths)))
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(workers) as pool:
        yield lambda task, paths: itertools.chain.from_iterable(pool.imap(task, _chunks(paths)))


def _chunks(paths: list[Path]) -> list[list[Path]]:
    return [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]


def _probe_all(paths: list[Path]) -> list[tuple[int, int, str] | str]:
    return [or_why(probe, path) for path in paths]


def _decode_all(paths, background, side, how) -> list[np.ndarray | str]:
    return [or_why(lambda p: fit(decode(p, background, side), side, how, background), path) for path in paths]


def or_why(read, path):
    """read(path), or why it failed as a short string."""
    try:
        return read(path)
    except UNREADABLE as e:
        return str(e).rstrip(".") or type(e).__name__


def _class_labels(root: Path, paths: list[Path]) -> tuple[torch.Tensor | None, list[str] | None]:
    tops = [p.relative_to(root).parts for p in paths]
    in_root = [p for p, parts in zip(paths, tops) if len(parts) == 1]
    if len(in_root) == len(paths):
        return None, None
    if in_root:
        nested = next(p for p, parts in zip(paths, tops) if len(parts) > 1)
        raise DataError(
            f"{root} mixes images at its top level ({in_root[0].name}) with images in sub-folders "
            f"({nested.relative_to(root)}); put every image in a class sub-folder, or none."
        )
    counts = Counter(parts[0] for parts in tops)
    class_names = sorted(counts)
    few = [name for name in class_names if counts[name] < 2]
    if few:
        raise DataError(f"class folder {root / few[0]} holds {counts[few[0]]} readable image; a class needs 2 or more.")
    index = {name: i for i, name in enumerate(class_names)}
    return torch.tensor([index[parts[0]] for parts in tops], dtype=torch.int64), class_names
