"""One cell on two processes (torchrun, gloo on the CPU) gives the single-process predictions."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from aubench.cli import main
from aubench.distributed import share, world

ARGS = ["run", "monet", "--protocol", "monet-toy", "model.head=vmnc", "epochs=3", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path):
    """monet-toy with the VMNC head: an MLP without BatchNorm and fully labelled frames, so each
    rank's half-batch mean loss averages (DDP) to the whole batch's."""
    assert main([*ARGS, "--runs-dir", str(tmp_path / "one"), "--jobs", "1"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("AUBENCH_PLUGINS", None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(_free_port()), "-m", "aubench.cli", *ARGS, "--runs-dir", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("done  monet") == 1  # rank 0 reports; rank 1 trains silently
    one, two = (next((tmp_path / d).rglob("predictions.npz")) for d in ("one", "two"))
    assert np.abs(np.load(one)["probs"] - np.load(two)["probs"]).max() < 1e-5
    records = [json.loads(next((tmp_path / d).rglob("record.json")).read_text()) for d in ("one", "two")]
    assert [r["environment"]["processes"] for r in records] == [1, 2]
    assert len(list((tmp_path / "two").rglob("record.json"))) == 1


def test_each_rank_takes_its_contiguous_share_of_the_batch(monkeypatch):
    import torch

    batch = {"labels": torch.arange(8).view(8, 1), "image": torch.zeros(8, 3, 2, 2), "stored_size": torch.tensor(64)}
    assert world() == (0, 1) and share(batch, 8) is batch
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    part = share(batch, 8)
    assert part["labels"].view(-1).tolist() == [4, 5, 6, 7] and part["image"].shape[0] == 4
    assert int(part["stored_size"]) == 64  # not a per-frame tensor: kept whole
    from aubench.errors import ConfigError

    with pytest.raises(ConfigError, match="must divide by the 2 processes"):
        share(batch, 7)
