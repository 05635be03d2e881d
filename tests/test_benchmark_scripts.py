"""The benchmark scripts run: a figure is only measured when the script that measures it works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_the_gpu_check_script_runs_its_quick_parts_on_the_cpu(tmp_path):
    """The script a lent GPU gets 15 minutes for must not fail on an import or a typo: its quick parts run
    here at tiny sizes (the GPU figures themselves only come from a GPU)."""
    # the steps part's figures, as it writes them (it takes minutes even at tiny sizes)
    (tmp_path / "steps.json").write_text(json.dumps({"rows": [{"tflops": 100.0, "images_per_s": 50.0}]}))
    args = ["--device", "cpu", "--tiny", "--parts", "sync_bn,batches,projection", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(str(summary[part]).startswith("ok") for part in ("sync_bn", "batches", "projection")), summary
    rates = json.loads((tmp_path / "batches.json").read_text())["images_per_s"]
    assert len(rates) == 2 and all(v > 0 for v in rates.values())
    projected = json.loads((tmp_path / "projection.json").read_text())
    assert projected["projected_hours"] == pytest.approx(projected["planned_tflops"] / 100.0 / 3600, rel=0.01)
    assert json.loads((tmp_path / "batches.json").read_text())["fastest_step_images_per_s"] == 50.0
