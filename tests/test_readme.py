"""The README's Python snippets run, in order, in one namespace (the later ones use the earlier ones' names)."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 8
    namespace: dict = {}
    torch.manual_seed(0)
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
    assert namespace["weights"].shape == (2, 8, 10, 10)
    assert namespace["logits"].shape == (2, 5, 97)
    assert namespace["text"].shape == (1, 21)
    assert namespace["best"].shape == (2, 9)
    assert "parameters" in capsys.readouterr().out
