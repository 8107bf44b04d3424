"""Folders of pictures as users have them: mixed sizes, aspects and modes, stray files, a few broken images."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.data import load_images
from gankit.data.folders import FolderOptions, choose_side
from gankit.errors import ConfigError, DataError
from gankit.training.session import train


def messy_folder(root):
    """32×32 RGB, a 48×48 RGBA with garbage colour under transparent pixels, a 40×60 grey photo, and stray files."""
    root.mkdir(parents=True)
    Image.new("RGB", (32, 32), (10, 200, 30)).save(root / "a.png")
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[..., :3] = (255, 0, 255)  # what a transparent pixel stores is arbitrary
    rgba[12:36, 12:36] = (0, 0, 255, 255)  # an opaque blue square
    Image.fromarray(rgba, "RGBA").save(root / "b.png")
    Image.new("L", (40, 60), 90).save(root / "c.jpg")
    (root / "notes.txt").write_text("taken in 2019")
    (root / "Thumbs.db").write_bytes(b"\0" * 10)
    return root


def test_a_messy_folder_reads_as_one_tensor_and_says_what_was_done(tmp_path):
    data = load_images(str(messy_folder(tmp_path / "pics")))
    assert data.x.shape == (3, 3, 32, 32) and choose_side([(32, 32), (48, 48), (40, 60)]) == 32
    assert data.x[1, :, 0, 0].tolist() == [255, 255, 255]  # transparent: the white background, not magenta
    assert data.x[1, :, 16, 16].tolist() == [0, 0, 255]  # the opaque square, kept
    assert data.x[2, :, 16, 16].tolist() == [90, 90, 90]  # the grey photo, in colour like the rest
    notes = " ".join(data.notes)
    assert "2 files that are not images skipped" in notes and "images of 3 sizes" in notes
    assert "centre-cropped to square and resized to 32×32" in notes and notes.endswith("colour")


@pytest.mark.parametrize("fit, corner", [("crop", 90), ("pad", 0), ("stretch", 90)])
def test_fit_crop_pad_or_stretch(tmp_path, fit, corner):
    root = tmp_path / "tall"
    root.mkdir()
    for i in range(2):
        Image.new("L", (20, 40), 90).save(root / f"{i}.png")
    data = load_images(str(root), folder=FolderOptions(fit=fit, background="black", side=16))
    assert data.x.shape == (2, 1, 16, 16)  # all grey: one channel
    assert data.x[0, 0, 8, 0].item() == corner  # pad letterboxes onto the background (black); the others fill it


def test_a_few_unreadable_images_are_skipped_and_more_are_refused(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(100):
        Image.new("RGB", (8, 8), (i, i, i)).save(root / f"{i:03d}.png")
    (root / "bad1.png").write_bytes(b"\x89PNG not really")
    data = load_images(str(root))  # 1 of 101: within --max-bad 0.01
    assert data.x.shape[0] == 100 and "1 unreadable images skipped (bad1.png:" in " ".join(data.notes)
    (root / "bad2.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DataError, match=r"2 of 102 images .* are unreadable, more than --max-bad 0.01 allows: bad1"):
        load_images(str(root))
    assert load_images(str(root), folder=FolderOptions(max_bad=0.05)).x.shape[0] == 100


def test_training_on_a_messy_folder_states_it_and_eval_reads_it_the_same_way(tmp_path, capsys, monkeypatch):
    from conftest import tiny_extractor

    from gankit.cli import main
    from gankit.metrics import inception

    root = messy_folder(tmp_path / "pics")
    for i in range(13):  # enough images for a batch
        Image.new("RGB", (30 + i, 36), (i * 10, 50, 100)).save(root / f"x{i}.png")
    run = train(
        data=str(root),
        steps=2,
        width_g=8,
        width_d=8,
        batch_size=8,
        grid_size=4,
        fit="pad",
        background="0,0,0",
        out=str(tmp_path / "r"),
        show_progress=False,
    )
    err = capsys.readouterr().err
    assert "on pics (16 images 3×32×32, no classes, 2 files that are not images skipped" in err
    assert "padded to square and resized to 32×32, colour, too few images to hold 5% out" in err
    monkeypatch.setattr(inception, "load_inception", lambda path=None, fast=False, resize="bilinear": tiny_extractor())
    assert main(["eval", str(run), "--metrics", "fid", "--n", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"]["reference"] == {
        "data": "pics",
        "split": "all",
        "n_real": 16,
    }


def test_bad_folder_settings_are_one_sentence():
    from gankit.config import from_dict

    with pytest.raises(ConfigError, match="background must be white, black or R,G,B"):
        from_dict({"background": "300,0,0"})
    with pytest.raises(ConfigError, match="fit must be one of crop, pad, stretch"):
        from_dict({"fit": "zoom"})


def test_mirror_flips_about_half_the_real_images_the_same_way_on_resume(tmp_path, tiny_images, monkeypatch):
    from gankit.training import engine

    seen = []
    real_d_step = engine.d_step

    def recording(D, opt_d, game, precision, x, *rest, **kw):
        seen.append(x.clone())
        return real_d_step(D, opt_d, game, precision, x, *rest, **kw)

    monkeypatch.setattr(engine, "d_step", recording)
    common = dict(data=str(tiny_images), width_g=8, width_d=8, batch_size=32, grid_size=4, show_progress=False)
    train(out=str(tmp_path / "plain"), steps=2, **common)
    train(out=str(tmp_path / "mirror"), steps=2, mirror=True, **common)
    plain, mirrored = seen[:2], seen[2:]
    for p, m in zip(plain, mirrored):
        same = (p == m).flatten(1).all(1)
        flipped = (p.flip(-1) == m).flatten(1).all(1)
        assert (same | flipped).all() and 8 <= int((flipped & ~same).sum()) <= 24  # about half of 32 flipped
    with pytest.raises(ConfigError, match="--mirror flips images"):
        train(data="ring8", mirror=True, steps=1, out=str(tmp_path / "toy"), show_progress=False)


def test_a_folder_or_npz_holds_out_the_same_images_for_every_run(tmp_path, tiny_images, capsys):
    from gankit.data.sources import held_out_part

    options = FolderOptions(holdout=0.05)
    train_part = load_images(str(tiny_images), "train", folder=options)
    held = load_images(str(tiny_images), "test", folder=options)
    whole = load_images(str(tiny_images))
    assert (train_part.split, held.split, whole.split) == ("train", "held-out", "all")
    assert held.x.shape[0] == 13 and train_part.x.shape[0] == 243  # round(0.05 · 256)
    rows = sorted(tuple(r.flatten().tolist()) for r in whole.x)
    parts = sorted(tuple(r.flatten().tolist()) for r in torch.cat([train_part.x, held.x]))
    assert parts == rows  # disjoint and complete: every image in exactly one part
    assert "5% held out for evaluation (13 images)" in train_part.notes
    few = held_out_part(load_images(str(tiny_images)), 0.01, "test")  # 3 images: too few to measure anything
    assert few.split == "all" and "too few images to hold 1% out" in few.notes[-1]
    run = train(
        data=str(tiny_images),
        steps=1,
        width_g=8,
        width_d=8,
        batch_size=32,
        grid_size=4,
        seed=7,
        out=str(tmp_path / "r"),
        show_progress=False,
    )
    assert json.loads((run / "config.json").read_text())["holdout"] == 0.05  # recorded: the run's reference is known
    assert "243 images 1×16×16, 2 classes, 5% held out for evaluation (13 images))" in capsys.readouterr().err


def test_data_check_reports_a_folder_one_finding_a_line(tmp_path, capsys):
    from gankit.cli import main

    root = messy_folder(tmp_path / "pics")
    Image.new("RGB", (32, 32), (10, 200, 30)).save(root / "a_copy.png")  # the same picture as a.png
    Image.new("RGB", (64, 64), (10, 200, 30)).save(root / "a_big.png")  # the same picture, another size
    (root / "broken.png").write_bytes(b"\x89PNG no")
    sheet = tmp_path / "sheet.png"
    assert main(["data", "check", str(root), "--sheet", str(sheet), "--max-bad", "0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    report = "\n".join(lines)
    assert all(line.startswith("gankit data: ") for line in lines)
    assert "images: 6; 2 other files, skipped when training" in report
    assert "unreadable: 1 (broken.png:" in report and "skipped when training" in report
    assert "classes: none" in report and "sizes: 4 distinct (32×32 ×2," in report
    assert "transparency: 1 images, composited onto --background white" in report
    assert "exact duplicates: 1 groups (a.png = a_copy.png)" in report
    assert (
        "near duplicates (perceptual hashes ≤ 4 of 64 bits apart): 1 groups (a.png = a_big.png = a_copy.png)" in report
    )
    assert "recommended: --resolution 32 --fit crop" in report
    assert Image.open(sheet).size == (8 * 34 + 2, 34 + 2)  # the 5 readable images, 8 to a row, at 32 px
    assert main(["data", "check", str(root), "--sheet", "none"]) == 2  # 1 of 6 unreadable: above the 1% default
    assert "more than --max-bad 0.01: training would stop" in capsys.readouterr().out


def test_a_folder_is_decoded_once_and_read_from_the_cache_until_it_changes(tmp_path, monkeypatch):
    import os

    from gankit.data import folders

    root = messy_folder(tmp_path / "pics")
    first = load_images(str(root))
    cached = list((tmp_path / "cache" / "gankit" / "folders").glob("pics-*.pt"))
    assert len(cached) == 1  # $XDG_CACHE_HOME points into tmp_path in tests

    def no_decoding(*args):  # seen by the reader as an unreadable image
        raise OSError("decoded although the folder had not changed")

    real_decode = folders.decode
    monkeypatch.setattr(folders, "decode", no_decoding)
    again = load_images(str(root))
    assert torch.equal(again.x, first.x) and again.notes == first.notes
    os.utime(root / "a.png", ns=(1, 1))  # touched: decoded again (here by the stand-in that fails)
    with pytest.raises(DataError, match="3 of 3 images .* are unreadable"):
        load_images(str(root))
    monkeypatch.setattr(folders, "decode", real_decode)
    assert load_images(str(root), folder=FolderOptions(fit="pad")).x.shape == first.x.shape  # other settings: decoded
    assert len(list((tmp_path / "cache" / "gankit" / "folders").glob("pics-*.pt"))) == 2  # the first, and pad's


def test_worker_processes_decode_a_folder_exactly_as_one_process_does(tmp_path, monkeypatch, pin_host):
    from gankit.data import folders

    root = tmp_path / "classes"
    rng = np.random.default_rng(0)
    for i in range(14):  # two classes, mixed sizes and modes, one truncated file the header still reads
        size = (int(rng.integers(20, 70)), int(rng.integers(20, 70)))
        mode = "RGBA" if i % 3 == 0 else "RGB"
        pixels = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode).save(root / f"c{i % 2}" / f"{i:02d}.png")
    whole = (root / "c1" / "03.png").read_bytes()
    (root / "c1" / "03.png").write_bytes(whole[: len(whole) // 2])
    monkeypatch.setattr(folders, "CHUNK", 2)  # 7 chunks, shared by 2 processes
    options = FolderOptions(max_bad=0.1)
    alone = folders.read_image_folder(root, options, workers=1)
    shared = folders.read_image_folder(root, options, workers=2)
    assert torch.equal(shared[0], alone[0]) and torch.equal(shared[1], alone[1]) and shared[2:] == alone[2:]
    assert alone[0].shape == (13, 3, 32, 32) and "1 unreadable images skipped (c1/03.png" in " ".join(alone[3])
    pin_host(cores=2)  # what the loader asks: the host's cores
    assert torch.equal(load_images(str(root), folder=options).x, alone[0])


def test_a_header_that_says_grey_over_colour_pixels_widens_the_tensor(tmp_path, monkeypatch):
    from gankit.data import folders

    root = messy_folder(tmp_path / "pics")
    honest = folders.read_image_folder(root)
    monkeypatch.setattr(folders, "probe", lambda path: (*Image.open(path).size, "L"))  # every header says grey
    fooled = folders.read_image_folder(root)
    assert torch.equal(fooled[0], honest[0]) and fooled[3] == honest[3]


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_that_still_covers_the_side(tmp_path):
    from gankit.data.folders import decode, fit

    yy, xx = np.mgrid[0:600, 0:800]
    smooth = np.stack([xx * 255 // 800, yy * 255 // 600, (xx + yy) * 255 // 1400], axis=2).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "photo.jpg", quality=95)
    reduced, full = decode(tmp_path / "photo.jpg", (255, 255, 255), side=64), decode(tmp_path / "photo.jpg", (0,) * 3)
    assert reduced.shape == (75, 100, 3) and full.shape == (600, 800, 3)  # 1/8 scale: still ≥ 64 on both sides
    difference = np.abs(fit(reduced, 64, "crop", (0,) * 3).astype(int) - fit(full, 64, "crop", (0,) * 3))
    assert difference.mean() < 1.5


def test_the_training_part_is_taken_in_place_and_equals_indexing():
    from gankit.data.sources import take_in_place

    x = torch.arange(50 * 3).reshape(50, 3)
    idx = torch.tensor([0, 2, 3, 7, 8, 9, 20, 33, 34, 49])
    expected = x[idx].clone()
    taken = take_in_place(x, idx, rows=3)
    assert torch.equal(taken, expected) and taken.data_ptr() == x.data_ptr()  # the same memory, no copy


def test_near_duplicates_are_hashes_within_the_radius_found_without_comparing_every_pair():
    from pathlib import Path

    from gankit.tools.datacheck import near_groups

    rng = np.random.default_rng(0)
    hashes = {Path(f"{i}.png"): int(h) for i, h in enumerate(rng.integers(0, 2**63, 300, dtype=np.int64))}
    base = hashes[Path("0.png")]
    hashes[Path("close.png")] = base ^ 0b1011 << 40  # 3 bits from 0.png
    hashes[Path("chain.png")] = hashes[Path("close.png")] ^ 0b1111 << 3  # 4 from close.png, 7 from 0.png: linked
    hashes[Path("far.png")] = base ^ 0b11111  # 5 bits from 0.png: not a near duplicate
    brute = {(a, b) for a in hashes for b in hashes if a < b and (hashes[a] ^ hashes[b]).bit_count() <= 4}
    groups = near_groups(hashes)
    assert sorted(groups) == sorted([sorted([Path("0.png"), Path("close.png"), Path("chain.png")])])
    assert brute == {(Path("0.png"), Path("close.png")), (Path("chain.png"), Path("close.png"))}


def test_data_check_shares_a_large_folder_among_worker_processes_with_the_same_report(tmp_path, pin_host, monkeypatch):
    from gankit.data import folders
    from gankit.tools import datacheck

    root = messy_folder(tmp_path / "pics")
    for i in range(6):
        Image.new("RGB", (20 + i, 30), (40 * i, 10, 10)).save(root / f"extra{i}.png")
    alone = datacheck.check_folder(root)
    pin_host(cores=2)
    monkeypatch.setattr(datacheck, "CHUNK", 2)
    monkeypatch.setattr(folders, "CHUNK", 2)  # 5 chunks of 2 for 2 processes
    assert datacheck.check_folder(root) == alone and "images: 9;" in alone[0][0]
