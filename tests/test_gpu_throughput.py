"""benchmarks/gpu_throughput.py end to end on the CPU at a tiny size (the GPU run uses the same code)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_datasets import write_cifar10

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_throughput.py"


@pytest.mark.slow
def test_benchmark_times_both_loops_and_projects_the_protocol(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=16)
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data-dir", str(tmp_path), "--device", "cpu", "--subset", "40",
         "--width", "4", "--batch-size", "8", "--epochs", "2", "--workers", "0", "--threads", "1",
         "--step-batches", "1", "--step-repeats", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    base, engine = result["baseline"], result["engine"]
    assert base["images"] == engine["images"] == 40
    for side in (base, engine):
        assert side["images_per_second"] > 0
        assert side["projected_protocol_seconds"] == pytest.approx(10_000_000 / side["images_per_second"])
    assert result["ratio"] == pytest.approx(engine["images_per_second"] / base["images_per_second"])
    step = result["sat_over_ce_step"]
    assert step["sat_over_ce"] == pytest.approx(step["sat_step_ms"] / step["ce_step_ms"])
    phases = engine["profile"]["phases"]
    assert {"data", "forward_loss", "target_update", "backward", "optimizer", "evaluation", "checkpoint"} <= set(phases)
    assert "engine / baseline" in done.stdout
