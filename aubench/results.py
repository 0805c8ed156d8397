"""The runs folder: where a cell's files live, atomic writes, the environment a record carries.

The record itself is typed in :mod:`aubench.records`.

Layout under the runs folder::

    <protocol@version>/<method>/<preset>[+<override hash>]/<fold>/seed<k>/
        record.json        the result record (written last, atomically: its presence means "finished")
        predictions.npz    probs, labels, mask, subject, video, frame of every evaluated frame
        checkpoint.pt      training state for resume (deleted when the cell finishes)
        model.safetensors  final weights
        failed.json        traceback of the last failed attempt (removed on success)
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["git_commit", "atomic_path", "atomic_write_text", "atomic_write_json", "environment", "cell_dir",
           "variant_name", "export_records"]


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) to write to; it replaces ``path`` only when the
    block finishes, so a crash (or a full disk) mid-write leaves the previous file, never half a new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def variant_name(preset: str, cfg_overrides: list[str], cfg_hash: str) -> str:
    """Folder name of a recipe variant: the preset, plus a hash when overrides change the recipe."""
    return f"{preset}+{cfg_hash}" if cfg_overrides else preset


def cell_dir(runs_dir: Path, protocol_id: str, method: str, variant: str, fold: str, seed: int) -> Path:
    return Path(runs_dir) / protocol_id / method / variant / str(fold) / f"seed{seed}"


@functools.cache
def git_commit(folder: Path | None = None) -> str | None:
    """The commit checked out where ``folder`` (default: aubench's own source) lies, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=folder or Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name and the instruction set torch's kernels use (e.g. ``AMD EPYC (AVX512)``): two
    machines that differ here order floating-point sums differently, so the same seed gives other F1."""
    import torch

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({torch.backends.cpu.get_cpu_capability()})"


def environment(device: str | None = None) -> dict[str, Any]:
    """What produced a number: package versions, git commit, device, the CPU and torch's CPU threads."""
    import numpy
    import torch

    from aubench import __version__

    env = {"aubench": __version__, "git_commit": git_commit(), "python": platform.python_version(),
           "platform": platform.platform(), "torch": torch.__version__, "numpy": numpy.__version__,
           "device": device, "cpu": cpu_name(), "threads": torch.get_num_threads(),
           "cuda": torch.version.cuda if torch.cuda.is_available() else None}
    try:
        import timm

        env["timm"] = timm.__version__
    except ImportError:
        pass
    if device and device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def export_records(runs_dir: Path, dest: Path, overwrite: bool = False) -> int:
    """Copy every ``record.json`` under ``runs_dir``, with its ``predictions.npz`` and any PNG drawn beside
    it, to the same relative place under ``dest``; return the number of records copied.

    A different record already at the destination is a finished result: it is only replaced with
    ``overwrite``.
    """
    import shutil

    from aubench.errors import ResultExistsError

    copied = 0
    for src in sorted(Path(runs_dir).rglob("record.json")):
        target = Path(dest) / src.relative_to(runs_dir)
        text = src.read_text()
        if target.exists() and target.read_text() != text and not overwrite:
            raise ResultExistsError(f"{target} holds a different record; pass --overwrite to replace it")
        for extra in [src.parent / "predictions.npz", *sorted(src.parent.glob("*.png"))]:
            if extra.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(extra, target.parent / extra.name)
        atomic_write_text(target, text)  # last: its presence means the cell's files are complete
        copied += 1
    return copied
