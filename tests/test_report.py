"""The report page: made from the run folder alone, shows the run's real numbers; checked in headless Chromium."""

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import tiny_extractor
from PIL import Image

from gankit.cli import main
from gankit.metrics import inception
from gankit.training.session import train

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture
def image_run(tmp_path, tiny_dcgan, monkeypatch, capsys):
    """A finished image run with an evaluation (stand-in extractor) and its report."""
    run = train(out=str(tmp_path / "img"), steps=40, show_progress=False, **dict(tiny_dcgan, sample_every=10))
    monkeypatch.setattr(inception, "load_inception", lambda path=None, fast=False, resize="bilinear": tiny_extractor())
    assert main(["eval", str(run), "--n", "20", "--metrics", "fid,kid"]) == 0
    assert main(["report", str(run)]) == 0
    capsys.readouterr()
    return run


def test_image_run_report_shows_its_numbers_samples_and_walks(image_run):
    text = (image_run / "report.html").read_text()
    fid = json.loads((image_run / "eval.json").read_text())["metrics"]["fid"]
    assert f"{fid:.4g}" in text and "finished: 40 of 40 steps" in text
    assert text.count("<svg") >= 4  # losses, D outputs, gradient norm, speed
    assert "samples/step_0000040.png" in text and "interpolation.png" in text and "training.gif" in text
    assert Image.open(image_run / "training.gif").n_frames == 4
    assert Image.open(image_run / "interpolation.png").size[0] > Image.open(image_run / "interpolation.png").size[1]
    assert not re.search(r"""(src|href)=["']?(https?:)?//|url\(\s*["']?(https?:)?//""", text)  # nothing fetched


def test_report_of_a_crashed_run_and_a_comparison(tmp_path, tiny_toy):
    a = train(out=str(tmp_path / "a"), steps=60, loss="ns", show_progress=False, **dict(tiny_toy, sample_every=20))
    b = train(out=str(tmp_path / "b"), steps=60, loss="hinge", show_progress=False, **dict(tiny_toy, sample_every=20))
    with open(b / "metrics.jsonl", "a") as f:
        f.write('{"step": 70, "loss_d": 0.')  # a crash mid-line
    for p in (b / "checkpoints").iterdir():
        p.unlink()
    assert main(["report", str(b)]) == 0  # no checkpoint left, a cut line: still a page
    text = (b / "report.html").read_text()
    assert "finished: 60 of 60 steps" in text and "interpolation.png" not in text
    out = tmp_path / "cmp" / "ab.html"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    text = out.read_text()
    assert "<td>a</td>" in text and "<td>b</td>" in text and "../a/samples/step_0000060.png" in text
    assert "JSD" in text and "Modes covered" in text  # the Bayes-lab curves of toy runs
    timed = train(out=str(tmp_path / "timed"), steps=10**6, max_minutes=0.002, show_progress=False, **tiny_toy)
    assert main(["report", str(timed)]) == 0
    assert re.search(r"stopped by --max-minutes 0.002: [\d,]+ of 1,000,000 steps", (timed / "report.html").read_text())


def test_lab_trains_each_loss_with_one_seed_and_writes_one_page(tmp_path):
    code = main(["lab", "--losses", "minimax,hinge", "--steps", "40", "--out", str(tmp_path / "lab"), "--quiet"])
    assert code == 0
    for loss in ("minimax", "hinge"):
        cfg = json.loads((tmp_path / "lab" / loss / "config.json").read_text())
        assert cfg["seed"] == 0 and cfg["steps"] == 40 and cfg["loss"] == loss
        assert (tmp_path / "lab" / loss / "report.html").exists()
    page = (tmp_path / "lab" / "index.html").read_text()
    assert "<td>minimax</td>" in page and "<td>hinge</td>" in page
    frame = Image.open(tmp_path / "lab" / "minimax" / "samples" / "step_0000040.png")
    assert frame.width > 1.9 * frame.height  # σ(D) beside D*


def test_lab_gives_each_loss_its_recommended_settings_unless_told_otherwise(tmp_path):
    from gankit.tools.lab import RECOMMENDED

    out = tmp_path / "lab"
    assert main(["lab", "--losses", "ns,hinge", "--steps", "5", "--out", str(out), "--quiet"]) == 0
    for loss in ("ns", "hinge"):
        cfg = json.loads((out / loss / "config.json").read_text())
        assert {k: cfg[k] for k in RECOMMENDED[loss]} == RECOMMENDED[loss]
    assert RECOMMENDED["hinge"]["n_critic"] == 5 and RECOMMENDED["ns"]["n_critic"] == 1
    fixed = ["--set", "n_critic=2", "--set", "lr-g=1e-3", "--out", str(tmp_path / "fixed")]
    assert main(["lab", "--losses", "ns,hinge", "--steps", "5", "--quiet", *fixed]) == 0
    for loss in ("ns", "hinge"):
        cfg = json.loads((tmp_path / "fixed" / loss / "config.json").read_text())
        assert (cfg["n_critic"], cfg["lr_g"]) == (2, 1e-3)
    assert main(["lab", "--set", "n_critics=2", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


# --- in a real browser ----------------------------------------------------------------------------------------------


def chromium(url: str, screenshot: Path) -> tuple[str, str]:
    """(DOM after the page's scripts ran, the browser's log) of a headless Chromium visit; saves a screenshot."""
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--allow-file-access-from-files",
        "--virtual-time-budget=5000",
        "--window-size=1280,2400",
    ]
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=120)
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout, shot.stderr + dom.stderr


def console_errors(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if re.search(r"CONSOLE.*(error|missing image)|Uncaught|Failed to load resource|ERR_FILE_NOT_FOUND", line)
    ]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed here (.ci/run installs Debian's chromium)")
def test_report_in_headless_chromium_over_file_and_http(image_run, tmp_path):
    fid = json.loads((image_run / "eval.json").read_text())["metrics"]["fid"]
    n_images = (image_run / "report.html").read_text().count("<img")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(image_run.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        urls = {
            "file": (image_run / "report.html").resolve().as_uri(),
            "http": f"http://127.0.0.1:{server.server_address[1]}/{image_run.name}/report.html",
        }
        for kind, url in urls.items():
            shot = tmp_path / f"report-{kind}.png"
            dom, log = chromium(url, shot)
            assert console_errors(log) == [], kind
            assert 'data-images-missing="0"' in dom and f'data-images-loaded="{n_images}"' in dom, kind
            assert f"{fid:.4g}" in dom and "finished: 40 of 40 steps" in dom
            assert Image.open(shot).size[0] == 1280
    finally:
        server.shutdown()
