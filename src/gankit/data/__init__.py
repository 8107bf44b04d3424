"""Data for gankit: real image datasets loaded whole into memory, and 2-D toy distributions with exact densities."""

from gankit.data.readers import ImageData, to_model_range
from gankit.data.sources import REGISTRY, cache_dir, is_named, load_images
from gankit.data.stacked import STACKED
from gankit.data.toy import TOY, ToyDistribution, is_toy, make_toy

__all__ = [
    "ImageData",
    "REGISTRY",
    "STACKED",
    "TOY",
    "ToyDistribution",
    "cache_dir",
    "is_named",
    "is_toy",
    "load_images",
    "make_toy",
    "to_model_range",
]
