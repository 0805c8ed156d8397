"""The worker processes of ``aubench run --jobs N``: how many by default, and a pool started before the
cells are planned (spawned, so plugins come from entry points in each)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aubench.registry import Registry

__all__ = ["Workers", "default_jobs", "GPU_GIB_PER_CELL"]

#: GPU memory per cell when ``--jobs 0`` on a GPU: above the largest `paper` preset's peak (FAN-Trans, 6.5 GB
#: at batch 32 in bench_gpu.py)
GPU_GIB_PER_CELL = 8


def default_jobs(overrides: list[str]) -> int:
    """``--jobs 0``: one cell per CPU core on the CPU; on a GPU (``engine.device=cuda...`` among the
    overrides, or auto with CUDA available) one cell per two cores and per GPU_GIB_PER_CELL of the
    device's memory, since one small cell leaves a GPU mostly idle (the default run on an H200 with 16
    cores: 74 s with 8 cells at a time, cells bound by their host side)."""
    cores = os.cpu_count() or 1
    device = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "engine.device"),
                  "auto")
    import torch

    if not (device.startswith("cuda") or device == "auto") or not torch.cuda.is_available():
        return cores
    index = int(device.split(":", 1)[1]) if device.startswith("cuda:") and device[5:].isdigit() else 0
    if index >= torch.cuda.device_count():  # no such device: one cell, whose engine names the problem
        return 1
    gib = torch.cuda.get_device_properties(index).total_memory / 2**30
    return max(1, min(cores // 2, int(gib // GPU_GIB_PER_CELL)))


class Workers:
    """The worker processes of a run with ``jobs > 1`` (spawned, so plugins come from entry points), started
    before the cells are planned: they start up and build the generated datasets that the run's protocols
    read while the parent composes every cell's recipe. ``jobs <= 1``: no processes, nothing built ahead."""

    def __init__(self, jobs: int):
        self.jobs, self.pool, self.building = jobs, None, set()

    def __enter__(self) -> Workers:
        if self.jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from aubench.locks import die_with_parent

            self.pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=die_with_parent)
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if self.pool is None:
            return
        if kind is not None:  # an error (a recipe that does not compose, Ctrl-C): say it now, not after a build
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()  # a dataset is marked built only once it is whole; its lock dies with it
        self.pool.shutdown(wait=kind is None, cancel_futures=kind is not None)

    def build(self, names: Iterable[str], registry: Registry) -> None:
        """Build the generated datasets among ``names`` that are missing or out of date, side by side (not
        each in turn by the first cell that needs it while the others wait); the cells wait on their locks."""
        from aubench.data.prepared import needs_building

        if self.pool is None:
            return
        for name in sorted(set(names) - self.building):
            if needs_building(registry.get("dataset", name)):
                self.building.add(name)
                self.pool.submit(_build_dataset, name)


def _build_dataset(name: str) -> None:
    """Build one dataset in a worker (under its lock, so the cells that need it wait for it). A failure is
    left to the cells, which build it again and record the error where it is read."""
    from aubench.data.prepared import ensure_prepared
    from aubench.registry import get_registry

    try:
        ensure_prepared(get_registry().get("dataset", name), progress=False)
    except Exception:  # noqa: BLE001 - reported by the cells that need the dataset
        pass
