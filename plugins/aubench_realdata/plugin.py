"""Registers BP4D and DISFA (prepared from a licensed copy) and their standard protocols.

Protocols (subject lists are data, see :mod:`aubench.protocols`):

* ``bp4d-3fold@jaanet-v1``, ``disfa-3fold@jaanet-v1``: JAA-Net partitions; aubench fold k tests
  part k (mapping to ME-GraphAU / JAA-Net / FG-Net numbering in the fold convention text);
* ``bp4d-to-disfa@v1``: train on all 41 BP4D subjects, test on all 27 DISFA subjects, AUs 1, 2, 4,
  6, 12 (DISFA intensity >= 2);
* ``bp4d-to-disfa-part1@fgnet-v1``: FG-Net's variant: train on BP4D parts 2+3 (its ``bp4d_0``
  checkpoint), test on DISFA part 1 only.

Evaluation uses every coded frame with a valid crop; the record reports the count, which differs
from the published lists (JAA-Net drops 271 BP4D frames and thousands of DISFA frames).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aubench import (
    BP4D_AUS,
    BP4D_SUBJECTS,
    DISFA_AUS,
    DISFA_EVAL_AUS,
    DISFA_SUBJECTS,
    FOLD_CONVENTION,
    JAANET_BP4D_PARTS,
    JAANET_DISFA_PARTS,
    DatasetError,
    DatasetSpec,
    Fold,
    ProtocolSpec,
    hookimpl,
    jaanet_folds,
    transfer_folds,
    union_folds,
)

__version__ = "0.1.0"

UNION_AUS = tuple(sorted(set(BP4D_AUS) | set(DISFA_AUS)))  # the 17 AUs of the ABAW3 authors' merged set
CROSS_AUS = (1, 2, 4, 6, 12)


@hookimpl
def aubench_register_datasets():
    return [
        DatasetSpec(name="bp4d", au_set=BP4D_AUS, label_kind="occurrence", prepare="aubench_realdata.plugin:prepare_bp4d",
                    check="aubench_realdata.plugin:check_bp4d", subjects=BP4D_SUBJECTS,
                    description="BP4D-Spontaneous (licensed): 41 subjects x 8 tasks, 12 AUs, 0/1/9 occurrence"),
        DatasetSpec(name="disfa", au_set=DISFA_AUS, label_kind="intensity", prepare="aubench_realdata.plugin:prepare_disfa",
                    check="aubench_realdata.plugin:check_disfa", subjects=DISFA_SUBJECTS,
                    description="DISFA (licensed): 27 subjects, left camera, 12 AUs with 0-5 intensities"),
        DatasetSpec(name="bp4d+disfa", au_set=UNION_AUS, label_kind="occurrence", derived=True,
                    prepare="aubench.data.union:prepare_union", fingerprint="aubench.data.union:union_fingerprint",
                    subjects=BP4D_SUBJECTS + DISFA_SUBJECTS, params={"sources": ["bp4d", "disfa"], "positive_threshold": 2},
                    description="BP4D + DISFA over their 17 AUs, unknown where a dataset does not label (built from "
                                "the two prepared datasets on first use)"),
    ]


@hookimpl
def aubench_register_protocols():
    return [
        ProtocolSpec(name="bp4d-3fold", version="jaanet-v1", train_dataset="bp4d", test_dataset="bp4d",
                     folds=jaanet_folds(JAANET_BP4D_PARTS), eval_aus=BP4D_AUS, fold_convention=FOLD_CONVENTION,
                     description="subject-exclusive 3-fold CV on BP4D with the JAA-Net partitions, 12 AUs"),
        ProtocolSpec(name="disfa-3fold", version="jaanet-v1", train_dataset="disfa", test_dataset="disfa",
                     folds=jaanet_folds(JAANET_DISFA_PARTS), eval_aus=DISFA_EVAL_AUS, positive_threshold=2,
                     fold_convention=FOLD_CONVENTION,
                     description="subject-exclusive 3-fold CV on DISFA with the JAA-Net partitions, 8 AUs at "
                                 "intensity >= 2"),
        ProtocolSpec(name="bp4d-to-disfa", version="v1", train_dataset="bp4d", test_dataset="disfa",
                     folds=(Fold("all", DISFA_SUBJECTS, BP4D_SUBJECTS),), eval_aus=CROSS_AUS, train_aus=BP4D_AUS,
                     positive_threshold=2,
                     description="cross-dataset: train on all of BP4D (12 AUs), test on all 27 DISFA subjects, "
                                 "AUs 1, 2, 4, 6, 12 (DISFA intensity >= 2)"),
        ProtocolSpec(name="bp4d-folds-to-disfa", version="jaanet-v1", train_dataset="bp4d", test_dataset="disfa",
                     models_from="bp4d-3fold@jaanet-v1",
                     folds=transfer_folds(jaanet_folds(JAANET_BP4D_PARTS), DISFA_SUBJECTS, BP4D_SUBJECTS),
                     eval_aus=CROSS_AUS, train_aus=BP4D_AUS, positive_threshold=2, fold_convention=FOLD_CONVENTION,
                     description="cross-dataset from bp4d-3fold's three fold models (no training of its own), "
                                 "tested on all 27 DISFA subjects, AUs 1, 2, 4, 6, 12 (DISFA intensity >= 2)"),
        ProtocolSpec(name="bp4d-to-disfa-part1", version="fgnet-v1", train_dataset="bp4d", test_dataset="disfa",
                     folds=(Fold("part1", JAANET_DISFA_PARTS[0], JAANET_BP4D_PARTS[1] + JAANET_BP4D_PARTS[2]),),
                     eval_aus=CROSS_AUS, train_aus=BP4D_AUS, positive_threshold=2,
                     description="FG-Net's cross-dataset variant: train on BP4D parts 2+3 (its bp4d_0), test on "
                                 "DISFA part 1 only (9 subjects), AUs 1, 2, 4, 6, 12"),
        ProtocolSpec(name="bp4d+disfa-3fold", version="jaanet-v1", train_dataset="bp4d+disfa", test_dataset="bp4d+disfa",
                     folds=union_folds(jaanet_folds(JAANET_BP4D_PARTS), jaanet_folds(JAANET_DISFA_PARTS)),
                     eval_aus=UNION_AUS, fold_convention=FOLD_CONVENTION,
                     description="BP4D and DISFA together (the ABAW3 union training): fold k tests both datasets' "
                                 "JAA-Net part k, 17 AUs, each scored on the frames that label it"),
    ]


@hookimpl
def aubench_register_commands(cli):
    """The options of ``aubench data check`` / ``data prepare`` for BP4D and DISFA (passed to
    :func:`check_bp4d` / :func:`prepare_bp4d` and their DISFA twins as keyword arguments)."""
    import os

    frames = ("--frames-dir", {"type": Path, "default": None,
                               "help": "BP4D: folder holding <SUBJ>/<TASK>/; DISFA: pre-extracted frames <SN>/<frame>.jpg"})
    check = cli.add_options("data check", ("bp4d", "disfa"), "BP4D / DISFA (plugin realdata)")
    check.add_argument(frames[0], **frames[1])
    check.add_argument("--quick", action="store_true",
                       help="only check that images exist and read video headers (default: decode every image and "
                            "video frame the labels use)")
    prep = cli.add_options("data prepare", ("bp4d", "disfa"), "BP4D / DISFA (plugin realdata)")
    prep.add_argument(frames[0], **frames[1])
    prep.add_argument("--from-list", type=Path, default=None,
                      help="a JAA-Net / ME-GraphAU list file of aligned crops (labels still come from raw_root)")
    prep.add_argument("--image-root", type=Path, default=None, help="folder the list file's paths are relative to")
    prep.add_argument("--crop", choices=["detector", "none"], default="detector",
                      help="detector: S3FD face box + margin; none: images are already face crops")
    prep.add_argument("--size", dest="image_size", type=int, default=256,
                      help="output crop size (default 256, as FAN-Trans)")
    prep.add_argument("--margin", type=float, default=0.25, help="box enlargement before the square crop")
    prep.add_argument("--detector-weights", type=Path, default=None, help="local S3FD weights file")
    prep.add_argument("--landmarks", action="store_true", help="also store 68-point landmarks and parsing maps")
    prep.add_argument("--device", default="cpu", help="device of the face detector and landmark model")
    prep.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                      help="parallel preparation processes")


# --------------------------------------------------------------------------- check / prepare


def _check_options(raw_root: Path, frames_dir: Path | None = None, image_size: int = 256, margin: float = 0.25,
                   workers: int = 1, from_list: Path | None = None, image_root: Path | None = None) -> None:
    """Refuse option values that would fail deep inside preparation, naming the option."""
    for flag, path in (("raw root", raw_root), ("--frames-dir", frames_dir), ("--from-list", from_list),
                       ("--image-root", image_root)):
        if path is not None and not Path(path).exists():
            raise DatasetError(f"{flag} {path} does not exist; point it at your copy")
    if frames_dir is not None and not Path(frames_dir).is_dir():
        raise DatasetError(f"--frames-dir {frames_dir} is not a folder")
    if image_size < 8:
        raise DatasetError(f"--size {image_size}: the crop size must be at least 8 pixels (256 is FAN-Trans's)")
    if margin < 0:
        raise DatasetError(f"--margin {margin}: the box enlargement cannot be negative")
    if workers < 1:
        raise DatasetError(f"--workers {workers}: use at least 1")


def check_bp4d(raw_root: Path, frames_dir: Path | None = None, quick: bool = False, **_: Any):
    from aubench_realdata.readers import scan_bp4d

    _check_options(raw_root, frames_dir)
    return scan_bp4d(raw_root, frames_dir=frames_dir, decode=not quick)


def check_disfa(raw_root: Path, frames_dir: Path | None = None, quick: bool = False, **_: Any):
    from aubench_realdata.readers import scan_disfa

    _check_options(raw_root, frames_dir)
    return scan_disfa(raw_root, frames_dir=frames_dir, decode=not quick)


def _raise_on_errors(scan: Any) -> None:
    for issue in scan.issues:
        if issue.level == "warning":
            import warnings

            warnings.warn(str(issue), stacklevel=3)
    if scan.errors:
        raise DatasetError("cannot prepare: " + "; ".join(str(e) for e in scan.errors))


def _from_list(scan: Any, list_file: Path, image_root: Path, zero_based: bool | None) -> None:
    """Point each sequence's frames at the aligned crops named in a JAA-Net / ME-GraphAU list file."""
    from aubench_realdata.readers import parse_list_file

    entries = parse_list_file(list_file)
    if zero_based is None:  # ME-GraphAU / JAA-Net DISFA crops are named by 0-based label line
        zero_based = scan.dataset == "disfa" and any(f == 0 for _, _, f, _ in entries)
    by_key = {(s, v, f + 1 if zero_based else f): Path(image_root) / rel for s, v, f, rel in entries}
    for seq in scan.sequences:
        seq.video_path = None
        seq.images = [by_key.get((seq.subject, seq.video, int(f))) for f in seq.frames]
    scan.sequences = [s for s in scan.sequences if any(p is not None for p in s.images)]


_LAYOUTS = {  # dataset -> (scanner, label kind, AU set, unknown code)
    "bp4d": ("scan_bp4d", "occurrence", BP4D_AUS, 9),
    "disfa": ("scan_disfa", "intensity", DISFA_AUS, None),
}


def _prepare(name: str, out_dir: Path, raw_root: Path, *, frames_dir: Path | None, from_list: Path | None,
             image_root: Path | None, crop: str, image_size: int, margin: float, detector: Any,
             detector_weights: Path | None, device: str, landmarks: bool, workers: int, progress: bool,
             zero_based: bool | None, report: Path | None = None) -> Path:
    from aubench_realdata import readers
    from aubench_realdata.prepare import prepare_sequences, sfd_detector

    _check_options(raw_root, frames_dir, image_size, margin, workers, from_list, image_root)
    scanner, label_kind, au_set, unknown_code = _LAYOUTS[name]
    scan = getattr(readers, scanner)(raw_root, frames_dir=frames_dir, need_images=from_list is None)
    if from_list is not None:
        _from_list(scan, from_list, image_root or Path(from_list).parent, zero_based)
        crop = "none"
    if report is not None and scan.errors:
        scan.write_report(report)
    _raise_on_errors(scan)
    detector_name = None
    if crop == "detector":
        if detector is None:
            detector, detector_name = sfd_detector(detector_weights, device), "s3fd"
        else:
            detector_name = getattr(detector, "__name__", "custom")
    landmarker = fan_landmarker(device) if landmarks else None
    out = prepare_sequences(out_dir, name=name, au_set=au_set, label_kind=label_kind, sequences=scan.sequences,
                            crop=crop, image_size=image_size, margin=margin, detector=detector,
                            detector_name=detector_name, landmarker=landmarker,
                            source=f"{name}-{'list' if from_list else 'raw'}", workers=workers, progress=progress,
                            unknown_code=unknown_code, scan=scan,
                            extra_meta={"raw_counts": {k: v for k, v in scan.counts.items() if k != "subject_ids"}})
    if report is not None:
        scan.write_report(report)
    return out


def prepare_bp4d(out_dir: Path, raw_root: Path, *, frames_dir: Path | None = None, from_list: Path | None = None,
                 image_root: Path | None = None, crop: str = "detector", image_size: int = 256, margin: float = 0.25,
                 detector: Any = None, detector_weights: Path | None = None, device: str = "cpu",
                 landmarks: bool = False, workers: int = 1, progress: bool = True, zero_based: bool | None = None,
                 report: Path | None = None) -> Path:
    """Prepare BP4D from its raw layout (or from aligned crops listed in ``from_list``)."""
    return _prepare("bp4d", **locals())


def prepare_disfa(out_dir: Path, raw_root: Path, *, frames_dir: Path | None = None, from_list: Path | None = None,
                  image_root: Path | None = None, crop: str = "detector", image_size: int = 256, margin: float = 0.25,
                  detector: Any = None, detector_weights: Path | None = None, device: str = "cpu",
                  landmarks: bool = False, workers: int = 1, progress: bool = True,
                  zero_based: bool | None = None, report: Path | None = None) -> Path:
    """Prepare DISFA from labels + left-camera videos (or extracted frames, or listed aligned crops)."""
    return _prepare("disfa", **locals())


def fan_landmarker(device: str = "cpu"):
    """68-point landmarks on a face crop with face-alignment's FAN, weights from the torch-hub cache."""
    import torch


    cache = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(cache.glob("2DFAN4*")):
        raise DatasetError(
            f"No FAN landmark weights (2DFAN4*) in {cache}. On a machine with network run `python -c \"import "
            "face_alignment as fa; fa.FaceAlignment(fa.LandmarksType.TWO_D, device='cpu')\"` once and copy "
            "~/.cache/torch/hub/checkpoints here, or prepare without --landmarks."
        )
    import face_alignment

    fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device, face_detector="sfd")

    def landmarks(crop):
        h, w = crop.shape[:2]
        preds = fa.get_landmarks_from_image(crop, detected_faces=[(0, 0, w, h)])
        return preds[0] if preds else None

    return landmarks
