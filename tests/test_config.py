"""The config is the documentation: every knob carries its help, its choices or its range, and they are enforced."""

import dataclasses

import pytest

from gankit import config
from gankit.cli import build_parser
from gankit.errors import ConfigError


def test_every_field_carries_its_help_and_every_float_its_range():
    fields = dataclasses.fields(config.TrainConfig)
    assert all(f.metadata.get("help") for f in fields), [f.name for f in fields if not f.metadata.get("help")]
    floats = {f.name for f in fields if config.field_types()[f.name][0] is float}
    assert floats == set(config.FLOAT_RANGES)
    assert config.CHOICES["loss"] == ("minimax", "ns", "wgan", "wgan-gp", "hinge", "lsgan", "feature-matching")


def test_the_help_text_comes_from_the_fields_not_from_the_source(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    helps = capsys.readouterr().out
    for name in config.field_help():
        assert "--" + name.replace("_", "-") in helps
    assert "dataset name (fashion-mnist, mnist, cifar10)" in " ".join(helps.split())


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("loss", "wasserstein", "loss must be one of minimax, ns"),
        ("dropout", 1.0, "dropout must be a number in [0, 1), got 1.0"),
        ("divergence_factor", 1.0, "divergence_factor must be a number in (1, ∞), got 1.0"),
        ("gp_weight", -1, "gp_weight must be a number in [0, ∞) or null, got -1.0"),
        ("toy_std", float("nan"), "toy_std must be a number in (0, ∞) or null, got nan"),
    ],
)
def test_out_of_range_values_are_refused_in_one_sentence(key, value, message):
    with pytest.raises(ConfigError) as info:
        config.from_dict({key: value})
    assert str(info.value).startswith(message)
    assert config.from_dict({"gp_weight": 0, "beta1": 0.0}).gp_weight == 0.0  # closed ends are allowed
