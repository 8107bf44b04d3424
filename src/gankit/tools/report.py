"""`gankit report RUN [RUN ...]`: one self-contained HTML page, made from a run folder's files alone — so it works
for a run that crashed or is still going. Charts are inline SVG (matplotlib); sample grids are the PNGs beside the
page; nothing is fetched from the network. With several runs: one comparison table and overlaid curves.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gankit.errors import CheckpointError, GankitError
from gankit.files import atomic_write, read_jsonl, write_text
from gankit.runs import list_checkpoints

# (title, metrics.jsonl keys, y label, log scale)
CURVES = [
    ("Losses", ("loss_d", "loss_g"), "loss", False),
    ("D's mean output on real and generated data", ("d_real", "d_fake"), "σ(D)", False),
    ("G's gradient norm", ("grad_norm_g",), "‖∇θ_G‖", True),
    ("D memorising: r_t = E[sign D(real)], and ADA's augmentation probability p", ("r_t", "ada_p"), "", False),
    ("D's penalties", ("gradient_penalty", "r1_penalty", "lecam_penalty"), "penalty", True),
    ("Inception FID (lower is better)", ("fid",), "FID", True),
    ("Domain FID (lower is better)", ("domain_fid",), "domain FID", True),
    ("Class coverage", ("classes_hit",), "classes hit", False),
    ("JSD(p_data ‖ p_g), estimated through D*", ("jsd",), "nats", False),
    ("Modes covered", ("modes_covered",), "modes", False),
    ("Trained D vs Bayes-optimal D*", ("d_gap",), "mean |σ(D) − D*|", False),
    ("Training speed", ("img_per_s",), "images/s", False),
]
DIAGNOSTIC_COLOURS = {
    "saturation": "#d62728",
    "collapse": "#9467bd",
    "overfitting": "#8c564b",
    "instability": "#ff7f0e",
    "non_finite": "#000000",
}


@dataclass
class Run:
    path: Path
    config: dict
    records: list[dict]
    diagnostics: list[dict]
    samples: list[tuple[int, Path]]
    evaluation: dict | None

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def series(self, key: str) -> tuple[list[int], list[float]]:
        by_step = {}  # a resumed run logs its steps since the checkpoint again: the later line wins
        for r in self.records:
            if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]):
                by_step[r["step"]] = r[key]
        steps = sorted(by_step)
        return steps, [by_step[s] for s in steps]

    @property
    def last_step(self) -> int:
        return max((r["step"] for r in self.records), default=0)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} is not a run folder (no config.json)")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}/config.json is unreadable: {e}") from None
    samples = sorted(
        (int(p.stem.split("_")[1]), p) for p in (path / "samples").glob("step_*.png") if p.stem.split("_")[1].isdigit()
    )
    evaluation = None
    if (path / "eval.json").is_file():
        try:
            evaluation = json.loads((path / "eval.json").read_text())
        except json.JSONDecodeError:
            evaluation = None  # being rewritten right now, or damaged: the page says there is none
    return Run(
        path, config, read_jsonl(path / "metrics.jsonl"), read_jsonl(path / "diagnostics.jsonl"), samples, evaluation
    )


# --- pieces of the page -------------------------------------------------------------------------------------------


def chart(
    title: str,
    lines: list[tuple[str, list[int], list[float]]],
    ylabel: str,
    log: bool = False,
    markers: list[dict] = (),
) -> str:
    """An inline SVG line chart; `markers` (diagnostics records) become vertical lines where a finding started."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.0), dpi=100, layout="constrained")
    ax = fig.subplots()
    for label, steps, values in lines:
        ax.plot(steps, values, label=label, linewidth=1.4, marker="o" if len(steps) < 12 else None, markersize=3)
    shown = set()
    for record in markers:
        if record.get("status") in ("started", "stopped"):
            kind = record["kind"]
            ax.axvline(
                record["step"],
                color=DIAGNOSTIC_COLOURS.get(kind, "grey"),
                linestyle="--",
                linewidth=1,
                label=None if kind in shown else f"diagnostic: {kind}",
            )
            shown.add(kind)
    if log and all(v > 0 for _, _, values in lines for v in values):
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(lines) > 1 or shown:
        ax.legend(fontsize=8)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def run_status(run: Run) -> str:
    total = run.config.get("steps")
    if total and run.last_step >= total:
        return f"finished: {run.last_step:,} of {total:,} steps"
    budget = run.config.get("max_minutes")
    _, times = run.series("time")  # training time, as the loop's --max-minutes check counts it
    if total and budget and times and times[-1] >= 60 * budget:
        return f"stopped by --max-minutes {budget:g}: {run.last_step:,} of {total:,} steps"
    stopped = (
        " — training stopped early (see the diagnostics)"
        if any(d["kind"] == "non_finite" for d in run.diagnostics)
        else " — interrupted, crashed or still running"
    )
    return f"at step {run.last_step:,} of {total:,}{stopped}" if total else f"at step {run.last_step:,}"


def table(rows: list[list], header: list[str] | None = None, cls: str = "") -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}">{head}{body}</table>'


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else html.escape(str(value))
    return html.escape(str(value))


def evaluation_section(run: Run) -> str:
    if not run.evaluation:
        return "<p>No evaluation yet: <code>gankit eval " + html.escape(str(run.path)) + "</code> writes one.</p>"
    e = run.evaluation
    rows = [[name, value] for name, value in e.get("metrics", {}).items()]
    protocol = html.escape(json.dumps(e.get("protocol", {}), indent=2))
    return (
        f"<p>Step {e.get('step')}, weights {html.escape(str(e.get('weights', 'G')))}.</p>"
        + table(rows, ["metric", "value"], "eval")
        + f"<details><summary>protocol</summary><pre>{protocol}</pre></details>"
    )


def diagnostics_section(run: Run) -> str:
    if not run.diagnostics:
        return "<p>No saturation, mode collapse, memorising D or instability was detected.</p>"
    rows = [[d["step"], d["kind"], d["status"], d.get("message", ""), d.get("remedy", "")] for d in run.diagnostics]
    return table(rows, ["step", "kind", "status", "what was seen", "what to try"], "diagnostics")


def charts_for(runs: list[Run]) -> list[str]:
    out = []
    for title, keys, ylabel, log in CURVES:
        lines = []
        for run in runs:
            for key in keys:
                steps, values = run.series(key)
                if steps:
                    label = key if len(runs) == 1 else (f"{run.name}: {key}" if len(keys) > 1 else run.name)
                    lines.append((label, steps, values))
        if lines:
            markers = runs[0].diagnostics if len(runs) == 1 else []
            out.append(chart(title, lines, ylabel, log, markers))
    return out


def write_gif(run: Run, max_width: int = 480) -> Path | None:
    """RUN/training.gif: the sample grids over training as an animation (needs two grids or more)."""
    if len(run.samples) < 2:
        return None
    frames = []
    for _, path in run.samples:
        try:
            frame = Image.open(path).convert("RGB")
        except OSError:
            continue  # a grid being written right now
        if frame.width > max_width:
            frame = frame.resize((max_width, round(frame.height * max_width / frame.width)))
        frames.append(frame.convert("P", palette=Image.ADAPTIVE))
    if len(frames) < 2:
        return None
    out = run.path / "training.gif"
    atomic_write(
        out,
        lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=400, loop=0),
    )
    return out


def write_interpolation(run: Run) -> Path | None:
    """RUN/interpolation.png: latent walks (slerp) from the latest checkpoint of an image run; None without one."""
    if run.config.get("model") == "mlp" or not list_checkpoints(run.path):
        return None
    from gankit.images import grid, save_png, to_uint8
    from gankit.runs import load_generator
    from gankit.tools.sample import latent_walk

    try:
        G, spec, _ = load_generator(run.path, ema=run.config.get("ema") is not None)
    except GankitError:
        return None
    out = run.path / "interpolation.png"
    save_png(grid(to_uint8(latent_walk(G, spec, rows=6, steps=10, spherical=True)), nrow=10), out)
    return out


def relative(path: Path, page: Path) -> str:
    """The URL of `path` from the page's folder (percent-encoded: a folder may be called "run #3")."""
    return urllib.parse.quote(Path(os.path.relpath(path, page.parent)).as_posix())


def image_tag(path: Path, page: Path, alt: str, cls: str = "") -> str:
    """An <img> of a file beside the page, shown 2–3× when small (28×28 grids are tiny), never wider than 800 px."""
    try:
        width = Image.open(path).width
    except OSError:
        width = 0  # the browser will say it is missing
    shown = f' width="{min(width * max(1, min(3, 600 // max(width, 1))), 800)}"' if width else ""
    return f'<img class="{cls}" src="{html.escape(relative(path, page))}" alt="{html.escape(alt)}"{shown}>'


def samples_section(run: Run, page: Path) -> str:
    if not run.samples:
        return "<p>No sample grid yet.</p>"
    frames = [{"step": step, "src": relative(path, page)} for step, path in run.samples]
    last = frames[-1]
    return (
        f'<div class="slider"><input type="range" min="0" max="{len(frames) - 1}" value="{len(frames) - 1}" '
        f'data-frames="{html.escape(json.dumps(frames))}" aria-label="training step">'
        f' <span class="step">step {last["step"]:,}</span></div>'
        + image_tag(run.samples[-1][1], page, f"samples at step {last['step']}", "frame")
    )


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1400px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f4f4f4; } .charts { display: flex; flex-wrap: wrap; gap: 8px; }
.charts svg { max-width: 100%; height: auto; }
img { max-width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #ddd; }
.status { color: #555; } .runs { display: flex; flex-wrap: wrap; gap: 16px; } .runs figure { margin: 0; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; }
"""

SCRIPT = """
for (const box of document.querySelectorAll('.slider')) {
  const input = box.querySelector('input'), label = box.querySelector('.step');
  const frames = JSON.parse(input.dataset.frames), image = box.nextElementSibling;
  input.addEventListener('input', () => {
    const f = frames[Number(input.value)];
    image.src = f.src; image.alt = 'samples at step ' + f.step; label.textContent = 'step ' + f.step.toLocaleString();
  });
}
window.addEventListener('load', () => {
  let missing = 0;
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) {
      missing += 1;
      console.error('missing image: ' + img.getAttribute('src'));
    }
  }
  document.body.dataset.imagesLoaded = String(document.images.length - missing);
  document.body.dataset.imagesMissing = String(missing);
});
"""


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<style>{STYLE}</style></head>"
        f"<body>{body}<script>{SCRIPT}</script></body></html>\n"
    )


def single_report(run: Run, out: Path) -> str:
    gif, walk = write_gif(run), write_interpolation(run)
    toy = run.config.get("model") == "mlp"
    parts = [
        f"<h1>gankit run {html.escape(run.name)}</h1>",
        f'<p class="status">{html.escape(str(run.config.get("model")))}/{html.escape(str(run.config.get("loss")))} '
        f"on {html.escape(str(run.config.get('data')))} — {html.escape(run_status(run))}</p>",
        "<h2>Evaluation</h2>",
        evaluation_section(run),
        "<h2>Diagnostics</h2>",
        diagnostics_section(run),
        "<h2>Training curves</h2>",
        '<div class="charts">' + "".join(charts_for([run])) + "</div>",
        "<h2>"
        + (
            "The Bayes view: σ(D) beside D* = p_data/(p_data+p_g), real (grey) and generated (green) points"
            if toy
            else "Samples from a fixed z over training"
        )
        + "</h2>",
        samples_section(run, out),
    ]
    if gif:
        parts += ["<h2>Animation</h2>", image_tag(gif, out, "training animation")]
    if walk:
        parts += [
            "<h2>Latent walks (slerp between random z)</h2>",
            "<p>Smooth transitions between unrelated samples are the DCGAN paper's evidence that G has not "
            "memorised its training images.</p>",
            image_tag(walk, out, "latent walks"),
        ]
    config_rows = [[k, v] for k, v in run.config.items()]
    parts += ["<h2>Configuration</h2>", table(config_rows, ["setting", "value"], "config")]
    return page(f"gankit report: {run.name}", "".join(parts))


def comparison_report(runs: list[Run], out: Path) -> str:
    metric_names = sorted({k for run in runs if run.evaluation for k in run.evaluation.get("metrics", {})})
    rows = []
    for run in runs:
        last = next((r for r in reversed(run.records) if "loss_d" in r), {})
        metrics = (run.evaluation or {}).get("metrics", {})
        rows.append(
            [
                run.name,
                run.config.get("loss"),
                run.last_step,
                last.get("loss_d", ""),
                last.get("loss_g", ""),
                len([d for d in run.diagnostics if d["status"] != "cleared"]),
            ]
            + [metrics.get(m, "") for m in metric_names]
        )
    header = ["run", "loss", "step", "last loss_d", "last loss_g", "diagnostics"] + metric_names
    figures = "".join(
        f"<figure>{image_tag(run.samples[-1][1], out, run.name)}"
        f"<figcaption>{html.escape(run.name)}, step {run.samples[-1][0]:,}</figcaption></figure>"
        for run in runs
        if run.samples
    )
    diagnostics = "".join(f"<h3>{html.escape(run.name)}</h3>{diagnostics_section(run)}" for run in runs)
    body = (
        "<h1>gankit: "
        + html.escape(", ".join(run.name for run in runs))
        + "</h1>"
        + "<h2>Summary</h2>"
        + table(rows, header, "summary")
        + "<h2>Curves</h2>"
        + '<div class="charts">'
        + "".join(charts_for(runs))
        + "</div>"
        + "<h2>Last samples</h2>"
        + f'<div class="runs">{figures}</div>'
        + "<h2>Diagnostics</h2>"
        + diagnostics
    )
    return page("gankit comparison", body)


def write_report(paths: list[str | Path], out: str | Path | None = None) -> Path:
    """The page for one run (default RUN/report.html) or a comparison of several (default ./compare.html)."""
    runs = [load_run(p) for p in paths]
    out = Path(out) if out else (runs[0].path / "report.html" if len(runs) == 1 else Path("compare.html"))
    out.parent.mkdir(parents=True, exist_ok=True)
    text = single_report(runs[0], out) if len(runs) == 1 else comparison_report(runs, out)
    write_text(out, text)
    return out
