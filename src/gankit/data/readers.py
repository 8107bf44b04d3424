"""Readers that turn files into one uint8 tensor: IDX (MNIST format), CIFAR-10 python batches, image folders, npz.

Every malformed input raises DataError naming the file; no reader lets an OSError, zlib or pickle error escape.
"""

import gzip
import hashlib
import os
import pickle
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gankit import host
from gankit.data.folders import FolderOptions, list_folder, read_image_folder
from gankit.errors import DataError
from gankit.files import atomic_write

ANNOUNCED = 1000  # a folder of this many images takes seconds to decode: say what is happening
_RESIZE_CHUNK = 512  # images per F.interpolate call: bounds the float32 working memory


@dataclass
class ImageData:
    """A whole image dataset held in memory."""

    x: torch.Tensor  # (N, C, H, W) uint8, C in {1, 3}, contiguous
    y: torch.Tensor | None  # (N,) int64 labels; None = unlabelled
    num_classes: int  # 0 when unlabelled
    class_names: list[str] | None  # None when unlabelled or the names are unknown
    name: str  # dataset name, or the folder / file name
    source: str  # path it was read from
    split: str = "all"  # the split read: train, test, held-out (a folder's or .npz's --holdout), or all (read whole)
    scale: str = "uint8 0..255"  # how the stored pixel values were read, stated on the training line
    notes: tuple[str, ...] = ()  # what reading did to the files (skipped, resized, composited), for the training line


def to_model_range(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Turn uint8 images (N, C, H, W) into float32 (N, C, resolution, resolution) in [-1, 1].

    Meant to run once at load time. Equal sizes are only rescaled (exactly x / 127.5 - 1); other sizes are resized with
    antialiased bilinear interpolation, in chunks to bound memory, and clamped back into [-1, 1].
    """
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise DataError(f"Expected uint8 images of shape (N, C, H, W), got {x.dtype} of shape {tuple(x.shape)}.")
    height, width = x.shape[2], x.shape[3]
    if height != width:
        raise DataError(f"Images are {height}x{width}, not square; crop or pad them to a square first.")
    if height == resolution:
        return x.to(torch.float32) / 127.5 - 1
    out = torch.empty(x.shape[0], x.shape[1], resolution, resolution, dtype=torch.float32)
    for start in range(0, x.shape[0], _RESIZE_CHUNK):
        chunk = x[start : start + _RESIZE_CHUNK].to(torch.float32) / 127.5 - 1
        resized = F.interpolate(
            chunk, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + _RESIZE_CHUNK] = resized.clamp_(-1, 1)
    return out


# IDX (MNIST format) ------------------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped when they start with the gzip magic (raw IDX always starts with two zeros)."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"Cannot read {path}: {_reason(e)}.") from None
    return data


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file with `ndim` dimensions (3 = images, 1 = labels), gzipped or raw."""
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is too short ({len(data)} bytes) to be an IDX file.")
    magic = int.from_bytes(data[:4], "big")
    if magic != 0x800 + ndim:
        raise DataError(f"{path} has IDX magic number 0x{magic:08x}, expected 0x{0x800 + ndim:08x}.")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than declared"
        raise DataError(f"{path} is {problem}: its header declares {dims} ({expected} bytes) but it has {len(data)}.")
    # copy(): frombuffer over bytes is read-only, and torch wants writable memory.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an IDX image file and its label file: (N, 1, H, W) uint8 and (N,) int64."""
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if len(labels) != len(images):
        raise DataError(f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images.")
    if len(labels) and labels.max() >= num_classes:
        raise DataError(f"{labels_path} has label {labels.max()}, expected labels below {num_classes}.")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


# CIFAR-10 python batches ------------------------------------------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a downloaded pickle must not be able to run code."""

    _ALLOWED = {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            # encoding="bytes": the batches were pickled by Python 2, and their keys are byte strings.
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"])
    except KeyError as e:
        raise DataError(f"{path} is not a CIFAR-10 batch: it has no {e} entry.") from None
    except Exception as e:  # a corrupt pickle can raise almost anything (EOFError, KeyError, TypeError, ...)
        raise DataError(f"{path} is not a readable CIFAR-10 batch: {_reason(e)}.") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path} holds data of shape {data.shape} and type {data.dtype}, expected (N, 3072) uint8.")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path} has {labels.size} labels for {len(data)} images.")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path} has labels outside 0..9.")
    return data, labels


def read_cifar_batches(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and concatenate CIFAR-10 python batch files: (N, 3, 32, 32) uint8 and (N,) int64."""
    batches = [_read_cifar_batch(p) for p in paths]
    data = np.concatenate([d for d, _ in batches])
    labels = np.concatenate([y for _, y in batches]).astype(np.int64)
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels)


# Image folders ----------------------------------------------------------------------------------------------------


def read_folder(root: Path, options: FolderOptions = FolderOptions(), cache: Path | None = None) -> ImageData:
    """Every readable image under `root`, fitted to one square side (see gankit.data.folders). With `cache` (a
    folder), the decoded tensor is kept there, keyed by the folder's file list, sizes, modification times and the
    fitting settings, so the next run on an unchanged folder starts without decoding anything."""
    path = cache / f"{root.name}-{_folder_key(root, options)}.pt" if cache is not None else None
    try:
        saved = torch.load(path, weights_only=True) if path is not None and path.is_file() else None
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        saved = None  # a damaged cache entry: decode again and overwrite it
    if saved is not None:
        x, labels, class_names, notes = saved["x"], saved["y"], saved["class_names"], saved["notes"]
    else:
        workers = host.current().cores
        if path is not None and len(list_folder(root)[0]) >= ANNOUNCED:
            say = f"gankit: decoding the images in {root} with {workers} processes, once: later runs read the cache"
            print(say, file=sys.stderr)
        x, labels, class_names, notes = read_image_folder(root, options, workers)
        if path is not None:
            record = {"x": x, "y": labels, "class_names": class_names, "notes": notes}
            atomic_write(path, lambda tmp: torch.save(record, tmp))
    return ImageData(
        x=x,
        y=labels,
        num_classes=0 if class_names is None else len(class_names),
        class_names=class_names,
        name=root.name,
        source=str(root),
        notes=tuple(notes),
    )


def _folder_key(root: Path, options: FolderOptions) -> str:
    """What the decoded folder depends on: every file's relative path, size and modification time, and the settings
    that fit the images (not the holdout, which is drawn after reading)."""
    digest = hashlib.sha256(repr((options.fit, options.background, options.side, options.max_bad)).encode())
    for folder, _, files in sorted(os.walk(root)):  # sorted by folder: the same order on every file system
        for name in sorted(files):
            path = os.path.join(folder, name)
            stat = os.stat(path)
            digest.update(f"{os.path.relpath(path, root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


# npz --------------------------------------------------------------------------------------------------------------


def _pixels_as_uint8(path: Path, x: np.ndarray) -> tuple[np.ndarray, str]:
    """uint8 pixels and how the stored values were read. Floats are taken as [-1, 1] when any is negative, else as
    [0, 1] when none exceeds 1, else as [0, 255]; anything outside those is refused rather than guessed."""
    if x.dtype == np.uint8:
        return x, "uint8 0..255"
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{path} has integer pixels outside 0..255.")
        return x.astype(np.uint8), f"{x.dtype} 0..255"
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(
            f"{path} has pixels of type {x.dtype}; expected uint8, or floats in [0, 1], [-1, 1] or [0, 255]."
        )
    if not np.isfinite(x).all():
        raise DataError(f"{path} has NaN or infinite pixel values.")
    low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if low < 0:
        if low < -1 or high > 1:
            raise DataError(f"{path} has float pixels in [{low:g}, {high:g}]; expected [0, 1], [-1, 1] or [0, 255].")
        return np.rint((x + 1) * 127.5).astype(np.uint8), "floats read as [-1, 1]"
    if high <= 1:
        return np.rint(x * 255.0).astype(np.uint8), "floats read as [0, 1]"
    if high > 255:
        raise DataError(f"{path} has float pixels in [{low:g}, {high:g}]; expected [0, 1], [-1, 1] or [0, 255].")
    return np.rint(x).astype(np.uint8), "floats read as [0, 255]"


def _npz_labels(path: Path, y: np.ndarray, n: int) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise DataError(f"{path} has y of shape {y.shape} and type {y.dtype}; expected (N,) integers.")
    if len(y) != n:
        raise DataError(f"{path} has {len(y)} labels in y but {n} images in x.")
    if n and y.min() < 0:
        raise DataError(f"{path} has negative labels in y.")
    return y.astype(np.int64)


def read_npz(path: Path) -> ImageData:
    """Read `x` (N, H, W) or (N, H, W, C) with C in {1, 3}, and optional integer labels `y` (N,), from an .npz file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files:
                raise DataError(f"{path} has no array named 'x' (it has: {', '.join(archive.files) or 'nothing'}).")
            x = archive["x"]
            y = archive["y"] if "y" in archive.files else None
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, pickled object arrays (ValueError), truncated members, ...
        raise DataError(f"{path} is not a readable .npz file: {_reason(e)}.") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[3] not in (1, 3):
        raise DataError(f"{path} has x of shape {x.shape}; expected (N, H, W) or channels-last (N, H, W, C), C 1 or 3.")
    x, scale = _pixels_as_uint8(path, x)
    labels = None if y is None else _npz_labels(path, y, len(x))
    return ImageData(
        x=torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
        y=None if labels is None else torch.from_numpy(labels),
        num_classes=0 if labels is None else int(labels.max(initial=-1)) + 1,
        class_names=None,
        name=path.stem,
        source=str(path),
        scale=scale,
    )


def _reason(error: BaseException) -> str:
    """The exception's message without a trailing period, or its type name when it has none."""
    return (str(error) or type(error).__name__).rstrip(".")
