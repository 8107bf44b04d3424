"""Latent walks, vector arithmetic, nearest training images, class grids."""

import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.errors import ConfigError
from gankit.runs import load_generator
from gankit.tools.explore import _nearest, parse_concept
from gankit.tools.sample import latent_walk, slerp
from gankit.training.session import train


@pytest.fixture
def run28(tmp_path, tiny28):
    return train(
        data=str(tiny28),
        steps=20,
        width_g=8,
        width_d=8,
        latent_dim=8,
        batch_size=20,
        out=str(tmp_path / "r28"),
        show_progress=False,
    )


def test_slerp_keeps_the_norm_and_ends_at_its_end_points():
    a, b = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 1, 5).view(1, 5, 1)
    path = slerp(a[:, None], b[:, None], t)
    assert torch.allclose(path[:, 0], a, atol=1e-4) and torch.allclose(path[:, -1], b, atol=1e-4)
    middle, straight = path[:, 2].norm(dim=1), ((a + b) / 2).norm(dim=1)
    assert (middle > 1.2 * straight).all()  # the straight line's midpoint is ~1/√2 as long in high dimensions


class Lookup(torch.nn.Module):
    """A G that is not smooth: it returns one of two stored images, whichever z's first coordinate's sign picks
    (what a G that memorised its data looks like along a walk: nothing changes, then everything does)."""

    def __init__(self, side=28):
        super().__init__()
        self.images = torch.nn.Parameter(torch.rand(2, 1, side, side) * 2 - 1)

    def forward(self, z, y=None):
        return self.images[(z[:, 0] > 0).long()]


def largest_step_share(G, spec, rows=3, steps=6):
    """Per walk, the largest step between neighbouring images as a share of the path's length (1 where nothing
    changes: such a walk shows no transition at all)."""
    images = latent_walk(G, spec, rows=rows, steps=steps, spherical=True).view(rows, steps, -1)
    step_sizes = (images[:, 1:] - images[:, :-1]).norm(dim=2)
    path = step_sizes.sum(dim=1)
    return torch.where(path > 0, step_sizes.max(dim=1).values / path.clamp_min(1e-12), 1.0)


def test_latent_walk_rows_change_smoothly(run28):
    G, spec, _ = load_generator(run28)
    smooth = largest_step_share(G, spec)
    assert (smooth < 0.4).all(), smooth  # 5 steps: about a fifth of the path each where G is smooth
    jumps = largest_step_share(Lookup(), spec, rows=8)
    assert (jumps == 1).all(), jumps  # one jump is the whole path (or nothing changes)
    assert main(["interpolate", str(run28), "--rows", "2", "--steps", "5", "--out", str(run28 / "w.png")]) == 0
    assert Image.open(run28 / "w.png").size == (5 * 30 + 2, 2 * 30 + 2)


def test_neighbours_grid_and_nearest_search(run28, tmp_path):
    keys = torch.randn(25000, 6)
    queries = keys[[3, 24999, 12000]] + 1e-4
    assert _nearest(queries, keys, 1).flatten().tolist() == [3, 24999, 12000]  # across chunk boundaries
    out = tmp_path / "nn.png"
    assert main(["neighbours", str(run28), "--n", "3", "--k", "2", "--out", str(out)]) == 0
    assert Image.open(out).size == (5 * 30 + 2, 3 * 30 + 2)


def test_arithmetic_with_a_domain_classifier(run28, tiny28, tmp_path, capsys):
    assert main(["classifier", "train", "--data", str(tiny28), "--epochs", "1"]) == 0
    out = tmp_path / "arith.png"
    assert (
        main(
            [
                "arithmetic",
                str(run28),
                "--a",
                "label=0",
                "--b",
                "label=1",
                "--c",
                "label=1",
                "--rows",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size == (4 * 30 + 2, 2 * 30 + 2)
    with pytest.raises(ConfigError, match="label=K"):
        parse_concept("class=3", 10)


def test_per_class_grid_of_a_conditional_run(tmp_path, tiny_images):
    run = train(
        data=str(tiny_images),
        conditional=True,
        steps=10,
        width_g=8,
        width_d=8,
        batch_size=32,
        out=str(tmp_path / "cond"),
        show_progress=False,
        grid_size=16,
    )
    assert main(["sample", str(run), "--per-class", "--n", "5", "--out", str(tmp_path / "c.png")]) == 0
    assert Image.open(tmp_path / "c.png").size == (5 * 18 + 2, 2 * 18 + 2)  # one row per class
    assert main(["sample", str(run), "--per-class", "--label", "1", "--out", str(tmp_path / "x.png")]) == 2
