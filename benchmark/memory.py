"""Peak memory per phase of a run (selection, training, evaluation), for the record: the process's resident
peak (Linux: VmHWM, reset between phases through /proc/self/clear_refs; elsewhere the peak so far) and, on a
GPU, torch's peak allocation."""

from __future__ import annotations

import resource
import sys
from contextlib import contextmanager
from pathlib import Path

import torch


def _reset_resident_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _resident_peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


class PeakMemory:
    def __init__(self, device: torch.device):
        self.device = device
        self.phases: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        _reset_resident_peak()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            yield
        finally:
            self.phases[name] = round(_resident_peak_mb(), 1)
            if self.device.type == "cuda":
                self.phases[f"{name}_gpu"] = round(torch.cuda.max_memory_allocated(self.device) / 2 ** 20, 1)
