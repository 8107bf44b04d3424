"""Where datasets come from: names, local folders, the cache and verified downloads, all behind `load_images`.

A name is looked up in order: the `data_dir` argument (or else `$GANKIT_DATA`), each either holding the files or a
`<name>/` sub-folder; the cache (`$XDG_CACHE_HOME/gankit/<name>`, default `~/.cache/gankit/<name>`); system folders such
as Debian's `/usr/share/datasets/fashion-mnist`; and last a download into the cache, checked against its SHA-256.
"""

import dataclasses
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from gankit.data.folders import FolderOptions
from gankit.data.readers import (
    ImageData,
    read_cifar_batches,
    read_folder,
    read_idx_pair,
    read_npz,
)
from gankit.data.stacked import STACKED, stack
from gankit.data.streams import Stream, seeded
from gankit.data.toy import TOY
from gankit.errors import DataError
from gankit.files import atomic_write, sha256_file

SPLITS = ("train", "test")
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"


@dataclass(frozen=True)
class DatasetSpec:
    """How to find, read and download one named dataset."""

    reader: str  # "idx" (MNIST format, each file gzipped or raw) or "cifar" (python batches)
    files: dict[str, tuple[str, ...]]  # split -> files the reader needs (IDX names without .gz)
    downloads: dict[str, tuple[str, str]]  # file name -> (canonical URL, its SHA-256)
    class_names: tuple[str, ...]
    apt_package: str | None = None  # a Debian package that installs the files into a system folder


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

# SHA-256 of the canonical downloads, as published in tensorflow_datasets' url_checksums (fashion_mnist.txt,
# mnist.txt), torchvision's prototype mnist.py and keras' cifar10.py. Debian's dataset-fashion-mnist ships the same
# images recompressed (no file name in the gzip header), so its .gz files hash differently; local files are
# validated by the readers, only downloads by hash.
REGISTRY: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        reader="idx",
        files=_MNIST_FILES,
        downloads={
            "train-images-idx3-ubyte.gz": (
                _FASHION_URL + "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            ),
            "train-labels-idx1-ubyte.gz": (
                _FASHION_URL + "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            ),
            "t10k-images-idx3-ubyte.gz": (
                _FASHION_URL + "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            ),
            "t10k-labels-idx1-ubyte.gz": (
                _FASHION_URL + "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        },
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        apt_package="dataset-fashion-mnist",
    ),
    "mnist": DatasetSpec(
        reader="idx",
        files=_MNIST_FILES,
        downloads={
            "train-images-idx3-ubyte.gz": (
                _MNIST_URL + "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
            "train-labels-idx1-ubyte.gz": (
                _MNIST_URL + "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            ),
            "t10k-images-idx3-ubyte.gz": (
                _MNIST_URL + "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
            "t10k-labels-idx1-ubyte.gz": (
                _MNIST_URL + "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        },
        class_names=("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"),
    ),
    "cifar10": DatasetSpec(
        reader="cifar",
        files={
            "train": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
            "test": ("test_batch",),
        },
        downloads={
            CIFAR_ARCHIVE: (
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            ),
        },
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}

SYSTEM_DIRS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist",),  # Debian: apt-get install dataset-fashion-mnist
    "mnist": ("/usr/share/datasets/mnist",),
}


def is_named(data: str) -> bool:
    """A dataset gankit knows by name, which has its own test split."""
    name = str(data).lower().replace("_", "-")
    return name in REGISTRY or name in STACKED


def load_images(
    data: str,
    split: str = "train",
    data_dir: str | None = None,
    download: bool = True,
    folder: FolderOptions | None = None,
) -> ImageData:
    """Load a whole image dataset into memory as uint8 (N, C, H, W).

    `data` is a dataset name ("fashion-mnist", "mnist", "cifar10", and their stacked colour versions
    "stacked-fashion-mnist", "stacked-mnist"; names win over same-named paths) or a path to an
    image folder or an .npz file. `split` ("train" or "test") selects the part of a named dataset; a folder or .npz
    is returned whole. `data_dir` and `download` only matter for names; see the module docstring for the lookup order.
    `folder`: how a folder's images are fitted to one size (gankit.data.folders).
    """
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    name = str(data).lower().replace("_", "-")
    if name in REGISTRY:
        return _load_named(name, split, data_dir, download)
    if name in STACKED:
        return stack(_load_named(STACKED[name], split, data_dir, download), name, split)[0]
    path = Path(data).expanduser()
    folder = folder or FolderOptions()
    if path.is_dir():
        return held_out_part(read_folder(path, folder, cache=cache_dir("folders")), folder.holdout, split)
    if path.is_file() and path.suffix.lower() == ".npz":
        return held_out_part(read_npz(path), folder.holdout, split)
    if path.exists():
        raise DataError(f"{path} is neither a folder of images nor an .npz file.")
    raise DataError(
        f"{data!r} is not a known dataset ({', '.join([*REGISTRY, *STACKED])}) nor an existing folder or .npz file; "
        f"toy distributions ({', '.join(TOY)}) are 2-D points, not images."
    )


MIN_HELD_OUT = 10  # fewer held-out images than this measure nothing: the set is then used whole


def held_out_order(n: int, holdout: float) -> tuple[torch.Tensor, int] | None:
    """(a permutation of n images, how many of its first ones are held out), or None where no holdout is asked for
    or too few images would be held out (or left) to measure anything. Seed 0 whatever the run's seed, so every run
    on the same data is judged on the same images."""
    n_held = round(holdout * n)
    if holdout <= 0 or n_held < MIN_HELD_OUT or n - n_held < MIN_HELD_OUT:
        return None
    return torch.randperm(n, generator=seeded(0, Stream.HOLDOUT)), n_held


def held_out_part(images: ImageData, holdout: float, split: str) -> ImageData:
    """The training part (split "train") or the held-out part ("test") of a folder or .npz, a share `holdout` of
    its images (held_out_order). With no holdout, or too few images for one, the whole set is returned as split
    "all" (and says so)."""
    if holdout <= 0:
        return images
    drawn = held_out_order(images.x.shape[0], holdout)
    if drawn is None:
        note = (
            f"too few images to hold {holdout:.0%} out (fewer than {MIN_HELD_OUT}): evaluation uses the training images"
        )
        return dataclasses.replace(images, notes=(*images.notes, note))
    order, n_held = drawn
    held = split == "test"
    idx = (order[:n_held] if held else order[n_held:]).sort().values
    return dataclasses.replace(
        images,
        x=images.x[idx] if held else take_in_place(images.x, idx),
        y=images.y[idx] if images.y is not None else None,
        split="held-out" if held else "train",
        notes=(*images.notes, f"{holdout:.0%} held out for evaluation ({n_held} images)"),
    )


def take_in_place(x: torch.Tensor, idx: torch.Tensor, rows: int = 1024) -> torch.Tensor:
    """x[idx] for ascending idx, written over x's own first rows (x is overwritten): the training part of a large
    folder costs no second copy of it. Safe a block at a time: rows j… are read from idx[j…] ≥ j, past the rows
    already written."""
    for start in range(0, len(idx), rows):
        block = idx[start : start + rows]
        x[start : start + len(block)] = x[block]
    return x[: len(idx)]


def cache_dir(name: str) -> Path:
    """The download cache for dataset `name`: $XDG_CACHE_HOME/gankit/<name>, by default ~/.cache/gankit/<name>."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gankit" / name


def _load_named(name: str, split: str, data_dir: str | None, download: bool) -> ImageData:
    spec = REGISTRY[name]
    searched = _candidate_dirs(name, data_dir)
    for folder in searched:
        found = _FINDERS[spec.reader](spec, split, folder, cache_dir(name))
        if found:
            return _read_named(name, spec, split, found)
    if not download:
        raise DataError(_not_found(name, spec, split, searched, "downloading is disabled"))
    try:
        _download_missing(spec, cache_dir(name))
    except DataError as e:
        raise DataError(_not_found(name, spec, split, searched, f"the download failed: {str(e).rstrip('.')}")) from None
    return _read_named(name, spec, split, _FINDERS[spec.reader](spec, split, cache_dir(name), cache_dir(name)))


def _candidate_dirs(name: str, data_dir: str | None) -> list[Path]:
    """Folders to search, in order; an explicit root that does not exist is an error, not a silent skip."""
    dirs = []
    root, origin = (data_dir, "--data-dir") if data_dir is not None else (os.environ.get("GANKIT_DATA"), "$GANKIT_DATA")
    if root:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"{root} (from {origin}) is not a folder.")
        dirs += [root, root / name]
    dirs.append(cache_dir(name))
    dirs += [Path(d) for d in SYSTEM_DIRS.get(name, ())]
    return dirs


def _find_idx(spec: DatasetSpec, split: str, folder: Path, cache: Path) -> list[Path] | None:
    """The split's IDX files in `folder`, each gzipped or raw, or None unless all are there."""
    found = []
    for base in spec.files[split]:
        candidates = [p for p in (folder / f"{base}.gz", folder / base) if p.is_file()]
        if not candidates:
            return None
        found.append(candidates[0])
    return found


def _find_cifar(spec: DatasetSpec, split: str, folder: Path, cache: Path) -> list[Path] | None:
    """The split's batch files in `folder` or its cifar-10-batches-py/, else from an archive there, via the cache."""
    for batches in (folder, folder / CIFAR_FOLDER):
        paths = [batches / f for f in spec.files[split]]
        if all(p.is_file() for p in paths):
            return paths
    archive = folder / CIFAR_ARCHIVE
    if not archive.is_file():
        return None
    paths = [cache / CIFAR_FOLDER / f for f in spec.files[split]]
    if not all(p.is_file() for p in paths):
        _extract_cifar(spec, archive, cache)
    return paths


_FINDERS = {"idx": _find_idx, "cifar": _find_cifar}


def _read_named(name: str, spec: DatasetSpec, split: str, paths: list[Path]) -> ImageData:
    if spec.reader == "idx":
        x, y = read_idx_pair(paths[0], paths[1], len(spec.class_names))
    else:
        x, y = read_cifar_batches(paths)
    return ImageData(
        x=x,
        y=y,
        num_classes=len(spec.class_names),
        class_names=list(spec.class_names),
        name=name,
        source=str(paths[0].parent),
        split=split,
    )


def _extract_cifar(spec: DatasetSpec, archive: Path, cache: Path) -> None:
    """Extract the batch files from the CIFAR-10 archive into cache/cifar-10-batches-py, replacing what is there."""
    wanted = {f for files in spec.files.values() for f in files}
    target = cache / CIFAR_FOLDER
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                folder, _, base = member.name.rpartition("/")
                # Only known plain files, written by base name: a crafted archive cannot write anywhere else.
                if member.isfile() and folder == CIFAR_FOLDER and base in wanted:
                    with tar.extractfile(member) as src, open(staging / base, "wb") as out:
                        shutil.copyfileobj(src, out)
        missing = sorted(wanted - {p.name for p in staging.iterdir()})
        if missing:
            raise DataError(f"{archive} lacks {CIFAR_FOLDER}/{missing[0]}.")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"Cannot extract {archive}: {str(e) or type(e).__name__}.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download_missing(spec: DatasetSpec, cache: Path) -> None:
    for file, (url, sha256) in spec.downloads.items():
        if not (cache / file).is_file():
            download(url, cache / file, sha256)


def _fetch(url: str, out: BinaryIO) -> None:
    """Copy the body at `url` into `out` (the one place that touches the network)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        shutil.copyfileobj(response, out, 1 << 20)


def download(url: str, dest: Path, sha256: str) -> None:
    """Download `url` to `dest` through a temporary file that is renamed into place only if its SHA-256 matches."""
    print(f"gankit: downloading {url} to {dest}", file=sys.stderr)

    def fetch_and_check(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            _fetch(url, out)
        digest = sha256_file(tmp)
        if digest != sha256:
            raise DataError(f"{url} has SHA-256 {digest}, expected {sha256}, so it was discarded.")

    try:
        atomic_write(dest, fetch_and_check)
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise DataError(f"Downloading {url} failed: {str(e) or type(e).__name__}.") from None


def _not_found(name: str, spec: DatasetSpec, split: str, searched: list[Path], why: str) -> str:
    """One paragraph: what was missing, where gankit looked, and every way to provide it."""
    apt = f", or run `apt-get install {spec.apt_package}`" if spec.apt_package else ""
    archive = f", or {CIFAR_ARCHIVE}" if spec.reader == "cifar" else ""
    by_folder: dict[str, list[str]] = {}
    for url, _ in spec.downloads.values():
        folder, _, file = url.rpartition("/")
        by_folder.setdefault(folder + "/", []).append(file)
    urls = "; ".join(f"{folder} ({', '.join(files)})" for folder, files in by_folder.items())
    return (
        f"Could not find the {name} {split} files ({', '.join(spec.files[split])}{archive}) in "
        f"{', '.join(str(d) for d in searched)}, and {why}. Provide them with --data-dir DIR, or set $GANKIT_DATA to a "
        f"folder holding them (or holding {name}/), or put them in {cache_dir(name)}{apt}, or let gankit download "
        f"them from {urls}."
    )
