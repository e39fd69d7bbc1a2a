"""Timing shared by the benchmarks.

A benchmark compares candidates in one process on one machine. Each round times every candidate once, in turn,
so that drift in the machine's speed (another job, the clock, the temperature) hits them alike; the first
`warmup` rounds are dropped and the figure is the median of the rest. On a GPU the device is synchronised before
and after each call, so that a time covers the work, not only its launch.
"""
import statistics
import time
from typing import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """`fn()`'s result and the seconds it took."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def interleaved_times(candidates: dict[str, Callable[[], object]], device: torch.device, rounds: int,
                      warmup: int = 0) -> dict[str, list[float]]:
    """The seconds of each of `rounds` calls of every candidate (a function of no arguments), after `warmup`
    rounds that are not kept."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for round_ in range(warmup + rounds):
        for name, fn in candidates.items():
            _, elapsed = timed(fn, device)
            if round_ >= warmup:
                times[name].append(elapsed)
    return times


def interleaved_medians(candidates: dict[str, Callable[[], object]], device: torch.device, rounds: int,
                        warmup: int = 0) -> dict[str, float]:
    """The median of [`interleaved_times`](#interleaved_times) for each candidate."""
    return {name: statistics.median(t) for name, t in interleaved_times(candidates, device, rounds, warmup).items()}
