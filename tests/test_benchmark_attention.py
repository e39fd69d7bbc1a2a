"""Smoke test: the attention benchmark runs and reports all three candidates (timings are not checked here)."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "attention.py"


def test_attention_benchmark_smoke():
    result = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--rounds", "2", "--warmup", "1"],
                            capture_output=True, text=True, timeout=120, check=True)
    for name in ("bare bound", "labml_nn MultiHeadAttention", "torch.nn.MultiheadAttention"):
        assert name in result.stdout
    assert "x the bound" in result.stdout
