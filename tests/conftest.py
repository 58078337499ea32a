"""Shared fixtures. The tiny feature source that offers everything a selector may ask for (embeddings,
probabilities, validation outputs, images and small proxy models) without training anything big lives in
`benchmark.contract`, where contributors' `python -m benchmark check` uses it too."""

import os
from pathlib import Path

import pytest

from benchmark.contract import TinyFeatures, tiny_context, tiny_model

__all__ = ["REPO", "TinyFeatures", "cifar10_jpeg", "tiny_context", "tiny_model"]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's cache."""
    monkeypatch.setenv("CORESET_BENCH_CACHE", str(tmp_path / "cache"))


def cifar10_jpeg() -> Path | None:
    """The shared CIFAR-10 JPEG copy, from the environment variable that .ci/run sets."""
    path = os.environ.get("CORESET_BENCH_CIFAR10_JPEG")
    return Path(path) if path and (Path(path) / "train").is_dir() else None
