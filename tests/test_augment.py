import pytest
import torch
from torch.testing import assert_close

from gankit.config import is_adaptive, parse_policy
from gankit.training.augment import augment, color, cutout, translation


def fixed(*values):
    """A draw that gives every image the same numbers."""
    return lambda k: torch.tensor(values[:k]).expand(4, k)


def images(channels=1, side=16):
    return torch.rand(4, channels, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_translation_is_a_zero_filled_shift():
    x = images()
    # side 16: shifts up to 2 px; u = 0.9 → row offset 4 of the padded image: content 2 px up; u = 0: 2 px right
    out = translation(x, fixed(0.9, 0.0))
    expected = torch.zeros_like(x)
    expected[:, :, :14, 2:] = x[:, :, 2:, :14]
    assert_close(out, expected)
    assert torch.equal(translation(x, fixed(0.5, 0.5)), x)  # the middle draw is no shift


def test_cutout_zeroes_one_square_that_the_border_may_cut():
    ones = torch.ones(4, 1, 16, 16)
    inside = cutout(ones, fixed(0.5, 0.5))
    assert torch.equal((inside == 0).sum(dim=(1, 2, 3)), torch.full((4,), 64))  # 8×8 for side 16
    assert torch.equal(inside[0, 0, 4:12, 4:12], torch.zeros(8, 8))
    corner = cutout(ones, fixed(0.0, 0.0))
    assert torch.equal((corner == 0).sum(dim=(1, 2, 3)), torch.full((4,), 16))  # centred on the corner: 4×4 left


def test_colour_at_the_middle_draw_is_the_identity_and_varies_otherwise():
    for channels in (1, 3):
        x = images(channels)
        assert_close(color(x, fixed(0.5, 0.5, 0.5)), x)
        brighter = color(x, fixed(1.0, 0.5, 0.5))
        assert_close(brighter, x + 0.5)
    rgb = images(3)
    gray = color(rgb, fixed(0.5, 0.0, 0.5))  # saturation 0: every channel becomes the pixel's mean
    assert_close(gray[:, 0], gray[:, 2])


def test_each_image_draws_its_own_transformation_and_gradients_pass():
    x = images(side=28).requires_grad_()
    u = torch.rand(4, 7, generator=torch.Generator().manual_seed(1))
    used = iter(range(0, 7, 2))

    def draw(k):
        start = next(used)
        return u[:, start : start + k]

    out = augment(x, parse_policy("translation,cutout,color"), draw)
    assert not torch.equal(out[0], out[1])
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0


def test_channels_last_in_channels_last_out():
    x = images(3).contiguous(memory_format=torch.channels_last)
    out = augment(x, ("translation", "cutout"), lambda k: torch.rand(4, k))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_policy_parsing():
    assert parse_policy("translation, cutout") == ("translation", "cutout")
    assert parse_policy("none") == () and parse_policy("") == ()
    assert parse_policy("ada") == ("translation", "cutout", "color") and is_adaptive("ada")
    assert not is_adaptive("translation,cutout,color")
    with pytest.raises(ValueError, match="unknown augmentation blur"):
        parse_policy("translation,blur")


def test_adaptive_augmentation_applies_each_operation_with_probability_p():
    from gankit.training.augment import adjust_ada

    x = images(side=16)
    generator = torch.Generator().manual_seed(0)

    def draw(k):
        return torch.rand(4, k, generator=generator)

    assert torch.equal(augment(x, ("cutout",), draw, torch.tensor(0.0)), x)  # p = 0: untouched
    assert not torch.equal(augment(x, ("cutout",), draw, torch.tensor(1.0)), x)  # p = 1: every image cut
    many = torch.ones(4000, 1, 8, 8)
    many_draw = lambda k: torch.rand(4000, k, generator=generator)  # noqa: E731
    cut = (augment(many, ("cutout",), many_draw, torch.tensor(0.3)) == 0).flatten(1).any(1).float().mean()
    assert abs(cut.item() - 0.3) < 0.03
    # ADA's rule: p moves by images / (kimg·1000) toward less augmentation when r_t is below the target, more above.
    p = torch.tensor(0.5)
    assert_close(adjust_ada(p, torch.tensor(0.9), 0.6, 128, 500), torch.tensor(0.5 + 128 / 500_000))
    assert_close(adjust_ada(p, torch.tensor(0.1), 0.6, 128, 500), torch.tensor(0.5 - 128 / 500_000))
    assert adjust_ada(torch.tensor(0.0), torch.tensor(-1.0), 0.6, 128, 500) == 0  # clamped to [0, 1]
    assert adjust_ada(torch.tensor(1.0), torch.tensor(1.0), 0.6, 128, 500) == 1
