"""Smoke test: the Llama generation benchmark runs at tiny sizes and reports both parts (timings are not checked)."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "llama_generate.py"


def test_llama_generate_benchmark_smoke():
    result = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--rounds", "1"],
                            capture_output=True, text=True, timeout=120, check=True)
    for text in ("KV cache", "recomputing prefix", "speedup of the cache", "prefill", "decode"):
        assert text in result.stdout
