"""A SynthAU variant as a prepared dataset: simulate every video, render it, write it; and its fingerprint."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from aubench import ConfigError, UnknownNameError
from aubench_synthau.geometry import DISPLACEMENTS
from aubench_synthau.identities import drop_episodes, identity, identity_landmarks, trajectory
from aubench_synthau.rendering import render_face
from aubench_synthau.variants import AU_COL, BP4D_TASKS, CUE_GAIN, DISFA_MIX, GENERATOR_VERSION, VARIANTS

__all__ = ["DEFAULT_PARAMS", "synth_fingerprint", "simulate", "render_video", "generate", "prepare"]

_HERE = Path(__file__).parent
#: the modules whose source is hashed into the fingerprint (what decides the generated pixels and labels)
GENERATOR_MODULES = ("variants", "geometry", "identities", "rendering", "generate")

DEFAULT_PARAMS: dict[str, Any] = {"variant": None, "seed": 0, "image_size": 64, "label_noise": 0.0, "unknown_rate": 0.01,
                                  "subjects": None, "frames_per_video": None}


def synth_fingerprint(name: str, params: dict[str, Any]) -> str:
    """Fingerprint of a generated variant: generator version, variant name and (defaulted) parameters."""
    unknown = set(params) - set(DEFAULT_PARAMS) - {"name"}
    if unknown:
        raise ConfigError(f"unknown SynthAU parameters {sorted(unknown)} for dataset {name!r}; "
                          f"known: {sorted(DEFAULT_PARAMS)}")
    full = {**DEFAULT_PARAMS, **{k: v for k, v in params.items() if k != "name"}}
    # the generator's own source is part of the fingerprint: any change to it regenerates cached data
    code = hashlib.sha256(b"".join((_HERE / f"{m}.py").read_bytes() for m in GENERATOR_MODULES)).hexdigest()[:12]
    blob = json.dumps({"v": GENERATOR_VERSION, "code": code, "name": name, **full}, sort_keys=True, default=str)
    return "synth-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def _subject_rng(seed: int, name: str, subject: str, stream: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{name}/{subject}/{stream}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def simulate(name: str, *, seed: int = 0, label_noise: float = 0.0, unknown_rate: float = 0.01,
             subjects: int | None = None, frames_per_video: int | None = None) -> list[dict[str, Any]]:
    """Per-video AU intensities, labels and render parameters (no pixels yet), deterministically.

    Each subject has its own random stream, so adding subjects never changes the others.
    """
    var = VARIANTS[name]
    subj_list = var.subjects[:subjects] if subjects else var.subjects
    fpv = frames_per_video or var.frames_per_video
    videos = []
    for subj in subj_list:
        rng = _subject_rng(seed, name, subj, "identity")
        ident = identity(rng, var.style)
        base = identity_landmarks(ident)
        for vid in var.videos:
            vr = _subject_rng(seed, name, subj, f"video/{vid}")
            T = fpv * var.stride
            mix = BP4D_TASKS[vid] if name == "synth-bp4d" else DISFA_MIX
            inten = trajectory(vr, T, mix, var.event_rate, var.tonic)[:: var.stride]
            frame0 = int(vr.integers(1, 3000)) if name == "synth-bp4d" else 1
            lab_aus = [AU_COL[a] for a in var.au_set]
            if var.label_kind == "occurrence":
                pos = drop_episodes(inten[:, lab_aus] >= 1.0, label_noise, vr)
                codes = pos.astype(np.int16)
                unknown = vr.random(codes.shape) < unknown_rate
                codes[unknown] = 9
            else:
                levels = np.floor(inten[:, lab_aus] + 0.5).astype(np.int16).clip(0, 5)
                keep = drop_episodes(levels >= 2, label_noise, vr) | (levels < 2)
                codes = np.where(keep, levels, 0).astype(np.int16)
            videos.append({"subject": subj, "video": vid, "identity": ident, "base": base, "intensity": inten,
                           "codes": codes, "frames": np.arange(frame0, frame0 + len(inten)),
                           "seed": int(vr.integers(0, 2**31))})
    return videos


def render_video(v: dict[str, Any], image_size: int, style: str):
    """Yield ``(image, landmarks_px, parsing)`` for every frame of a simulated video ``v``."""
    rng = np.random.default_rng(v["seed"])
    T = len(v["frames"])
    # slow head motion: smooth random walks for pose and lighting
    walk = lambda sd: np.cumsum(rng.normal(0, sd, T)) * 0.5 + rng.normal(0, sd * 2)  # noqa: E731
    angle, dx, dy = walk(0.03), walk(0.01), walk(0.01)
    gain = 1 + 0.08 * rng.standard_normal()
    light = rng.uniform(-0.6, 0.6)
    bgk = rng.uniform(0.8, 1.15)
    scl = rng.uniform(0.93, 1.07) + walk(0.005)
    for t in range(T):
        eff = v["intensity"][t].copy()
        for au, b in v["identity"]["bias"].items():
            eff[AU_COL[au]] = min(5.0, eff[AU_COL[au]] + b)
        lm = v["base"] + np.tensordot(eff * (CUE_GAIN / 5.0), DISPLACEMENTS, axes=1)
        pose = {"angle": float(np.clip(angle[t], -0.2, 0.2)), "dx": float(np.clip(dx[t], -0.05, 0.05)),
                "dy": float(np.clip(dy[t], -0.05, 0.05)), "scale": float(scl[t]), "gain": float(gain),
                "light": light, "bg": bgk}
        yield render_face(lm, eff, v["identity"], pose, image_size, style, rng)


def generate(out_dir: Path, *, name: str, variant: str | None = None, seed: int = 0, image_size: int = 64,
             label_noise: float = 0.0, unknown_rate: float = 0.01, subjects: int | None = None,
             frames_per_video: int | None = None, progress: bool = True) -> Path:
    """Generate a SynthAU variant as the prepared dataset ``name`` in ``out_dir`` (atomically).

    ``variant`` (default: ``name``) picks the shape (``synth-bp4d`` or ``synth-disfa``), so the same
    variant can be registered under several names with different parameters (e.g. label noise).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from aubench import PreparedWriter

    params = {"variant": variant, "seed": seed, "image_size": image_size, "label_noise": label_noise,
              "unknown_rate": unknown_rate, "subjects": subjects, "frames_per_video": frames_per_video}
    variant = variant or name
    if variant not in VARIANTS:
        raise UnknownNameError("SynthAU variant", variant, VARIANTS)
    var = VARIANTS[variant]
    videos = simulate(variant, seed=seed, label_noise=label_noise, unknown_rate=unknown_rate, subjects=subjects,
                      frames_per_video=frames_per_video)
    n = sum(len(v["frames"]) for v in videos)
    writer = PreparedWriter(out_dir, name=name, au_set=var.au_set, label_kind=var.label_kind,
                            image_size=image_size, n_frames=n, with_landmarks=True, with_parsing=True,
                            unknown_code=9 if var.label_kind == "occurrence" else None)
    rows, i = [], 0
    bar = tqdm(total=n, desc=f"generating {name}", unit="frame", disable=not progress)
    for v in videos:
        for t, (img, lm_px, par) in enumerate(render_video(v, image_size, var.style)):
            writer.frames[i], writer.landmarks[i], writer.parsing[i] = img, lm_px, par
            rows.append((v["subject"], v["video"], int(v["frames"][t]), *v["codes"][t].tolist()))
            i += 1
            bar.update(1)
    bar.close()
    index = pd.DataFrame(rows, columns=["subject", "video", "frame", *[f"AU{a}" for a in var.au_set]])
    return writer.finish(index, fingerprint=synth_fingerprint(name, params),
                         preprocessing_id=f"synthau-v{GENERATOR_VERSION}", source="SynthAU procedural generator",
                         generator_params=params,
                         detection_failed_fraction=0.0)


def prepare(out_dir: Path, progress: bool = True, **params: Any) -> Path:
    """The ``prepare`` of SynthAU's :class:`aubench.DatasetSpec`: generate into ``out_dir`` (named like the dataset)."""
    return generate(out_dir, name=Path(out_dir).name, progress=progress, **params)
