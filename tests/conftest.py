"""Shared pytest fixtures: real data location and one Ray instance per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rbcray.data.registry import resolve_dataset

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def chula_root() -> Path:
    """Chula-RBC-12 through the project's own resolution (``../shared/data`` in CI, else download)."""
    return resolve_dataset("chula-rbc-12")


@pytest.fixture(scope="session")
def bccd_root() -> Path:
    """BCCD-TXL through the project's own resolution."""
    return resolve_dataset("bccd-txl-pbc")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (ray.init takes 6-8 s)."""
    import ray

    from rbcray.distributed.runtime import init_ray

    init_ray(num_cpus=2, object_store_memory=1_500_000_000)
    yield ray
    ray.shutdown()
