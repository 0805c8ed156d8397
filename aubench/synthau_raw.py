"""SynthAU written as raw trees in the official BP4D and DISFA layouts.

The real-dataset readers are exercised on every test run by preparing these trees through the same
code path as a licensed copy. The trees contain the awkward cases real copies have:

BP4D (``AUCoding/AU_OCC/<SUBJ>_<TASK>.csv`` + ``<SUBJ>/<TASK>/<frame>.jpg``)
    label 9 (unknown), missing images, zero-padding that varies by subject (4 digits for F*, 3 for
    M*, none for one sequence), a truncated label file (last row cut), a subject folder without
    labels, and JAA-Net-style CRLF list files of aligned crops.
DISFA (``ActionUnit_Labels/<SN>/<SN>_au<N>.txt`` + ``Videos_LeftCamera/LeftVideo<SN>_comp.avi``)
    1-based label frames, a video that ends before its labels, a truncated label file, and
    ME-GraphAU-style 0-based pre-extracted crops with a list file.

Raw frames are larger than the face (the face sits at a per-video offset on a background canvas),
so cropping is a real step; the aligned crops are the face images themselves.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aubench.synthau import VARIANTS, render_video, simulate

__all__ = ["write_bp4d_tree", "write_disfa_tree", "RAW_CANVAS"]

RAW_CANVAS = 1.5  # raw frame side / face crop side


def _canvas(face: np.ndarray, offset: tuple[int, int], bg: tuple[int, int, int]) -> np.ndarray:
    s = face.shape[0]
    side = int(round(s * RAW_CANVAS))
    out = np.empty((side, side, 3), np.uint8)
    out[:] = bg
    y, x = offset
    out[y:y + s, x:x + s] = face
    return out


def _offsets(rng: np.random.Generator, size: int) -> tuple[int, int]:
    room = int(round(size * RAW_CANVAS)) - size
    return int(rng.integers(0, room + 1)), int(rng.integers(0, room + 1))


def write_bp4d_tree(root: Path, *, subjects: int = 6, frames_per_video: int = 4, image_size: int = 32,
                    seed: int = 0, awkward: bool = True, videos: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Write synth-bp4d as a BP4D raw tree under ``root``; return what was planted (for tests)."""
    from PIL import Image

    root = Path(root)
    occ = root / "AUCoding" / "AU_OCC"
    occ.mkdir(parents=True, exist_ok=True)
    var = VARIANTS["synth-bp4d"]
    sims = [v for v in simulate("synth-bp4d", seed=seed, subjects=subjects, frames_per_video=frames_per_video,
                                unknown_rate=0.05) if videos is None or v["video"] in videos]
    rng = np.random.default_rng(seed)
    planted: dict[str, Any] = {"missing_images": [], "truncated": None, "unlabelled_subject": None,
                               "unpadded": None, "crops": {}, "sequences": []}
    for k, v in enumerate(sims):
        subj, task = v["subject"], v["video"]
        width = 4 if subj.startswith("F") else 3
        if awkward and k == 0:
            width = 3
        if awkward and k == 1:
            width, planted["unpadded"] = 0, f"{subj}/{task}"
        seq_dir = root / subj / task
        seq_dir.mkdir(parents=True, exist_ok=True)
        off = _offsets(rng, image_size)
        frames = v["frames"]
        for t, (img, _, _) in enumerate(render_video(v, image_size, var.style)):
            name = f"{int(frames[t]):0{width}d}.jpg" if width else f"{int(frames[t])}.jpg"
            Image.fromarray(_canvas(img, off, (200, 196, 188))).save(seq_dir / name, quality=95)
            planted["crops"][(subj, task, int(frames[t]))] = (img, off)
        if awkward and k == 2:  # an image the label file refers to is missing on disk
            gone = sorted(seq_dir.iterdir())[1]
            gone.unlink()
            planted["missing_images"].append(f"{subj}/{task}/{gone.name}")
        header = ["0", *[str(a) for a in range(1, 40)]]
        lines = [",".join(header)]
        for t, fr in enumerate(frames):
            row = {str(a): "0" for a in range(1, 40)}
            for j, au in enumerate(var.au_set):
                row[str(au)] = str(int(v["codes"][t, j]))
            lines.append(",".join([str(int(fr)), *[row[h] for h in header[1:]]]))
        text = "\n".join(lines) + "\n"
        if awkward and k == 3:  # the last row is cut mid-line, as in a partial copy
            text = text.rstrip("\n")
            text = text[: text.rfind(",", 0, len(text) - 20)] + "\n"
            planted["truncated"] = f"{subj}_{task}.csv"
        (occ / f"{subj}_{task}.csv").write_text(text)
        planted["sequences"].append((subj, task))
    if awkward:
        extra = root / "F099" / "T1"
        extra.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((image_size, image_size, 3), np.uint8)).save(extra / "0001.jpg")
        planted["unlabelled_subject"] = "F099"
        _write_crop_list(root / "aligned", planted["crops"], crlf=True, prefix="BP4D",
                         key=lambda s, t, f: f"{s}/{t}/{f:04d}.jpg")
    planted["sims"] = sims
    return planted


def _write_crop_list(out: Path, crops: dict, *, crlf: bool, prefix: str, key: Any) -> Path:
    """Aligned crops in a folder plus a list file of their paths, JAA-Net/ME-GraphAU style."""
    from PIL import Image

    lines = []
    for (subj, task, frame), (img, _) in sorted(crops.items()):
        rel = key(subj, task, frame)
        path = out / prefix / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, quality=95)
        lines.append(f"{prefix}/{rel}")
    sep = "\r\n" if crlf else "\n"
    listing = out / "img_path_list.txt"
    listing.write_bytes((sep.join(lines) + sep).encode())
    return listing


def write_disfa_tree(root: Path, *, subjects: int = 3, frames_per_video: int = 24, image_size: int = 32,
                     seed: int = 0, awkward: bool = True) -> dict[str, Any]:
    """Write synth-disfa as a DISFA raw tree (labels + left-camera AVI videos) under ``root``."""
    import cv2

    root = Path(root)
    var = VARIANTS["synth-disfa"]
    sims = simulate("synth-disfa", seed=seed, subjects=subjects, frames_per_video=frames_per_video)
    rng = np.random.default_rng(seed + 1)
    planted: dict[str, Any] = {"short_video": None, "truncated": None, "crops": {}, "subjects": []}
    (root / "Videos_LeftCamera").mkdir(parents=True, exist_ok=True)
    for k, v in enumerate(sims):
        sn = v["subject"]
        lab_dir = root / "ActionUnit_Labels" / sn
        lab_dir.mkdir(parents=True, exist_ok=True)
        n = len(v["frames"])
        for j, au in enumerate(var.au_set):
            lines = [f"{t + 1},{int(v['codes'][t, j])}" for t in range(n)]
            if awkward and k == 1 and au == 12:
                lines = lines[: n - 3]
                planted["truncated"] = f"{sn}/{sn}_au12.txt"
            (lab_dir / f"{sn}_au{au}.txt").write_text("\n".join(lines) + "\n")
        side = int(round(image_size * RAW_CANVAS))
        writer = cv2.VideoWriter(str(root / "Videos_LeftCamera" / f"LeftVideo{sn}_comp.avi"),
                                 cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (side, side))
        off = _offsets(rng, image_size)
        keep = n - 2 if awkward and k == 0 else n  # this video ends before its labels
        for t, (img, _, _) in enumerate(render_video(v, image_size, var.style)):
            planted["crops"][(sn, "", t + 1)] = (img, off)
            if t < keep:
                writer.write(cv2.cvtColor(_canvas(img, off, (70, 90, 140)), cv2.COLOR_RGB2BGR))
        writer.release()
        if keep < n:
            planted["short_video"] = (sn, n - keep)
        planted["subjects"].append(sn)
    if awkward:  # ME-GraphAU names crops by 0-based label line: SN001/0.png ... (LF endings)
        _write_crop_list(root / "aligned", planted["crops"], crlf=False, prefix="DISFA",
                         key=lambda s, t, f: f"{s}/{f - 1}.png")
    planted["sims"] = sims
    return planted
