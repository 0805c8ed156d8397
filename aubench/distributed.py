"""One cell on several processes with ``torchrun`` and DistributedDataParallel.

    torchrun --nproc_per_node 2 -m aubench.cli run vmnc-bce --protocol synth-bp4d-3fold --fold 1 --jobs 1

Every rank plans the same cells and builds the same model and the same global batches (same seeds);
each batch is augmented whole, as in one process, then each rank trains on its contiguous share of it
(``batch_size`` must divide by the number of processes) and DDP averages the gradients, so a loss that
is a mean over the batch's frames gets the single-process gradient up to floating-point order. Rank 0
alone holds the cell's lock, writes the resume state, evaluates on every test frame and writes the
record (``environment.processes``); the other ranks train and return. The process group uses NCCL on
CUDA and gloo on the CPU. Not the same as one process: BatchNorm statistics are per rank (convert a
model with ``torch.nn.SyncBatchNorm`` on GPUs), and a loss normalised by a count that differs between
shares (masked frames) weighs the shares slightly differently.
"""
from __future__ import annotations

import os
from typing import Any

__all__ = ["world", "is_main", "setup", "share", "wrap"]


def world() -> tuple[int, int]:
    """(rank, number of processes) from torchrun's environment; (0, 1) without it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return world()[0] == 0


def setup(device: str) -> int:
    """Join the process group when started by torchrun; return the number of processes."""
    rank, size = world()
    if size > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return size


def share(batch: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """This rank's contiguous share of a whole batch (every per-frame tensor is cut the same way)."""
    from aubench.errors import ConfigError

    rank, size = world()
    n = len(batch["labels"])
    if size == 1:
        return batch
    if batch_size % size or "clip" in batch:
        raise ConfigError(f"batch_size={batch_size} must divide by the {size} processes (and clips are not "
                          "split across processes)")
    lo, hi = rank * n // size, (rank + 1) * n // size
    return {k: v[lo:hi] if hasattr(v, "shape") and v.ndim and v.shape[0] == n else v for k, v in batch.items()}


def wrap(model: Any, device: str) -> Any:
    """The model under DistributedDataParallel when several processes train it (else the model)."""
    if world()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [int(os.environ.get("LOCAL_RANK", "0"))] if device.startswith("cuda") else None
    # find_unused_parameters: some models leave parameters out of a step (e.g. a read-out used only in
    # training phases, a branch a recipe switches off); DDP would otherwise stop with an error
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
