"""Preparation of real datasets into aubench's prepared format: crop, resize, labels, masks.

Work is split per sequence and runs in parallel (``workers``); each finished sequence is written as
a shard under ``<out>.shards/``, so an interrupted preparation resumes where it stopped. Shards are
assembled into the prepared dataset only when all are done, and the dataset is marked complete
last. The record keeps a preprocessing id and the fraction of frames where face detection failed
(cropping changes F1 by points, so it is shown next to results).

Cropping (``crop``):

``detector``
    a face detector box per frame, enlarged by ``margin`` and made square (the papers crop on
    detector boxes; FAN-Trans uses unaligned 256 × 256 crops). When no face is found the previous
    box of the sequence is reused (or the whole frame, for the first frames) and the frame is
    counted as a detection failure.
``none``
    the images are already face crops (e.g. the JAA-Net / ME-GraphAU aligned crops): only resized.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from aubench import DatasetError

__all__ = ["prepare_sequences", "crop_square", "sfd_detector", "box_from_background", "preprocessing_id"]

PREP_VERSION = 1
Detector = Callable[[np.ndarray], "tuple[float, float, float, float] | None"]


def preprocessing_id(crop: str, size: int, margin: float, detector_name: str | None, landmarks: bool,
                     source: str) -> str:
    desc = {"v": PREP_VERSION, "crop": crop, "size": size, "margin": margin if crop == "detector" else None,
            "detector": detector_name if crop == "detector" else None, "landmarks": landmarks, "source": source}
    tag = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:8]
    return f"{source}-{crop}{'-' + detector_name if crop == 'detector' and detector_name else ''}-{size}px-{tag}"


def crop_square(img: np.ndarray, box: tuple[float, float, float, float] | None, margin: float, size: int) -> np.ndarray:
    """Crop a square around ``box`` (x0, y0, x1, y1) enlarged by ``margin``, pad with edge pixels, resize."""
    from PIL import Image

    h, w = img.shape[:2]
    if box is None:
        x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
        margin = 0.0
    else:
        x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * (1 + margin)
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    pad = max(0, -left, -top, left + s - w, top + s - h)
    if pad:
        img = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        left, top = left + pad, top + pad
    crop = img[top:top + s, left:left + s]
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR), np.uint8)


def box_from_background(img: np.ndarray, tol: int = 12) -> tuple[float, float, float, float] | None:
    """A detector for flat backgrounds: the bounding box of pixels that differ from the corner colour.

    Good for synthetic frames and studio captures with a uniform backdrop; real data should use
    :func:`sfd_detector`.
    """
    corner = img[0, 0].astype(int)
    diff = np.abs(img.astype(int) - corner).max(-1) > tol
    ys, xs = np.nonzero(diff)
    if len(xs) < 16:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def sfd_detector(weights: str | Path | None = None, device: str = "cpu") -> Detector:
    """face-alignment's S3FD detector with weights from a local file or the torch-hub cache."""
    import torch

    candidates = [Path(weights)] if weights else sorted(
        (Path(torch.hub.get_dir()) / "checkpoints").glob("s3fd*.pth"))
    if not candidates or not candidates[0].is_file():
        raise DatasetError(
            "No S3FD face-detector weights found (looked for "
            f"{weights or Path(torch.hub.get_dir()) / 'checkpoints' / 's3fd-619a316812.pth'}). On a machine with network "
            "run `python -c \"import face_alignment as fa; fa.FaceAlignment(fa.LandmarksType.TWO_D, device='cpu')\"` "
            "once and copy ~/.cache/torch/hub/checkpoints here, pass --detector-weights <file>, or use --crop none "
            "if your images are already face crops."
        )
    try:
        from face_alignment.detection.sfd.sfd_detector import SFDDetector
    except ImportError as exc:
        raise DatasetError("face detection needs face-alignment: pip install face-alignment") from exc
    det = SFDDetector(device=device, path_to_detector=str(candidates[0]))

    def detect(img: np.ndarray) -> tuple[float, float, float, float] | None:
        boxes = det.detect_from_image(img[..., ::-1].copy())  # face-alignment's detector expects BGR
        if not boxes:
            return None
        best = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]) * (b[4] if len(b) > 4 else 1))
        return tuple(float(v) for v in best[:4])

    return detect


def _images_of(seq: Any) -> tuple[list[np.ndarray | None], list[str]]:
    """Decode a sequence's frames (image files or the 1-based frames of a video), and name every file that
    could not be decoded (``"path\tproblem"``); its frames are counted as frames without image."""
    if seq.video_path is not None:
        import cv2

        cap = cv2.VideoCapture(str(seq.video_path))
        out: list[np.ndarray | None] = []
        try:
            for _ in range(len(seq.frames)):
                ok, frame = cap.read()
                out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if ok else None)
        finally:
            cap.release()
        got = sum(o is not None for o in out)
        bad = [] if got == len(out) else [f"{seq.video_path}\tdecodes {got} of the {len(out)} frames its labels cover"]
        return out, bad
    from PIL import Image, UnidentifiedImageError

    out, bad = [], []
    for p in seq.images:
        if p is None:
            out.append(None)
            continue
        try:
            with Image.open(p) as img:
                out.append(np.asarray(img.convert("RGB")))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            out.append(None)  # unreadable image: counted as missing, and named
            bad.append(f"{p}\tcannot be decoded ({str(exc).splitlines()[0][:80]})")
    return out, bad


def inputs_hash(seq: Any) -> str:
    """What a sequence's shard was made from: its labels, and each source file's path, size and time."""
    digest = hashlib.sha256()
    digest.update(np.asarray(seq.frames).tobytes() + np.asarray(seq.codes).tobytes())
    for p in [seq.video_path] if seq.video_path is not None else seq.images:
        try:
            st = Path(p).stat() if p is not None else None
        except OSError:
            st = None
        digest.update(f"{p}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return digest.hexdigest()[:16]


def _process(args: tuple) -> str:
    seq, shard, crop, size, margin, detector = args
    images, bad = _images_of(seq)
    keep, crops, failed, box = [], [], 0, None
    for i, img in enumerate(images):
        if img is None:
            continue
        if crop == "detector":
            found = detector(img)
            if found is None:
                failed += 1
            else:
                box = found
            crops.append(crop_square(img, box, margin, size))
        else:
            crops.append(crop_square(img, None, 0.0, size))
        keep.append(i)
    keep_arr = np.asarray(keep, np.int64)
    tmp = shard.with_suffix(".tmp.npz")
    np.savez(tmp, stats=np.array([len(images), len(images) - len(keep), failed]), inputs=np.array(inputs_hash(seq)),
             bad=np.array(bad, dtype=str),
             frames=np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
             frame_numbers=seq.frames[keep_arr] if len(keep) else np.zeros(0, np.int64),
             codes=seq.codes[keep_arr] if len(keep) else np.zeros((0, seq.codes.shape[1]), np.int16))
    tmp.replace(shard)
    return f"{seq.subject}/{seq.video}"


def _shard_inputs(path: Path) -> str | None:
    try:
        with np.load(path) as z:
            return str(z["inputs"]) if "inputs" in z else None
    except (OSError, ValueError):
        return None  # a shard that cannot be read is redone


def _picklable(obj: Any) -> bool:
    import pickle

    try:
        pickle.dumps(obj)
        return True
    except Exception:
        return False


def prepare_sequences(out_dir: Path, *, name: str, au_set: tuple[int, ...], label_kind: str, sequences: list,
                      crop: str, image_size: int, margin: float = 0.25, detector: Detector | None = None,
                      detector_name: str | None = None, landmarker: Callable | None = None, source: str,
                      workers: int = 1, progress: bool = True, unknown_code: int | None = 9,
                      extra_meta: dict | None = None, scan: Any = None) -> Path:
    """Crop every sequence into a shard (resumable, parallel), then assemble the prepared dataset.

    A shard of an interrupted run is reused only when its sequence's labels and source files (paths,
    sizes, modification times) are unchanged (:func:`inputs_hash`); otherwise it is redone, with a
    warning. Files that cannot be decoded are named (at most 10 warnings, all in ``scan``'s report).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from aubench import PreparedWriter, parsing_from_landmarks

    if crop not in ("detector", "none"):
        raise DatasetError(f"crop={crop!r}; use 'detector' or 'none'")
    if crop == "detector" and detector is None:
        raise DatasetError("crop=detector needs a face detector")
    out_dir = Path(out_dir)
    pid = preprocessing_id(crop, image_size, margin, detector_name, landmarker is not None, source)
    shards = out_dir.with_name(out_dir.name + ".shards")
    stamp = shards / "preprocessing_id"
    if shards.exists() and (not stamp.is_file() or stamp.read_text() != pid):
        shutil.rmtree(shards)  # different settings: the old shards cannot be resumed
    shards.mkdir(parents=True, exist_ok=True)
    stamp.write_text(pid)
    todo = [(s, shards / f"{s.subject}_{s.video}.npz") for s in sequences]
    stale = [p for s, p in todo if p.exists() and _shard_inputs(p) != inputs_hash(s)]
    if stale:  # labels or images changed since the shard was made: it is made again
        warnings.warn(f"{len(stale)} finished sequence(s) of an interrupted preparation are redone: their labels or "
                      f"images changed since (e.g. {stale[0].stem})", stacklevel=2)
        for p in stale:
            p.unlink()
    pending = [(s, p, crop, image_size, margin, detector) for s, p in todo if not p.exists()]
    bar = tqdm(total=len(todo), initial=len(todo) - len(pending), desc=f"preparing {name}", unit="seq",
               disable=not progress)
    if workers > 1 and len(pending) > 1 and _picklable(detector):
        from aubench import die_with_parent

        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
            for _ in pool.map(_process, pending):
                bar.update(1)
    else:  # a detector holding a model (S3FD) runs in this process; it is the bottleneck anyway
        for job in pending:
            _process(job)
            bar.update(1)
    bar.close()

    loaded = [(s, np.load(p)) for s, p in todo]
    bad = [tuple(str(b).split("\t", 1)) for _, z in loaded for b in z["bad"]]
    if scan is not None:
        scan.add_each("warning", bad, "copy these files again; their frames are counted as frames without image")
    for where, why in bad[:10]:
        warnings.warn(f"{where}: {why}; its frames are counted as frames without image", stacklevel=2)
    if len(bad) > 10:
        warnings.warn(f"{len(bad) - 10} more file(s) could not be decoded (the --report file lists them)", stacklevel=2)
    total = dict(zip(("frames", "missing", "failed"), np.sum([z["stats"] for _, z in loaded], 0).tolist()))
    n = sum(len(z["frame_numbers"]) for _, z in loaded)
    if n == 0:
        raise DatasetError(f"no frame of {name} could be prepared; run `aubench data check {name} <raw-root>`")
    writer = PreparedWriter(out_dir, name=name, au_set=au_set, label_kind=label_kind, image_size=image_size,
                            n_frames=n, with_landmarks=landmarker is not None, with_parsing=landmarker is not None,
                            unknown_code=unknown_code)
    rows, i = [], 0
    for seq, z in loaded:
        k = len(z["frame_numbers"])
        writer.frames[i:i + k] = z["frames"]
        if landmarker is not None:
            for j in range(k):
                lm = landmarker(z["frames"][j])
                if lm is None:  # no landmarks found: NaN landmarks and an all-background parsing map
                    writer.landmarks[i + j] = np.nan
                    writer.parsing[i + j] = 0
                else:
                    writer.landmarks[i + j] = lm
                    writer.parsing[i + j] = parsing_from_landmarks(lm, image_size)
        rows += [(seq.subject, seq.video, int(f), *c.tolist()) for f, c in zip(z["frame_numbers"], z["codes"])]
        i += k
    index = pd.DataFrame(rows, columns=["subject", "video", "frame", *[f"AU{a}" for a in au_set]])
    detected = max(total["frames"] - total["missing"], 1)
    result = writer.finish(index, preprocessing_id=pid, source=source,
                           detection_failed_fraction=total["failed"] / detected if crop == "detector" else 0.0,
                           frames_without_image=total["missing"], undecodable_files=len(bad),
                           shards_redone=len(stale), **(extra_meta or {}))
    shutil.rmtree(shards)
    return result
