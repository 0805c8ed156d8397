"""``aubench doctor``: everything a bug report needs, in one paste."""
from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata

__all__ = ["report"]

PACKAGES = ("aubench", "torch", "torchvision", "timm", "pluggy", "hydra-core", "omegaconf", "huggingface-hub",
            "safetensors", "numpy", "pandas", "tabulate", "pillow", "tqdm", "face-alignment", "opencv-python")


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def _imports_torch(module: str) -> bool:
    """Whether importing a plugin module (in a fresh interpreter) imports torch."""
    import subprocess

    code = f"import importlib, sys; importlib.import_module({module!r}); print('torch' in sys.modules)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip().endswith("True")


def report() -> str:
    from aubench.data.prepared import aubench_home, dataset_dir
    from aubench.registry import get_registry

    lines = ["aubench doctor", "", f"python      {sys.version.split()[0]} ({sys.executable})",
             f"platform    {platform.platform()}", f"cpu cores   {os.cpu_count()}", ""]
    lines += [f"{pkg:16s}{_version(pkg)}" for pkg in PACKAGES]
    try:
        import torch

        from aubench.results import cpu_name

        lines += ["", f"cpu             {cpu_name()}", f"torch threads   {torch.get_num_threads()}",
                  f"cuda available  {torch.cuda.is_available()}"]
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                lines.append(f"  cuda:{i} {torch.cuda.get_device_name(i)} (bf16 {torch.cuda.is_bf16_supported()})")
            lines.append(f"  CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
        lines.append("device used     " + ("cuda (bf16 autocast, channels_last)" if torch.cuda.is_available() else "cpu"))
    except Exception as exc:  # doctor must print even when torch is broken
        lines.append(f"torch import failed: {type(exc).__name__}: {exc}")
    lines += ["", "environment"]
    for key in sorted(k for k in os.environ if k.startswith(("AUBENCH_", "HF_", "TORCH_HOME", "CUDA_VISIBLE"))):
        lines.append(f"  {key}={os.environ[key]}")
    lines.append(f"  aubench home: {aubench_home()}")
    lines += ["", "plugins"]
    try:
        reg = get_registry()
        for p in reg.plugins():
            lines.append(f"  {p.name} {p.version} ({p.module}): {', '.join(p.hooks)}")
            lines += [f"  WARNING {p.name}: {problem}" for problem in p.problems]
            if p.name in reg._entry_points and _imports_torch(p.module):
                lines.append(f"  SLOW {p.name}: importing {p.module} imports torch, which adds seconds to every "
                             "aubench command; import torch inside the functions that need it")
        for name, msg in reg.load_errors.items():
            lines.append(f"  BROKEN {name}: {msg}")
        lines += ["", "datasets (prepared copies)"]
        for name in reg.names("dataset"):
            meta_path = dataset_dir(name) / "meta.json"
            if meta_path.is_file():
                try:
                    meta = json.loads(meta_path.read_text())
                    state = (f"{meta.get('n_frames')} frames, fingerprint {meta.get('fingerprint')}, "
                             f"{'complete' if meta.get('complete') else 'INCOMPLETE'}")
                except json.JSONDecodeError:
                    state = "CORRUPT meta.json"
            else:
                state = "not prepared" + (" (generated on first run)" if reg.specs["dataset"][name].synthetic else "")
            lines.append(f"  {name:24s} {state}  [{dataset_dir(name)}]")
    except Exception as exc:
        lines.append(f"  plugin loading failed: {type(exc).__name__}: {exc}")
    return "\n".join(lines)
