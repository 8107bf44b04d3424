"""The training configuration: one field per knob, each carrying its --help text and the values it may take.

CLI flags, a JSON/TOML file and a run's saved config.json all map onto `TrainConfig`; unknown keys are errors.
`None` means "decide from the data, model and host" until `training.defaults.resolve` fills it in; a saved
config.json holds no Nones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from gankit.errors import ConfigError
from gankit.files import write_json

AUGMENTATIONS = ("translation", "cutout", "color")  # DiffAugment's operations (gankit.training.augment)


def parse_policy(text: str) -> tuple[str, ...]:
    """'translation,cutout' → ('translation', 'cutout'); 'none' or '' → (); 'ada' → all of them (applied with the
    adaptive probability p; see `is_adaptive`)."""
    if text.strip() == "ada":
        return AUGMENTATIONS
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"unknown augmentation {', '.join(unknown)}: choose from {', '.join(AUGMENTATIONS)}, ada or none"
        )
    return names


def is_adaptive(text: str) -> bool:
    """--augment ada: each operation applied with a probability steered by D's overfitting (Karras et al. 2020)."""
    return text.strip() == "ada"


BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}


def parse_background(text: str) -> tuple[int, int, int]:
    """'white', 'black' or 'R,G,B' (0..255 each) as an RGB triple."""
    if text in BACKGROUNDS:
        return BACKGROUNDS[text]
    parts = text.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)
    raise ConfigError(f"background must be white, black or R,G,B with each in 0..255, got {text!r}")


# Published recipes, exactly as their papers and code ran them; `--preset NAME` lays one under the settings given.
PRESETS: dict[str, dict[str, Any]] = {
    # Lin et al. 2018 (PacGAN), section 5.1 / table 1, as their code runs it (synthetic_data_experiments/
    # 2DGrid_GAN&PacGAN/config.py and 2DRing_...; pacgan_task.py): G 4 hidden layers of 400 with batch norm and ReLU,
    # D 3 hidden layers of 200 maxout units of 5 pieces, weights N(0, 0.02), z ~ N(0, I₂), the non-saturating loss,
    # Adam lr 1e-4 β1 0.8, 100 (packed) samples a batch (batch_size = 100 × --pack, see defaults), 400 epochs of
    # 100,000 samples = 400,000 steps, no weight averaging. gankit's differences: D and G step in turn (their ALI code
    # steps both from one batch at once), and each batch is drawn fresh from the mixture, not from a fixed 100,000.
    "pacgan": {
        "model": "mlp",
        "latent_dim": 2,
        "width_g": 400,
        "depth_g": 4,
        "batchnorm_g": True,
        "width_d": 200,
        "depth": 3,
        "maxout": 5,
        "batchnorm_d": False,
        "init_std": 0.02,
        "loss": "ns",
        "optimizer": "adam",
        "lr_g": 1e-4,
        "lr_d": 1e-4,
        "beta1": 0.8,
        "beta2": 0.999,
        "n_critic": 1,
        "ema": None,
        "steps": 400_000,
        "log_every": 1000,
        "sample_every": 20_000,
        "checkpoint_every": 20_000,
    },
}


def opt(default, help: str, *, choices: tuple[str, ...] | None = None, interval: tuple | None = None):
    """A TrainConfig field: its default, its --help text, and the values it may take — choices, or an interval
    (low, high, low included, high included; None = unbounded) for a float."""
    metadata = {"help": help} | ({"choices": choices} if choices else {}) | ({"interval": interval} if interval else {})
    return dataclasses.field(default=default, metadata=metadata)


# One knob per line, its help text beside it: the formatter leaves this class as written.
# fmt: off
@dataclass
class TrainConfig:
    preset: str | None = opt(None, "a published recipe's settings, under any given here: pacgan (Lin et al. 2018's 2-D "
                                   "experiments: their networks, batch of 100 packs, Adam and 400 epochs)",
                             choices=tuple(PRESETS))
    # Data
    data: str = opt("fashion-mnist", "dataset name (fashion-mnist, mnist, cifar10), image folder, .npz, or toy (ring8, "
                                     "grid25, spiral)")
    data_dir: str | None = opt(None, "folder holding the dataset files; None = $GANKIT_DATA, cache, system folders")
    resolution: int | None = opt(None, "side of generated images; None = the data's own side (28 for MNIST-like data)")
    toy_scale: float | None = opt(None, "toy data: ring radius / grid spacing; None = the distribution's default",
                                        interval=(0, None, False, False))
    toy_std: float | None = opt(None, "toy data: std of each mixture component; None = the distribution's default",
                                      interval=(0, None, False, False))
    fit: str = opt("crop", "image folders: how a picture that is not square becomes square: crop (its centre), pad "
                           "(letterboxed onto --background) or stretch", choices=("crop", "pad", "stretch"))
    background: str = opt("white", "image folders: the colour under transparent pixels and pad's borders: white, "
                                   "black or R,G,B")
    max_bad: float = opt(0.01, "image folders: the share of unreadable images skipped with a warning before the folder "
                               "is refused", interval=(0, 1, True, True))
    holdout: float | None = opt(None, "folders and .npz: the share of images held out from training, gankit eval's "
                                      "reference; None = 0.05 there (named datasets have test splits)",
                                interval=(0, 1, True, False))
    mirror: bool = opt(False, "random horizontal flips of the real images, drawn from the seed and step "
                              "(StyleGAN2-ADA's --mirror)")
    # Model
    model: str | None = opt(None, "dcgan, resnet (SNGAN's residual networks) or mlp; None = mlp for toy data, dcgan "
                                  "for images", choices=("dcgan", "resnet", "mlp"))
    conditional: bool | None = opt(None, "condition G and D on class labels: G(z, y); None = on for images with class "
                                         "labels")
    conditioning: str = opt("projection", "how a conditional D sees labels: projection or concat",
                                          choices=("projection", "concat"))
    class_batchnorm: bool = opt(False, "conditional DCGAN: G's batch-norm scale and shift are learned per class")
    latent_dim: int | None = opt(None, "size of z ~ N(0, I); None = 100 for dcgan, 2 for mlp")
    width_g: int | None = opt(None, "G width (DCGAN ngf, MLP hidden units); None = 96 for dcgan at 28×28 (48 on an "
                                    "AVX2-only CPU), 64 at other sides, 256 for mlp")
    width_d: int | None = opt(None, "D width (DCGAN ndf, MLP hidden units); None = 64 for dcgan (32 at 28×28 on an "
                                    "AVX2-only CPU), 256 for mlp")
    depth: int = opt(3, "MLP hidden layers of D, and of G unless --depth-g")
    depth_g: int | None = opt(None, "MLP hidden layers of G; None = --depth")
    maxout: int = opt(1, "MLP: D's hidden units are maxout units of this many pieces (as PacGAN's); 1 = LeakyReLU")
    init_std: float | None = opt(None, "MLP: weights drawn from N(0, σ²) and biases 0 (PacGAN's 0.02); None = "
                                       "PyTorch's default", interval=(0, None, False, False))
    batchnorm_g: bool | None = opt(None, "batch norm in G; None = on for dcgan, off for mlp")
    batchnorm_d: bool | None = opt(None, "batch norm in D (never on its input); None = on for dcgan unless spectral "
                                         "norm, off for mlp")
    spectral_norm: bool = opt(False, "spectral normalisation of D's weights")
    dropout: float = opt(0.0, "dropout probability in D's hidden layers", interval=(0, 1, True, False))
    augment: str = opt("none", "DiffAugment (Zhao et al. 2020) of D's real and fake inputs, against a D that memorises "
                               "the data: none, a comma list of translation, cutout, color, or ada: all three, each "
                               "with a probability p steered toward --ada-target (Karras et al. 2020)")
    ada_target: float = opt(0.6, "--augment ada: the value of r_t = E[sign(D(real))] p is steered toward (ADA's 0.6)",
                            interval=(0, 1, False, False))
    ada_kimg: float = opt(500.0, "--augment ada: thousands of real images over which p may rise from 0 to 1 (ADA's "
                                 "500)", interval=(0, None, False, False))
    minibatch_std: bool = opt(False, "D also sees how much its features vary over groups of 4 samples (Karras et al. "
                                     "2018): against mode collapse")
    pack: int = opt(1, "D judges packs of M samples, all real or all fake, stacked along channels (PacGAN, Lin et al. "
                       "2018): against mode collapse; the batch must split into packs; 1 = off")
    # The game
    loss: str = opt("ns", "minimax, ns, wgan, wgan-gp, hinge, lsgan, feature-matching",
                          choices=("minimax", "ns", "wgan", "wgan-gp", "hinge", "lsgan", "feature-matching"))
    n_critic: int | None = opt(None, "D updates per G update; None = 5 for wgan and wgan-gp (their papers), 1 "
                                     "otherwise")
    label_smoothing: float = opt(0.0, "one-sided: D's target for real data is 1 - this", interval=(0, 1, True, False))
    gp_weight: float | None = opt(None, "gradient-penalty weight; None = the loss's default (10 for wgan-gp, 0.1 "
                                        "for wgan-gp on 2-D toy data as its authors ran it; else 0)",
                                        interval=(0, None, True, False))
    weight_clip: float | None = opt(None, "clip D's weights to ±this after each step; None = the loss's default (0.01 "
                                          "for wgan)", interval=(0, None, False, False))
    r1: float = opt(0.0, "R1 penalty γ (Mescheder et al. 2018): D's loss adds γ/2·E‖∇D(x)‖² on real images, computed "
                         "every 16th step and weighted ×16 (StyleGAN2's lazy regularisation); 0 = off",
                    interval=(0, None, True, False))
    unroll: int = opt(0, "G's update looks K steps of D's optimiser ahead, its gradient taken through them (Unrolled "
                         "GAN, Metz et al. 2017): against mode collapse; 0 = off")
    lecam: float = opt(0.0, "LeCam regularisation weight (Tseng et al. 2021): D's outputs on real and generated images "
                            "are held near moving averages of each other's; 0 = off", interval=(0, None, True, False))
    # Optimisation
    optimizer: str = opt("adam", "adam or rmsprop", choices=("adam", "rmsprop"))
    lr_g: float | None = opt(None, "G learning rate; None = 4e-4 for dcgan, 2e-4 for mlp, 1e-4 for wgan-gp, 5e-5 for "
                                   "wgan", interval=(0, None, False, False))
    lr_d: float | None = opt(None, "D learning rate (a value other than lr_g is TTUR); None = as lr_g",
                                   interval=(0, None, False, False))
    lr_decay: str = opt("none", "none, or linear: constant for the first half of the run, then linearly to 0 at its "
                                "end (--steps or --max-minutes, whichever ends it)", choices=("none", "linear"))
    beta1: float | None = opt(None, "Adam β1; None = 0.5 (0.0 for wgan-gp on images and for resnet)",
                                interval=(0, 1, True, False))
    beta2: float | None = opt(None, "Adam β2; None = 0.999 (0.9 for wgan-gp and resnet)", interval=(0, 1, True, False))
    batch_size: int | None = opt(None, "global batch size; None = 32 for images (more updates per minute), 256 for toy "
                                       "data")
    steps: int = opt(3000, "G updates to train for (the total, also when resuming)")
    max_minutes: float | None = opt(None, "also stop after this much training time (a wall-clock budget); None = no "
                                          "limit", interval=(0, None, False, False))
    ema: float | None = opt(0.999, "decay of the exponential moving average of G's weights; None = no EMA",
                                   interval=(0, 1, False, False))
    # Runtime
    seed: int = opt(0, "seeds weights, data order and noise")
    device: str = opt("auto", "cpu, cuda, or auto (CUDA when PyTorch sees a GPU)", choices=("cpu", "cuda", "auto"))
    precision: str = opt("auto", "fp32, bf16, fp16 (GPUs without bf16; scaled losses), or auto (bf16 for dcgan where "
                                 "the GPU has it or the CPU runs it faster than fp32)",
                                 choices=("fp32", "bf16", "fp16", "auto"))
    threads: int | None = opt(None, "CPU threads; None = PyTorch's default (torchrun sets 1 per process)")
    sync_batchnorm: bool = opt(False, "torchrun on GPUs: batch-norm statistics over the global batch, not each rank's "
                                      "part")
    # Output
    out: str | None = opt(None, "run folder; None = runs/<data>-<loss>")
    log_every: int = opt(50, "steps between metrics.jsonl lines (and the only host syncs)")
    sample_every: int = opt(500, "steps between sample grids")
    checkpoint_every: int = opt(1000, "steps between checkpoints")
    keep_checkpoints: int = opt(3, "how many recent checkpoints to keep")
    grid_size: int = opt(64, "images in each sample grid")
    # Diagnostics (docs/diagnostics.md; findings go to RUN/diagnostics.jsonl)
    diagnostics: bool = opt(True, "watch for D saturation, mode collapse, D memorising and instability; warn with a "
                                     "remedy")
    saturation_d_fake: float = opt(0.05, "saturation: mean D(G(z)) below this while G's gradient norm is under 10% of "
                                         "its early level (minimax: D(G(z)) alone decides)",
                                         interval=(0, 1, False, False))
    collapse_ratio: float = opt(0.4, "collapse: diversity of samples from a fixed z below this fraction of the data's",
                                     interval=(0, 1, False, False))
    overfit_r_t: float = opt(0.9, "overfitting: r_t = E[sign D(real)] at or above this (D scores nearly every "
                                  "training image real)", interval=(0, 1, False, True))
    divergence_factor: float = opt(20.0, "instability: a loss's magnitude above this multiple of its early level",
                                         interval=(1, None, False, False))
    # Evaluation during training
    eval_every: int | None = opt(None, "steps between evaluations (domain FID, class coverage); None = never")
    eval_samples: int = opt(1000, "generated samples per evaluation")
    eval_inception: bool = opt(False, "also Inception FID at each evaluation (slow on a CPU: minutes per 1,000 "
                                      "samples)")
    keep_best: str | None = opt(None, "keep the weights with the lowest --eval-every value of this metric as "
                                      "checkpoints/best.safetensors, beside the last ones (gankit sample --best)",
                                choices=("domain_fid", "fid"))
    # Fine-tuning
    init_from: str | None = opt(None, "start from another run's G, D and EMA weights (its newest checkpoint) and train "
                                      "them on this data; the networks' shapes must match, except the number of "
                                      "classes (new classes start as the mean of the pretrained ones)")
    freeze_d: int = opt(0, "with --init-from: keep D's first K blocks, those that see the highest resolutions, as "
                           "trained (FreezeD, Mo et al. 2020)")
# fmt: on


CHOICES = {f.name: f.metadata["choices"] for f in dataclasses.fields(TrainConfig) if "choices" in f.metadata}
FLOAT_RANGES = {f.name: f.metadata["interval"] for f in dataclasses.fields(TrainConfig) if "interval" in f.metadata}


def field_help() -> dict[str, str]:
    """Each field's --help text."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}


def field_types() -> dict[str, tuple[type, bool]]:
    """name -> (base type, accepts None)."""
    hints = get_type_hints(TrainConfig)
    out = {}
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        args = [a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)]
        out[f.name] = (args[0], len(getattr(hint, "__args__", ())) > 1)
    return out


def _coerce(name: str, value: Any) -> Any:
    base, nullable = field_types()[name]
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"config key '{name}' cannot be null")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key '{name}' must be true or false, got {value!r}")
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if base is str and isinstance(value, str):
        return value
    if base in (int, float) and isinstance(value, str):
        try:
            return base(value)
        except ValueError:
            pass
    if isinstance(value, base) and not isinstance(value, bool):
        return value
    raise ConfigError(f"config key '{name}' must be {base.__name__}, got {value!r}")


def from_dict(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A config from `base` (or the defaults) with `values` applied; unknown keys and wrong types are errors."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    preset = values.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        base = dataclasses.replace(base or TrainConfig(), **PRESETS[preset])
    cfg = dataclasses.replace(base or TrainConfig(), **{k: _coerce(k, v) for k, v in values.items()})
    validate(cfg)
    return cfg


# What may change when a run continues: anything else would not be the same run.
RESUMABLE = {
    "steps",
    "max_minutes",
    "log_every",
    "sample_every",
    "checkpoint_every",
    "keep_checkpoints",
    "threads",
    "device",
    "sync_batchnorm",
    "eval_every",
    "eval_samples",
    "eval_inception",
    "diagnostics",
    "saturation_d_fake",
    "collapse_ratio",
    "overfit_r_t",
    "divergence_factor",
}


def for_resume(run_dir: str | Path, values: dict[str, Any]) -> TrainConfig:
    """The config to continue the run in `run_dir` with: its saved config.json, with `values` applied where they
    change only RESUMABLE settings; a value that would change anything else is refused. `gankit train --resume` and
    `gankit.train(resume=True)` / `gankit.resume` both come here."""
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.json"
    if not saved_path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.json)")
    saved = from_dict({**load_file(saved_path), "out": str(run_dir)})
    values = dict(values)
    out = values.pop("out", None)
    if out is not None and Path(out).resolve() != run_dir.resolve():
        raise ConfigError(f"a resumed run stays in its folder: --out {out} is not {run_dir}")
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    changed = sorted(k for k, v in values.items() if k not in RESUMABLE and _coerce(k, v) != getattr(saved, k))
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming; only {', '.join(sorted(RESUMABLE))} may change"
        )
    return from_dict(values, base=saved)


def load_file(path: str | Path) -> dict[str, Any]:
    """The key/value pairs of a JSON or TOML config file (a run's config.json included)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(
            f"config file {path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {e}"
        ) from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a table of keys and values")
    return values


def save(cfg: TrainConfig, path: Path) -> None:
    write_json(path, dataclasses.asdict(cfg))


def _interval(low, high, low_in, high_in) -> str:
    return f"{'[' if low_in else '('}{low}, {'∞' if high is None else high}{']' if high_in else ')'}"


def validate(cfg: TrainConfig) -> None:
    for name, options in CHOICES.items():
        value = getattr(cfg, name)
        if value is not None and value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    positive = [
        "n_critic",
        "steps",
        "log_every",
        "sample_every",
        "checkpoint_every",
        "keep_checkpoints",
        "grid_size",
        "depth",
        "eval_samples",
        "maxout",
        "pack",
    ]
    optional = ["batch_size", "latent_dim", "width_g", "width_d", "threads", "eval_every", "depth_g"]
    for name in positive + optional:
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    for name, (low, high, low_in, high_in) in FLOAT_RANGES.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        inside = (value >= low if low_in else value > low) and (
            high is None or (value <= high if high_in else value < high)
        )
        if not (math.isfinite(value) and inside):  # NaN compares False both ways: caught by isfinite
            null = " or null" if field_types()[name][1] else ""
            raise ConfigError(f"{name} must be a number in {_interval(low, high, low_in, high_in)}{null}, got {value}")
    for name in ("freeze_d", "unroll"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be 0 or more, got {getattr(cfg, name)}")
    try:
        parse_policy(cfg.augment)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    parse_background(cfg.background)
