import pytest

from gankit import cpu


def test_bf16_speedup_is_measured_only_where_bf16_is_native(monkeypatch):
    speedup = cpu.bf16_speedup.__wrapped__(n=128, calls=2)  # uncached
    assert (speedup is None) == (not cpu.native_bf16())
    assert speedup is None or 0 < speedup < 100
    monkeypatch.setattr(cpu, "native_bf16", lambda: False)
    assert cpu.bf16_speedup.__wrapped__(n=128, calls=2) is None  # an emulated matmul is never timed


@pytest.mark.parametrize("speedup, fast", [(2.3, True), (1.3, True), (1.1, False), (0.52, False), (None, False)])
def test_bf16_is_the_fast_arithmetic_only_where_it_clearly_beats_fp32(speedup, fast, monkeypatch):
    monkeypatch.setattr(cpu, "bf16_speedup", lambda: speedup)
    assert cpu.fast_bf16() is fast
    assert ("no native bf16" in cpu.bf16_note()) == (speedup is None)
