"""Record a finished run of an experiment for the site: `python -m site_src.record_results <module> <run_dir>`.

Copies the run's `result.json` and its figures (the `*.png` at the top of the run directory) into
`docs/results/<module>/`, replacing what was recorded before, and writes `record.json` beside them: the command that
reproduces the run, the machine it ran on, the date and the wall time. The experiment's page then shows them (see
`site_src/results.py`). Run it on the machine that ran the experiment: it describes the machine it runs on.

The figures are stored small: flattened onto white, at most `--max-width` pixels wide, and reduced to a palette of
256 colours (plots have few colours), which divides their size by about three with no visible change.
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from site_src.results import RECORD_FILE, RESULT_FILE, RESULTS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAX_WIDTH = 1200


def command_of(config: dict) -> str:
    """The command line of a run, from its `config.json`: the module, and the preset, device and seed it used."""
    parts = [f"python -m labml_nn.transformers.{config['module']}"]
    if config.get("preset") not in (None, "default"):
        parts.append(f"--preset {config['preset']}")
    run = config.get("run", {})
    if run.get("device") not in (None, "auto"):
        parts.append(f"--device {run['device']}")
    if run.get("seed") not in (None, 0):
        parts.append(f"--seed {run['seed']}")
    return " ".join(parts)


def describe_machine(config: dict) -> str:
    """`Intel Xeon ..., 2 cores, Linux, PyTorch 2.13.0 on cpu`: the machine running this script."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    device = config.get("run", {}).get("device", "auto")
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()}, PyTorch {config.get('torch', '?')}, "
            f"device {device}")


def shrink_png(data: bytes, max_width: int) -> bytes:
    """A plot's PNG made small: onto white, at most `max_width` wide, a 256-colour palette."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    else:
        image = image.convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS)
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue() if len(out.getvalue()) < len(data) else data


def wall_seconds(run_dir: Path, result: dict) -> float | None:
    """The run's wall time: the result's own `wall_s` when it has one, else from `config.json` (written at the
    start) to `result.json` (written at the end)."""
    if isinstance(result.get("wall_s"), (int, float)):
        return float(result["wall_s"])
    start, end = (run_dir / "config.json").stat().st_mtime, (run_dir / RESULT_FILE).stat().st_mtime
    return round(end - start, 1) if end >= start else None


def record(module: str, run_dir: Path, docs_dir: Path, command: str | None = None, machine: str | None = None,
           wall_s: float | None = None, max_width: int = DEFAULT_MAX_WIDTH) -> Path:
    """Copy the run into `docs_dir/results/<module>/` and return that folder."""
    if not module.isidentifier():
        raise ValueError(f"module must be an experiment's name such as `gpt`, got {module!r}")
    result_path, config_path = run_dir / RESULT_FILE, run_dir / "config.json"
    if not result_path.is_file() or not config_path.is_file():
        raise ValueError(f"{run_dir} is not a finished run: it needs config.json and {RESULT_FILE}")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("module") != module:
        raise ValueError(f"{run_dir} is a run of {config.get('module')!r}, not of {module!r}")
    result = json.loads(result_path.read_text(encoding="utf-8"))

    folder = docs_dir / RESULTS / module
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copyfile(result_path, folder / RESULT_FILE)
    figures = sorted(p.name for p in run_dir.glob("*.png"))
    # The experiment's own figures first, the loss curves last.
    figures.sort(key=lambda name: name == "loss.png")
    for name in figures:
        (folder / name).write_bytes(shrink_png((run_dir / name).read_bytes(), max_width))
    entry = {
        "command": command or command_of(config),
        "machine": machine or describe_machine(config),
        "recorded": datetime.datetime.fromtimestamp(result_path.stat().st_mtime, datetime.timezone.utc)
        .date().isoformat(),
        "wall_s": wall_s if wall_s is not None else wall_seconds(run_dir, result),
        "figures": figures,
    }
    (folder / RECORD_FILE).write_text(json.dumps(entry, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m site_src.record_results", description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="the experiment, as in python -m labml_nn.transformers.<module>")
    parser.add_argument("run_dir", type=Path, help="a finished run directory (config.json, result.json, *.png)")
    parser.add_argument("--command", help="the command that made the run (default: from its config.json)")
    parser.add_argument("--machine", help="what it ran on (default: this machine's CPU, cores, OS and PyTorch)")
    parser.add_argument("--wall-s", type=float, help="the command's wall time in seconds (default: the run's)")
    parser.add_argument("--max-width", type=int, default=DEFAULT_MAX_WIDTH, help="widest figure, in pixels")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="the site's docs folder")
    args = parser.parse_args(argv)
    try:
        folder = record(args.module, args.run_dir, args.docs, args.command, args.machine, args.wall_s,
                        args.max_width)
    except ValueError as error:
        sys.exit(f"{parser.prog}: error: {error}")
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KiB" for p in sorted(folder.iterdir()))
    print(f"recorded {args.run_dir} in {folder}: {sizes}")


if __name__ == "__main__":
    main()
