import dataclasses
import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import idx_bytes, write_idx_split
from PIL import Image

from gankit.data import load_images, sources, to_model_range
from gankit.errors import DataError

FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


# Tiny fixtures written into tmp_path -----------------------------------------------------------------------------


def write_png(path: Path, size=(8, 8), mode="RGB", value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $GANKIT_DATA, a private cache, no system folders, and no network."""
    monkeypatch.delenv("GANKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sources, "SYSTEM_DIRS", {})

    def no_network(url, out):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(sources, "_fetch", no_network)
    return tmp_path


# IDX -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_round_trip(isolated, gz):
    images, labels = write_idx_split(isolated / "d", "t10k", gz=gz)
    data = load_images("fashion-mnist", "test", data_dir=str(isolated / "d"), download=False)
    assert data.x.shape == (5, 1, 28, 28) and data.x.dtype == torch.uint8 and data.x.is_contiguous()
    assert np.array_equal(data.x[:, 0].numpy(), images)
    assert data.y.dtype == torch.int64 and np.array_equal(data.y.numpy(), labels)
    assert data.num_classes == 10 and data.class_names[0] == "T-shirt/top"
    assert data.name == "fashion-mnist" and data.source == str(isolated / "d")


def _corrupt(folder: Path, how: str) -> str:
    """Spoil one file of a valid train split in `how` way; returns the name the error must mention."""
    write_idx_split(folder, "train")
    images = folder / "train-images-idx3-ubyte.gz"
    labels = folder / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if how == "truncated gzip":
        images.write_bytes(images.read_bytes()[:-100])
    elif how == "corrupt gzip":
        blob = bytearray(images.read_bytes())
        blob[20:60] = b"\xff" * 40
        images.write_bytes(bytes(blob))
    elif how == "wrong magic":
        images.write_bytes(gzip.compress(b"\x00\x00\x08\x02" + raw[4:]))
    elif how == "truncated payload":
        images.write_bytes(gzip.compress(raw[:-10]))
    elif how == "count mismatch":
        labels.write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
        return labels.name
    return images.name


@pytest.mark.parametrize(
    "how", ["truncated gzip", "corrupt gzip", "wrong magic", "truncated payload", "count mismatch"]
)
def test_bad_idx_files_raise_data_error_naming_the_file(isolated, how):
    name = _corrupt(isolated / "d", how)
    with pytest.raises(DataError, match=name):
        load_images("mnist", data_dir=str(isolated / "d"), download=False)


# CIFAR-10 --------------------------------------------------------------------------------------------------------


def write_cifar(folder: Path, n: int = 3) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"}, protocol=2))
        written[name] = data
    return written


def test_cifar_batches_folder_and_its_parent(isolated):
    written = write_cifar(isolated / "c" / "cifar-10-batches-py")
    for data_dir in (isolated / "c", isolated / "c" / "cifar-10-batches-py"):
        train = load_images("cifar10", "train", data_dir=str(data_dir), download=False)
        assert train.x.shape == (15, 3, 32, 32) and train.y.shape == (15,)
        assert np.array_equal(train.x[:3].reshape(3, -1).numpy(), written["data_batch_1"])
    test = load_images("cifar10", "test", data_dir=str(isolated / "c"), download=False)
    assert test.x.shape == (3, 3, 32, 32) and test.class_names[0] == "airplane"


def test_cifar_archive_is_extracted_into_the_cache(isolated):
    write_cifar(isolated / "src" / "cifar-10-batches-py")
    (isolated / "d").mkdir()
    with tarfile.open(isolated / "d" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(isolated / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    data = load_images("cifar10", "test", data_dir=str(isolated / "d"), download=False)
    assert data.x.shape == (3, 3, 32, 32)
    assert data.source == str(isolated / "xdg" / "gankit" / "cifar10" / "cifar-10-batches-py")


@pytest.mark.parametrize("payload", [b"not a pickle", pickle.dumps({b"data": 1}), pickle.dumps(print)])
def test_corrupt_cifar_batch(isolated, payload):
    write_cifar(isolated / "c")
    (isolated / "c" / "data_batch_3").write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_3"):
        load_images("cifar10", data_dir=str(isolated / "c"), download=False)


# Image folders ---------------------------------------------------------------------------------------------------


def test_flat_grayscale_folder_is_unlabelled(tmp_path):
    for i in range(3):
        write_png(tmp_path / "faces" / f"{i}.png", mode="L", value=10 * i)
    (tmp_path / "faces" / ".DS_Store").write_bytes(b"junk")
    data = load_images(str(tmp_path / "faces"))
    assert data.x.shape == (3, 1, 8, 8) and data.y is None and data.num_classes == 0
    assert data.x[:, 0, 0, 0].tolist() == [0, 10, 20] and data.name == "faces"


def test_class_subfolders_give_labels_and_rgb(tmp_path):
    write_png(tmp_path / "pets" / "dog" / "a.PNG", value=(1, 2, 3))
    write_png(tmp_path / "pets" / "dog" / "d.png", value=(1, 2, 3))
    write_png(tmp_path / "pets" / "cat" / "b.jpg")
    write_png(tmp_path / "pets" / "cat" / "deep" / "c.png", mode="L")  # deeper folders belong to their class
    data = load_images(str(tmp_path / "pets"))
    assert data.class_names == ["cat", "dog"] and data.num_classes == 2
    assert data.y.tolist() == [0, 0, 1, 1]
    assert data.x.shape == (4, 3, 8, 8)  # the gray image is converted, since the folder mixes gray and colour
    assert data.x[2, :, 0, 0].tolist() == [1, 2, 3]
    (tmp_path / "pets" / "dog" / "d.png").unlink()
    with pytest.raises(DataError, match=r"class folder .*dog holds 1 readable image; a class needs 2 or more"):
        load_images(str(tmp_path / "pets"))


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda root: root.mkdir(), "contains no images"),
        (lambda root: (root.mkdir(), (root / "notes.txt").write_text("hi")), r"no images .*\(only 1 other files\)"),
        (lambda root: (write_png(root / "a.png"), (root / "bad.png").write_bytes(b"\x89PNG broken")), "bad.png"),
        (lambda root: (write_png(root / "a.png"), write_png(root / "cls" / "b.png")), "a.png"),
    ],
    ids=["empty", "only other files", "unreadable png", "top level and sub-folders"],
)
def test_bad_folders(tmp_path, make, name):
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(DataError, match=name):
        load_images(str(root))


def test_truncated_png(tmp_path):
    write_png(tmp_path / "d" / "a.png", size=(64, 64))
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "d" / "b.png")
    blob = (tmp_path / "d" / "b.png").read_bytes()
    (tmp_path / "d" / "b.png").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="b.png"):
        load_images(str(tmp_path / "d"))


# npz -------------------------------------------------------------------------------------------------------------


def test_npz_with_labels_and_channels_last(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", x=x, y=np.array([0, 2, 1, 2]))
    data = load_images(str(tmp_path / "set.npz"), split="test")
    assert data.x.shape == (4, 3, 6, 6) and data.x.is_contiguous()
    assert np.array_equal(data.x.permute(0, 2, 3, 1).numpy(), x)
    assert data.y.tolist() == [0, 2, 1, 2] and data.num_classes == 3 and data.name == "set"


@pytest.mark.parametrize(
    "pixels, expected, scale",
    [
        ([[0.0, 0.5], [1.0, 1.0]], [0, 128, 255, 255], "floats read as [0, 1]"),
        ([[-1.0, 0.0], [0.5, 1.0]], [0, 128, 191, 255], "floats read as [-1, 1]"),  # any negative: the model's range
        ([[0.0, 2.0], [127.6, 255.0]], [0, 2, 128, 255], "floats read as [0, 255]"),
    ],
)
def test_npz_floats_are_read_on_their_stated_scale(tmp_path, pixels, expected, scale):
    np.savez(tmp_path / "f.npz", x=np.array([pixels], dtype=np.float32))
    data = load_images(str(tmp_path / "f.npz"))
    assert data.x.shape == (1, 1, 2, 2) and data.x.flatten().tolist() == expected and data.y is None
    assert data.scale == scale


def test_the_training_line_states_how_float_pixels_were_read(tmp_path, capsys):
    from gankit.training.session import train

    x = np.random.default_rng(0).random((64, 16, 16), dtype=np.float32)  # [0, 1]: would be near-black as 0..255
    np.savez(tmp_path / "unit.npz", x=x)
    train(
        data=str(tmp_path / "unit.npz"),
        steps=1,
        width_g=8,
        width_d=8,
        batch_size=16,
        grid_size=4,
        out=str(tmp_path / "r"),
        show_progress=False,
    )
    assert "64 images 1×16×16, no classes, floats read as [0, 1]," in capsys.readouterr().err
    mean = load_images(str(tmp_path / "unit.npz")).x.float().mean().item()
    assert mean == pytest.approx(x.mean() * 255, abs=0.5)


def test_palette_and_16_bit_pngs_load_without_library_warnings(tmp_path):
    import warnings

    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.save(tmp_path / "a.png", transparency=b"\x00\x80")  # transparency in bytes: Pillow warns on convert
    Image.fromarray(np.full((8, 8), 257 * 100, dtype=np.uint16)).save(tmp_path / "b.png")  # 16-bit grey
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_images(str(tmp_path))
    assert data.x.shape == (2, 3, 8, 8)
    # the palette's colour at alpha 128/255, composited onto the white background
    assert data.x[0, :, 0, 0].tolist() == [round(200 * 128 / 255 + 255 * 127 / 255), 142, 142]
    assert data.x[1, :, 0, 0].tolist() == [100, 100, 100]  # 16 bits scaled to 8, not clipped at 255


@pytest.mark.parametrize(
    "arrays, problem",
    [
        ({"x": np.array([[[np.nan, 0.0]]])}, "NaN"),
        ({"images": np.zeros((1, 2, 2), np.uint8)}, "no array named 'x'"),
        ({"x": np.zeros((2, 2), np.uint8)}, "shape"),
        ({"x": np.zeros((1, 3, 4, 4), np.uint8)}, "channels-last"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, 1, 2])}, "3 labels"),
        ({"x": np.full((1, 2, 2), 300.0)}, r"\[0, 1\], \[-1, 1\] or \[0, 255\]"),
        ({"x": np.full((1, 2, 2), -2.0)}, r"pixels in \[-2, -2\]"),
    ],
    ids=["nan", "missing x", "ndim", "channels first", "y length", "range", "below -1"],
)
def test_bad_npz(tmp_path, arrays, problem):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=problem) as info:
        load_images(str(tmp_path / "bad.npz"))
    assert "bad.npz" in str(info.value)


def test_npz_that_is_not_a_zip(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 nonsense")
    with pytest.raises(DataError, match="junk.npz"):
        load_images(str(tmp_path / "junk.npz"))


# Names and lookup order ------------------------------------------------------------------------------------------


def test_unknown_name_lists_datasets_and_toys(isolated):
    with pytest.raises(DataError, match="fashion-mnist.*ring8"):
        load_images("imagenet-7")
    with pytest.raises(DataError, match="split"):
        load_images("mnist", split="validation")


def test_lookup_order(isolated, monkeypatch):
    cache = isolated / "xdg" / "gankit" / "mnist"
    write_idx_split(cache, "train", n=3)
    write_idx_split(isolated / "env" / "mnist", "train", n=4)  # $GANKIT_DATA as a parent of mnist/
    write_idx_split(isolated / "arg", "train", n=5)  # --data-dir holding the files directly
    write_idx_split(isolated / "system", "train", n=6)
    monkeypatch.setattr(sources, "SYSTEM_DIRS", {"mnist": (str(isolated / "system"),)})
    assert len(load_images("mnist", download=False).x) == 3
    monkeypatch.setenv("GANKIT_DATA", str(isolated / "env"))
    assert len(load_images("mnist", download=False).x) == 4
    assert len(load_images("MNIST", data_dir=str(isolated / "arg"), download=False).x) == 5
    # A root without the files falls through to the cache, then to the system folders.
    (isolated / "empty").mkdir()
    assert len(load_images("mnist", data_dir=str(isolated / "empty"), download=False).x) == 3
    (cache / "train-images-idx3-ubyte.gz").unlink()
    assert load_images("mnist", data_dir=str(isolated / "empty"), download=False).source == str(isolated / "system")


def test_cache_defaults_to_home(isolated, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(isolated / "home"))
    write_idx_split(isolated / "home" / ".cache" / "gankit" / "mnist", "t10k")
    assert len(load_images("mnist", "test", download=False).x) == 5


def test_missing_data_dir_is_an_error(isolated):
    with pytest.raises(DataError, match="nowhere.*--data-dir"):
        load_images("mnist", data_dir=str(isolated / "nowhere"))


def test_nothing_found_and_no_download_names_every_way(isolated):
    with pytest.raises(DataError) as info:
        load_images("fashion-mnist", download=False)
    message = str(info.value)
    for hint in (
        "--data-dir",
        "$GANKIT_DATA",
        str(isolated / "xdg" / "gankit" / "fashion-mnist"),
        "apt-get install dataset-fashion-mnist",
        "downloading is disabled",
        "amazonaws.com",
    ):
        assert hint in message


def test_failed_download_names_the_reason(isolated):
    with pytest.raises(DataError, match="network disabled in tests.*--data-dir"):
        load_images("mnist")


# Downloads (served from local bytes) -----------------------------------------------------------------------------


def _serve(monkeypatch, files: dict[str, bytes]):
    """Replace the network with a dict from URL file name to bytes."""

    def fetch(url, out):
        out.write(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(sources, "_fetch", fetch)


def _mnist_files(tmp: Path) -> dict[str, bytes]:
    write_idx_split(tmp, "train", n=2)
    write_idx_split(tmp, "t10k", n=3)
    return {p.name: p.read_bytes() for p in tmp.iterdir()}


def test_download_verifies_sha256_and_lands_in_the_cache(isolated, monkeypatch):
    files = _mnist_files(isolated / "served")
    spec = sources.REGISTRY["mnist"]
    downloads = {name: (url, hashlib.sha256(files[name]).hexdigest()) for name, (url, _) in spec.downloads.items()}
    monkeypatch.setitem(sources.REGISTRY, "mnist", dataclasses.replace(spec, downloads=downloads))
    _serve(monkeypatch, files)
    data = load_images("mnist", "test")
    cache = isolated / "xdg" / "gankit" / "mnist"
    assert len(data.x) == 3 and data.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)  # no temporary files left behind


def test_sha256_mismatch_discards_the_download(isolated, monkeypatch):
    _serve(monkeypatch, _mnist_files(isolated / "served"))  # real hashes in the registry: these bytes cannot match
    with pytest.raises(DataError, match="SHA-256"):
        load_images("mnist")
    cache = isolated / "xdg" / "gankit" / "mnist"
    assert list(cache.iterdir()) == []


def test_download_of_cifar_archive(isolated, monkeypatch):
    write_cifar(isolated / "src" / "cifar-10-batches-py")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(isolated / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    archive = buffer.getvalue()
    spec = sources.REGISTRY["cifar10"]
    url = spec.downloads["cifar-10-python.tar.gz"][0]
    downloads = {"cifar-10-python.tar.gz": (url, hashlib.sha256(archive).hexdigest())}
    monkeypatch.setitem(sources.REGISTRY, "cifar10", dataclasses.replace(spec, downloads=downloads))
    _serve(monkeypatch, {"cifar-10-python.tar.gz": archive})
    assert load_images("cifar10").x.shape == (15, 3, 32, 32)


@pytest.mark.skipif(not FASHION_SYSTEM.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_system_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.delenv("GANKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    train = load_images("fashion-mnist", "train", download=False)
    test = load_images("fashion-mnist", "test", download=False)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.num_classes == 10 and torch.bincount(train.y).tolist() == [6000] * 10


# to_model_range --------------------------------------------------------------------------------------------------


def test_same_size_is_an_exact_rescale():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    out = to_model_range(x, 16)
    assert out.dtype == torch.float32 and out.shape == (1, 1, 16, 16)
    assert out[0, 0, 0, 0] == -1 and out[0, 0, -1, -1] == 1
    torch.testing.assert_close(out, x.float() / 127.5 - 1, rtol=0, atol=0)


@pytest.mark.parametrize("resolution", [32, 64, 14, 17])
def test_resize(resolution):
    # Black-and-white pixels: rounding in the filter pushes some outputs just past ±1 (at 17 px) unless clamped.
    x = torch.randint(0, 2, (600, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)) * 255
    out = to_model_range(x, resolution)
    assert out.shape == (600, 1, resolution, resolution) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    # Resizing keeps the mean brightness; chunking does not change the result.
    torch.testing.assert_close(out.mean(), x.float().mean() / 127.5 - 1, atol=0.02, rtol=0)
    torch.testing.assert_close(out[550:], to_model_range(x[550:], resolution))


def test_constant_image_stays_constant_when_resized():
    out = to_model_range(torch.full((2, 3, 28, 28), 255, dtype=torch.uint8), 64)
    torch.testing.assert_close(out, torch.ones(2, 3, 64, 64))


def test_non_square_images_are_rejected():
    with pytest.raises(DataError, match="not square"):
        to_model_range(torch.zeros(1, 1, 28, 32, dtype=torch.uint8), 32)


def test_the_subset_script_keeps_the_classes_and_a_seeded_count(tmp_path, monkeypatch):
    """scripts/subset.py, which makes the fine-tuning and small-data sets of docs/experiments.md."""
    import runpy

    labels = np.arange(40) % 4
    x = (np.arange(40, dtype=np.uint8)[:, None, None] * np.ones((1, 6, 6), np.uint8)).astype(np.uint8)
    np.savez(tmp_path / "all.npz", x=x, y=labels)

    source = f"{tmp_path / 'all.npz'}:train"

    def cut(*args):
        out = tmp_path / "out.npz"
        monkeypatch.setattr("sys.argv", ["subset.py", *args, "--out", str(out)])
        runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "subset.py"), run_name="__main__")
        with np.load(out) as arrays:
            return {name: arrays[name] for name in arrays.files}

    a = cut(source, "--classes", "1-2", "--n", "5", "--holdout", "0")
    assert a["x"].shape == (5, 6, 6, 1)
    assert set(a["y"]) <= {1, 2}
    assert (a["x"][:, 0, 0, 0] % 4 == a["y"]).all()  # each image kept its own label
    b = cut(source, "--classes", "1-2", "--n", "5", "--holdout", "0")
    assert (b["x"] == a["x"]).all()  # the draw is seeded
    for bad in (["--classes", "3", "--n", "11"], ["--classes", "x"]):  # class 3 holds 10 images; x is no class
        with pytest.raises(SystemExit) as stop:
            cut(source, *bad, "--holdout", "0")
        assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:  # no such dataset: one line, not a traceback
        cut(f"{tmp_path / 'missing.npz'}:train")
    assert stop.value.code == 2
    # A folder's (or .npz's) split honours the held-out share, as gankit train does: with 0.25 of 40 images the test
    # part is 10.
    assert cut(f"{tmp_path / 'all.npz'}:test", "--holdout", "0.25")["x"].shape[0] == 10
