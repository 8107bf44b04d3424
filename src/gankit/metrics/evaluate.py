"""Evaluating a run: generated images vs a reference split, on one stated protocol; 2-D runs against the exact
density. Every result carries its protocol, because FIDs from different protocols do not compare."""

from __future__ import annotations

import hashlib
import math
import pickle
import re
from pathlib import Path

import torch

from gankit import distributed
from gankit.data import STACKED, cache_dir, is_named, load_images, make_toy, to_model_range
from gankit.data.batches import cycling_labels
from gankit.data.folders import FolderOptions
from gankit.data.streams import Stream, seeded
from gankit.errors import ConfigError
from gankit.files import atomic_write, write_json
from gankit.images import to_uint8
from gankit.metrics import classifier
from gankit.metrics.fid import feature_stats, frechet_distance
from gankit.metrics.inception import RESIZES, Extractor, load_inception
from gankit.metrics.kid import kid
from gankit.metrics.modes import STACKED_SAMPLES, stacked_modes
from gankit.metrics.overfit import overfit_metrics
from gankit.metrics.precision_recall import precision_recall
from gankit.metrics.toy import (
    discriminator_gap,
    jsd_estimate,
    mode_metrics,
    select_bandwidth,
)
from gankit.models import each_alone, eval_mode
from gankit.runs import generate, has_ema, load_networks, run_config
from gankit.runs import load as load_run

INCEPTION_METRICS = ("fid", "kid", "pr")
DOMAIN_METRICS = ("coverage", "dfid")  # need a domain classifier for the dataset
# overfit: needs a held-out split; modes: stacked datasets' 1,000 modes
IMAGE_METRICS = INCEPTION_METRICS + DOMAIN_METRICS + ("overfit", "modes")


def parse_metrics(text: str | None, data: str | None = None, holdout: float = 0.0) -> list[str]:
    """The requested metrics; None = fid, kid, pr, plus coverage and dfid where a domain classifier exists, overfit
    where the data has a held-out split, and modes for a stacked dataset."""
    if text is None:
        return (
            list(INCEPTION_METRICS)
            + (list(DOMAIN_METRICS) if data and has_classifier(data) else [])
            + (["overfit"] if data and has_held_out_split(data, holdout) else [])
            + (["modes"] if data and stacked_name(data) else [])
        )
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in IMAGE_METRICS]
    if unknown or not names:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(IMAGE_METRICS)}")
    return names


def has_held_out_split(data: str, holdout: float = 0.0) -> bool:
    """Named datasets have a test split apart from the training images; a folder or .npz has one where its run held
    images out (--holdout)."""
    return is_named(data) or bool(holdout)


def stacked_name(data: str) -> str | None:
    name = str(data).lower().replace("_", "-")
    return name if name in STACKED else None


def mode_metrics_of_stacked(data: str, images_uint8: torch.Tensor) -> tuple[dict, dict]:
    """Modes covered of 1,000 and the mode histogram's KL, of stacked images (gankit.metrics.modes)."""
    name = stacked_name(data)
    if name is None:
        raise ConfigError(f"the modes metric counts the 1,000 modes of a stacked dataset ({', '.join(STACKED)})")
    model, meta = classifier.load_classifier(STACKED[name])
    return stacked_modes(lambda grey: classifier.classify(model, grey)[1].argmax(1), meta, images_uint8)


def has_classifier(data: str) -> bool:
    return classifier.user_path(data).is_file() or classifier.shipped_path(data).is_file()


def _subset(total: int, n: int, seed: int) -> torch.Tensor:
    """The indices of the seeded reference subset: n of total (all of them if n is larger)."""
    if n < total:
        return torch.randperm(total, generator=seeded(seed, Stream.REFERENCE_SUBSET))[:n].sort().values
    return torch.arange(total)


def real_images(data: str, split: str, n: int, data_dir: str | None = None, seed: int = 0, folder=None):
    """(uint8 images, description): a seeded random subset of n images of a split (all of it if n is larger).
    `folder`: how a folder's pictures are fitted (a run's own FolderOptions, so its reference looks as it trained)."""
    images = load_images(data, split, data_dir=data_dir, folder=folder)
    idx = _subset(images.x.shape[0], n, seed)
    # A folder or .npz has no held-out part: the reference is then the training images themselves, and says so.
    return images.x[idx], {"data": images.name, "split": images.split, "n_real": len(idx)}


def reference_labels(
    data: str, split: str, n: int, classes: tuple[int, ...], data_dir: str | None = None, seed: int = 0, folder=None
) -> torch.Tensor | None:
    """n labels for a conditional G trained on `classes`, drawn like the data's: those of the reference subset
    (repeated if it is smaller), so that generated and real images have the same class frequencies even where the
    classes are unbalanced. None for an unconditional G (no classes)."""
    if not classes:
        return None
    images = load_images(data, split, data_dir=data_dir, folder=folder)
    if images.y is None:  # a split without labels: every class equally often
        return cycling_labels(classes, n)
    labels = images.y[_subset(images.y.shape[0], n, seed)]
    return labels.repeat(-(-n // len(labels)))[:n]


def reference_features(
    data: str,
    split: str,
    n: int,
    extractor: Extractor,
    data_dir: str | None = None,
    seed: int = 0,
    cache: bool = True,
    folder=None,
):
    """Features of n reference images, cached per (data source, split, n, seed, extractor hash, precision, resize).

    The source is the dataset name plus --data-dir, or the resolved path of a folder or .npz, so that two
    folders with the same name never share a cache entry. An unreadable cache entry is recomputed.
    """
    tag = "bf16" if extractor.bf16 else "fp32"
    source = str(Path(data).resolve()) if Path(data).exists() else f"{data}|{data_dir or ''}"
    if Path(data).exists():  # how a folder's pictures were fitted, and what was held out, is part of the reference
        source += f"|{folder or FolderOptions()}"
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    key = re.sub(
        r"[^\w.-]+",
        "_",
        f"v2-{Path(data).name}-{digest}-{split}-{n}-seed{seed}-{extractor.weights_hash}-{tag}-{extractor.resize}",
    )
    path = cache_dir("stats") / f"{key}.pt"
    if cache and path.exists():
        try:
            saved = torch.load(path, weights_only=True)
            return saved["features"], saved["reference"]
        except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError):
            pass  # a damaged cache file: compute the features again and overwrite it
    images, reference = real_images(data, split, n, data_dir, seed, folder)
    features = extractor(images)
    if cache and distributed.current().main:
        atomic_write(path, lambda tmp: torch.save({"features": features, "reference": reference}, tmp))
    return features, reference


def image_metrics(real: torch.Tensor, fake: torch.Tensor, names: list[str], seed: int = 0) -> dict[str, float]:
    out = {}
    if "fid" in names:
        out["fid"] = frechet_distance(feature_stats(real), feature_stats(fake))
    if "kid" in names:
        out["kid"], out["kid_std"] = kid(real, fake, seed=seed)
    if "pr" in names:
        out["precision"], out["recall"] = precision_recall(real, fake)
    return out


def protocol(extractor: Extractor, n_fake: int, reference: dict, seed: int) -> dict:
    return {
        "extractor": extractor.name,
        "weights_sha256": extractor.weights_hash,
        "resize": RESIZES[extractor.resize],
        "input": "uint8 (generated images quantised like saved PNGs)",
        "precision": "bf16" if extractor.bf16 else "fp32",
        "n_fake": n_fake,
        "reference": reference,
        "seed": seed,
    }


def evaluate_run(
    run_dir: str | Path,
    extractor_factory,
    metrics: list[str] | None = None,
    n: int = 2000,
    ref: str = "test",
    seed: int = 0,
    ema: bool | None = None,
) -> dict:
    """Image metrics of a run's latest checkpoint vs the reference split of its training data; writes eval.json."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if metrics is None:  # the defaults; overfit only where the reference is held out
        metrics = [
            m for m in parse_metrics(None, cfg["data"], cfg.get("holdout") or 0.0) if m != "overfit" or ref != "train"
        ]
    ema = has_ema(cfg) if ema is None else ema
    G, D, spec, step = load_networks(run_dir, ema=ema)
    if spec.resolution == 0:
        raise ConfigError(f"{run_dir} is a 2-D toy run: run `gankit eval {run_dir}` without --metrics")
    if "overfit" in metrics and (ref == "train" or not has_held_out_split(cfg["data"], cfg.get("holdout") or 0.0)):
        raise ConfigError(
            "the overfit metric compares D on training and held-out images: it needs a named dataset "
            "(with a test split) or a run that held images out (--holdout), and --ref test"
        )
    folder = FolderOptions.from_config(cfg)
    labels = reference_labels(cfg["data"], ref, n, spec.drawn_classes, cfg.get("data_dir"), seed, folder)
    fake = generate(G, spec.latent_dim, n, seed=seed + 1, labels=labels)
    fake_images = to_uint8(fake)
    values, proto = {}, {"n_fake": n, "seed": seed}
    inception_names = [m for m in metrics if m in INCEPTION_METRICS]
    if inception_names:
        extractor = extractor_factory()
        real, reference = reference_features(cfg["data"], ref, n, extractor, cfg.get("data_dir"), seed, folder=folder)
        values.update(image_metrics(real, extractor(fake_images), inception_names, seed))
        proto = protocol(extractor, n, reference, seed)
    if any(m in DOMAIN_METRICS for m in metrics):
        domain, domain_proto = domain_metrics(
            cfg["data"], fake_images, metrics, n, ref, cfg.get("data_dir"), labels, seed
        )
        values.update(domain)
        proto["domain"] = domain_proto
    if "modes" in metrics:
        many = to_uint8(generate(G, spec.latent_dim, STACKED_SAMPLES, seed=seed + 2))
        values_modes, proto["modes"] = mode_metrics_of_stacked(cfg["data"], many)
        values.update(values_modes)
    if "overfit" in metrics:
        # The whole held-out split and as many training images: the logit gap is small next to the per-image
        # spread, so it needs more images than --n (2,000 gave 0.45 and 0.23 on two subsets); D alone is cheap.
        held_out = _real_for_d(cfg, ref, None, spec, seed)
        train_images = _real_for_d(cfg, "train", held_out[0].shape[0], spec, seed)
        values.update(overfit_metrics(D, train_images, held_out, (fake, labels)))
        proto["overfit"] = {
            "n_real": held_out[0].shape[0],
            "n_fake": n,
            "splits": ["train", ref],
            "weights": "D (eval mode)",
            "fake": "G_ema" if ema else "G",
        }
    result = {
        "run": str(run_dir),
        "step": step,
        "weights": "G_ema" if ema else "G",
        "metrics": values,
        "protocol": proto,
    }
    write_result(run_dir / "eval.json", result)
    return result


def _real_for_d(cfg: dict, split: str, n: int | None, spec, seed: int):
    """n seeded real images of a split (None: all) as D saw them in training (model range, the run's resolution),
    and their labels."""
    images = load_images(cfg["data"], split, data_dir=cfg.get("data_dir"), folder=FolderOptions.from_config(cfg))
    idx = _subset(images.x.shape[0], n or images.x.shape[0], seed)
    labels = images.y[idx] if spec.num_classes and images.y is not None else None
    return to_model_range(images.x[idx], spec.resolution), labels


def domain_metrics(
    data: str,
    fake_images: torch.Tensor,
    metrics: list[str],
    n: int,
    ref: str = "test",
    data_dir: str | None = None,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    model=None,
    reference=None,
) -> tuple[dict, dict]:
    """Coverage, domain IS, domain FID and (conditional runs) accuracy on G(z, y) by the domain classifier.

    `model` and `reference` (its features of the reference images) may be passed in to evaluate repeatedly.
    """
    meta = {}
    if model is None:
        model, meta = classifier.load_classifier(data)
    described = "given by the caller"
    if reference is None:
        real, described = real_images(data, ref, n, data_dir, seed)
        reference = classifier.classify(model, real)[0]
    features, probs = classifier.classify(model, fake_images)
    values = {}
    if "coverage" in metrics:
        values.update(classifier.coverage(probs))
        if labels is not None:
            values["conditional_accuracy"] = float((probs.argmax(1) == labels).double().mean())
    if "dfid" in metrics:
        values["domain_fid"] = frechet_distance(feature_stats(reference), feature_stats(features))
    proto = {
        "classifier": meta.get("path", "given"),
        "test_accuracy": meta.get("test_accuracy"),
        "features": f"{classifier.FEATURES}-d penultimate layer",
        "reference": described,
    }
    return values, proto


def real_vs_real(
    data: str, extractor_factory, metrics: list[str], n: int = 2000, data_dir: str | None = None, seed: int = 0
) -> dict:
    """The floor of every metric: n train images in the place of generated ones, against n test images."""
    values, proto = {}, {"n_fake": n, "seed": seed}
    inception_names = [m for m in metrics if m in INCEPTION_METRICS]
    if inception_names:
        extractor = extractor_factory()
        test, reference = reference_features(data, "test", n, extractor, data_dir, seed)
        train, train_info = reference_features(data, "train", n, extractor, data_dir, seed)
        values.update(image_metrics(test, train, inception_names, seed))
        proto = protocol(extractor, train_info["n_real"], reference, seed)
        proto["compared"] = train_info
    if "modes" in metrics:  # the test split holds exactly the benchmark's number of images
        values_modes, proto["modes"] = mode_metrics_of_stacked(data, load_images(data, "test", data_dir=data_dir).x)
        values.update(values_modes)
    if any(m in DOMAIN_METRICS for m in metrics):
        train_images = real_images(data, "train", n, data_dir, seed)[0]
        values_domain, proto["domain"] = domain_metrics(data, train_images, metrics, n, "test", data_dir, seed=seed)
        values.update(values_domain)
    return {"real_vs_real": data, "metrics": values, "protocol": proto}


def evaluate_images(
    images: torch.Tensor,
    data: str,
    split: str,
    extractor_factory,
    metrics: list[str] | None = None,
    data_dir: str | None = None,
    seed: int = 0,
) -> dict:
    """Metrics of any images — uint8 (N, C, H, W), or floats in [-1, 1] — against as many images of a dataset's split
    (a folder or .npz: all of it, and the protocol says so): FID of your own samples, on gankit's protocol."""
    if images.dtype != torch.uint8:
        if not images.is_floating_point() or images.ndim != 4 or not torch.isfinite(images).all():
            raise ConfigError("images must be uint8 (N, C, H, W), or finite floats in [-1, 1]")
        images = to_uint8(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 10:
        raise ConfigError(f"images must be (N, C, H, W) with C 1 or 3 and N ≥ 10, got {tuple(images.shape)}")
    metrics = metrics or list(INCEPTION_METRICS)
    unknown = [m for m in metrics if m not in INCEPTION_METRICS + DOMAIN_METRICS]
    if unknown:
        raise ConfigError(
            f"metric(s) {', '.join(unknown)} need a run; for images choose from fid, kid, pr, coverage, dfid"
        )
    n = images.shape[0]
    values, proto = {}, {"n_fake": n, "seed": seed}
    inception_names = [m for m in metrics if m in INCEPTION_METRICS]
    if inception_names:
        extractor = extractor_factory()
        real, reference = reference_features(data, split, n, extractor, data_dir, seed)
        values.update(image_metrics(real, extractor(images), inception_names, seed))
        proto = protocol(extractor, n, reference, seed)
    if any(m in DOMAIN_METRICS for m in metrics):
        domain, proto["domain"] = domain_metrics(data, images, metrics, n, split, data_dir, seed=seed)
        values.update(domain)
    return {"images": n, "metrics": values, "protocol": proto}


def split_source(text: str) -> tuple[str, str]:
    """'fashion-mnist:train' → ('fashion-mnist', 'train'); a source without a split reads its test split (a folder
    or .npz: all of it)."""
    data, _, split = text.rpartition(":")
    return (data, split) if data and split in ("train", "test") else (text, "test")


def compare(a: str, b: str, extractor_factory, metrics: list[str], n: int = 2000, seed: int = 0) -> dict:
    """Metrics between any two sources — a run folder (n of its G's samples), a dataset name with an optional
    split, an image folder or an .npz — on one protocol: B is the reference, A in the place of generated images."""
    extractor = extractor_factory()
    features, described = [], []
    for source in (a, b):
        if Path(source, "config.json").is_file():
            run = load_run(source)
            if run.spec.resolution == 0:
                raise ConfigError(f"{source} is a 2-D toy run: compare image runs, folders or datasets")
            # A conditional G draws its classes as often as its training data has them: cycling through every class
            # would ask for classes a run on a subset of them (labels kept, e.g. 8 and 9 of 10) never saw.
            cfg = run.config
            folder = FolderOptions.from_config(cfg)
            classes = run.spec.drawn_classes
            labels = reference_labels(cfg["data"], "train", n, classes, cfg.get("data_dir"), seed, folder)
            images = to_uint8(run.generate(n, labels, seed=seed + 1))
            features.append(extractor(images))
            described.append({"run": source, "step": run.step, "weights": "G_ema" if run.ema else "G", "n": n})
        else:
            data, split = split_source(source)
            feats, info = reference_features(data, split, n, extractor, seed=seed)
            features.append(feats)
            described.append(info)
    values = image_metrics(features[1], features[0], metrics, seed)
    proto = protocol(extractor, features[0].shape[0], described[1], seed)
    proto["compared"] = described[0]
    return {"a": a, "b": b, "metrics": values, "protocol": proto}


class TrainingEvaluator:
    """Domain FID and class coverage (and Inception FID when asked) of a fixed set of z, every eval_every steps.

    The classifier, its reference features and the Inception reference are loaded once, at the start of training.
    """

    def __init__(self, cfg, spec):
        self.cfg, self.spec = cfg, spec
        n = cfg.eval_samples
        folder = FolderOptions.from_config(cfg)
        self.labels = reference_labels(cfg.data, "test", n, spec.drawn_classes, cfg.data_dir, folder=folder)
        self.inception = None
        if cfg.eval_inception:
            self.inception = load_inception()
            self.inception_reference = reference_features(
                cfg.data, "test", n, self.inception, cfg.data_dir, folder=folder
            )[0]
        self.classifier = None
        if has_classifier(cfg.data) and spec.channels == 1:
            self.classifier = classifier.load_classifier(cfg.data)[0]
            reference_images = real_images(cfg.data, "test", n, cfg.data_dir)[0]
            self.classifier_reference = classifier.classify(self.classifier, reference_images)[0]
        elif self.inception is None:
            raise ConfigError(
                f"--eval-every measures domain FID and coverage with a domain classifier, and there is "
                f"none for {cfg.data}; add --eval-inception for Inception FID instead, or train one "
                f"with `gankit classifier train --data {cfg.data}`"
            )

    @torch.no_grad()
    def __call__(self, G: torch.nn.Module) -> dict[str, float]:
        n = self.cfg.eval_samples
        with eval_mode(G):
            fake = to_uint8(generate(G, self.spec.latent_dim, n, seed=self.cfg.seed + 1, labels=self.labels))
        values = {}
        if self.classifier is not None:
            values, _ = domain_metrics(
                self.cfg.data,
                fake,
                ["coverage", "dfid"],
                n,
                labels=self.labels,
                model=self.classifier,
                reference=self.classifier_reference,
            )
        if self.inception is not None:
            values.update(image_metrics(self.inception_reference, self.inception(fake), ["fid"]))
        return values


@torch.no_grad()
def evaluate_toy(run_dir: str | Path, n: int = 2500, seed: int = 0, ema: bool | None = None) -> dict:
    """Modes covered, % high quality, mode-histogram KL, JSD(p_data ‖ p_g), and |σ(D) − D*| where the data lives."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    ema = has_ema(cfg) if ema is None else ema
    G, D, spec, step = load_networks(run_dir, ema=ema)
    if spec.resolution != 0:
        raise ConfigError(f"{run_dir} is an image run; the toy metrics need 2-D data")
    kwargs = {k: cfg[f"toy_{k}"] for k in ("scale", "std") if cfg.get(f"toy_{k}") is not None}
    dist = make_toy(cfg["data"], **kwargs)
    fake = generate(G, spec.latent_dim, 4 * n, seed=seed + 1)
    fit, held_out, fake_eval, fake_modes = fake.split(n)
    real = dist.sample(n, generator=seeded(seed, Stream.TOY_EVAL))
    bandwidth = select_bandwidth(fit, held_out)
    metrics = mode_metrics(dist, fake_modes)
    metrics["jsd"] = jsd_estimate(dist, fit, fake_eval, real, bandwidth)
    metrics["d_gap"] = discriminator_gap(dist, D(*each_alone(D, real)), real, fit, bandwidth)
    result = {
        "run": str(run_dir),
        "step": step,
        "weights": "G_ema" if ema else "G",
        "metrics": metrics,
        "protocol": {
            "data": cfg["data"],
            "n_fake": n,
            "n_real": n,
            "seed": seed,
            "high_quality": "within 3 std of the nearest mode",
            "covered": "at least 20 high-quality samples per 2,500",
            "p_g": f"Gaussian KDE, bandwidth {bandwidth:.4g} by held-out likelihood, fitted on separate samples",
        },
    }
    write_result(run_dir / "eval.json", result)
    return result


def write_result(path: Path, result: dict) -> None:
    if not distributed.current().main:  # under torchrun every rank holds the result; rank 0 writes it
        return
    write_json(path, finite(result))


def finite(value):
    """JSON has no Infinity: an infinite value (e.g. the KL of a fully collapsed G) is written as null."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and not math.isfinite(value) else value


def format_table(result: dict) -> str:
    """A metric table followed by the protocol, for the terminal."""
    lines = [f"{'metric':<22}value"]
    metrics = result["metrics"]
    for name, value in metrics.items():
        if name == "kid_std":
            continue
        text = (
            f"{value:.5f} ± {metrics['kid_std']:.5f}"
            if name == "kid"
            else (f"{value:.4f}" if isinstance(value, float) else str(value))
        )
        lines.append(f"{name:<22}{text}")
    lines.append("protocol:")
    for key, value in result["protocol"].items():
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)
