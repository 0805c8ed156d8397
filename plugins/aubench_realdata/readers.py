"""Readers for the official BP4D-Spontaneous and DISFA layouts, and for aligned-crop list files.

Every problem is collected as an :class:`Issue` naming the file and what to do, so ``aubench data
check`` can report all of them at once; preparation refuses to start on errors and prints warnings.
Layout facts and their sources are in the project's research notes (BP4D §1, DISFA §2).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aubench import BP4D_AUS, DISFA_AUS, DISFA_SUBJECTS, DatasetError, Issue
from aubench import Scan as CoreScan

__all__ = ["Issue", "Sequence", "Scan", "scan_bp4d", "scan_disfa", "read_bp4d_csv", "read_disfa_labels",
           "parse_list_file"]

BP4D_FRAME_DIRS = ("", "Sequences", "2D+3D", "BP4D-training", "BP4D_Sequences")
UNKNOWN = -1  # code for "no label" in prepared DISFA data (BP4D keeps its own 9)


@dataclass
class Sequence:
    """One labelled video: frame numbers, raw label codes [n, K], and where its images are."""

    subject: str
    video: str
    frames: np.ndarray
    codes: np.ndarray
    images: list[Path | None] = field(default_factory=list)  # one per frame (BP4D / pre-extracted)
    video_path: Path | None = None  # DISFA: decode these 1-based frames from the AVI


@dataclass
class Scan(CoreScan):
    """:class:`aubench.Scan` plus the labelled sequences found, ready for preparation."""

    sequences: list[Sequence] = field(default_factory=list)


# --------------------------------------------------------------------------- BP4D


def read_bp4d_csv(path: Path, aus: tuple[int, ...], scan: Scan) -> tuple[np.ndarray, np.ndarray] | None:
    """Frame numbers and codes [n, K] (0/1/9) of one AU_OCC file; problems go to ``scan``."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        scan.add("error", path, f"cannot be read ({exc})", "check the file permissions or copy it again")
        return None
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines:
        scan.add("error", path, "is empty", "copy this file again from the BP4D distribution")
        return None
    header = [h.strip() for h in lines[0].split(",")]
    missing = [str(a) for a in aus if str(a) not in header]
    if not header or header[0] != "0" or missing:
        scan.add("error", path, f"has an unexpected header (first cells {header[:5]}, missing AU columns {missing})",
                 "AU_OCC files start with a header row '0,1,2,...' (frame, then AU numbers); replace this file")
        return None
    cols = [header.index(str(a)) for a in aus]
    frames, codes, first_line = [], [], {}
    for lineno, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) < len(header) and lineno == len(lines):
            scan.add("warning", f"{path}:{lineno}", f"the file ends inside its last row ({len(cells)} of {len(header)} "
                     "cells: truncated); the row is skipped", "copy this file again if rows are missing")
            continue
        if len(cells) != len(header):
            scan.add("error", f"{path}:{lineno}", f"has {len(cells)} cells, the header has {len(header)}; its AU "
                     "columns cannot be trusted (a cell inserted or lost shifts every label after it)",
                     "fix this row or copy the file again from the distribution")
            continue
        frame = _integer(cells[0])
        if frame is None:
            scan.add("error", f"{path}:{lineno}", f"frame number {cells[0].strip()!r} is not a whole number",
                     "fix this row or copy the file again from the distribution")
            continue
        try:
            row = [int(float(cells[c])) for c in cols]
        except ValueError:
            scan.add("error", f"{path}:{lineno}", f"has a non-numeric cell in {cells[:3]}...",
                     "label cells must be 0, 1 or 9; fix or replace this file")
            continue
        bad = [v for v in row if v not in (0, 1, 9)]
        if bad:
            scan.add("warning", f"{path}:{lineno}", f"has codes {sorted(set(bad))} outside 0/1/9; they are treated "
                     "as unknown", "check this file against the original distribution")
            row = [v if v in (0, 1, 9) else 9 for v in row]
        if frame in first_line:
            earlier = first_line[frame]
            if codes[earlier[1]] != row:
                scan.add("error", f"{path}:{lineno}", f"repeats frame {frame} of line {earlier[0]} with other labels",
                         "keep the right row and delete the other")
            else:
                scan.add("warning", f"{path}:{lineno}", f"repeats frame {frame} of line {earlier[0]} with the same "
                         "labels; the repeat is ignored", "delete the repeated row")
            continue
        first_line[frame] = (lineno, len(codes))
        frames.append(frame)
        codes.append(row)
    return np.asarray(frames, np.int64), np.asarray(codes, np.int16).reshape(-1, len(aus))


def _integer(cell: str) -> int | None:
    """A frame number: a whole number ("129" or "129.0"), else None ("129.6", "abc")."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _frame_index(seq_dir: Path) -> dict[int, Path]:
    """Frame number -> image path for a sequence folder, whatever the zero-padding of the names."""
    out: dict[int, Path] = {}
    if seq_dir.is_dir():
        for p in seq_dir.iterdir():
            if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.stem.isdigit():
                out[int(p.stem)] = p
    return out


def _bp4d_frames_root(root: Path, frames_dir: Path | None) -> Path | None:
    if frames_dir is not None:
        return Path(frames_dir)
    for sub in BP4D_FRAME_DIRS:
        cand = root / sub if sub else root
        if any(cand.glob("[FM][0-9][0-9][0-9]/T[1-8]")):
            return cand
    return None


def _undecodable(path: Path) -> str | None:
    """Why an image file cannot be used (zero bytes, truncated, not an image), or None if it decodes."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
        with Image.open(path) as img:
            img.load()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        return f"cannot be decoded ({str(exc).splitlines()[0][:80]})"
    return None


def scan_bp4d(root: Path, *, frames_dir: Path | None = None, aus: tuple[int, ...] = BP4D_AUS,
              need_images: bool = True, decode: bool = False) -> Scan:
    """Read every ``AUCoding/AU_OCC/<SUBJ>_<TASK>.csv`` and match frames to images on disk; with
    ``decode``, open every image that will be used (unreadable ones are named, and skipped)."""
    root = Path(root)
    scan = Scan("bp4d")
    occ = root / "AUCoding" / "AU_OCC"
    if not occ.is_dir():
        alt = root / "AUCoding"
        if alt.is_dir() and any(alt.glob("*.csv")):
            occ = alt  # FERA-2015 copies have no AU_OCC subfolder
        else:
            scan.add("error", root, "has no AUCoding/AU_OCC folder",
                     "point at the BP4D root (the folder holding AUCoding/ and the subject folders)")
            return scan
    csvs = sorted(occ.glob("*.csv"))
    if not csvs:
        scan.add("error", occ, "holds no <SUBJ>_<TASK>.csv label files", "copy AUCoding/AU_OCC from the distribution")
        return scan
    images_root = _bp4d_frames_root(root, frames_dir) if need_images else None
    if need_images and images_root is None:
        scan.add("error", root, "has no <SUBJ>/<TASK>/ frame folders (looked in the root and in "
                 f"{', '.join(d for d in BP4D_FRAME_DIRS if d)})", "pass --frames-dir <folder holding F001/T1/...>")
        return scan
    label9 = np.zeros(len(aus), np.int64)
    missing_total, coded, broken = 0, 0, []
    labelled_subjects = set()
    for path in csvs:
        m = re.fullmatch(r"([FM]\d{3})_(T\d)", path.stem)
        if not m:
            scan.add("warning", path, "is not named <SUBJ>_<TASK>.csv; skipped", "rename it, e.g. F001_T1.csv")
            continue
        subj, task = m.groups()
        read = read_bp4d_csv(path, aus, scan)
        if read is None:
            continue
        frames, codes = read
        labelled_subjects.add(subj)
        coded += len(frames)
        label9 += (codes == 9).sum(0)
        images: list[Path | None] = []
        if need_images:
            index = _frame_index(images_root / subj / task)
            if not index:
                scan.add("warning", images_root / subj / task, f"has no frames for the {len(frames)} coded frames of "
                         f"{path.name}; the sequence is skipped", "copy this sequence's images")
                continue
            images = [index.get(int(f)) for f in frames]
            if decode:
                for i, p in enumerate(images):
                    why = _undecodable(p) if p is not None else None
                    if why:
                        broken.append((p, why + "; its coded frame is counted as a frame without image"))
                        images[i] = None
            missing = sum(p is None for p in images)
            if missing:
                missing_total += missing
                scan.add("warning", images_root / subj / task, f"{missing} of {len(frames)} coded frames have no "
                         "image; they are skipped and counted", "copy the missing images if you have them")
        scan.sequences.append(Sequence(subj, task, frames, codes, images))
    scan.add_each("warning", broken, "copy these images again from the distribution")
    if need_images:
        on_disk = {p.name for p in images_root.glob("[FM][0-9][0-9][0-9]") if p.is_dir()}
        for subj in sorted(on_disk - labelled_subjects):
            scan.add("warning", images_root / subj, "has images but no label files; it is ignored",
                     f"copy AUCoding/AU_OCC/{subj}_T*.csv if this subject should be used")
    subjects = sorted({s.subject for s in scan.sequences})
    scan.counts = {"subjects": len(subjects), "tasks": len({s.video for s in scan.sequences}),
                   "sequences": len(scan.sequences), "coded_frames": coded, "missing_images": missing_total,
                   "undecodable_images": len(broken) if decode else "not checked (--quick)",
                   "label9_per_au": {f"AU{a}": int(c) for a, c in zip(aus, label9)}, "subject_ids": subjects}
    return scan


# --------------------------------------------------------------------------- DISFA


def read_disfa_labels(folder: Path, sn: str, scan: Scan,
                      aus: tuple[int, ...] = DISFA_AUS) -> tuple[np.ndarray, np.ndarray] | None:
    """1-based frame numbers and intensity codes [n, K] (``-1`` where an AU file has no line)."""
    per_au: dict[int, dict[int, int]] = {}
    for au in aus:
        path = folder / f"{sn}_au{au}.txt"
        if not path.is_file():
            scan.add("warning", path, "is missing; this AU is unknown for the subject",
                     "copy it from ActionUnit_Labels of the distribution")
            per_au[au] = {}
            continue
        values: dict[int, int] = {}
        lines_of: dict[int, int] = {}
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split(",")
            frame = _integer(parts[0]) if len(parts) >= 2 else None
            try:
                inten = int(float(parts[1])) if frame is not None else None
            except ValueError:
                inten = None
            if frame is None or inten is None:
                scan.add("error", f"{path}:{lineno}", f"is not 'frame,intensity' with a whole frame number "
                         f"({line[:30]!r})", "fix or replace this label file")
                return None
            if frame < 1:
                scan.add("warning", f"{path}:{lineno}", f"names frame {frame}; DISFA frames are numbered from 1, so "
                         "the line is ignored", "check whether this file is 0-based (then every label is shifted)")
                continue
            if not 0 <= inten <= 5:
                scan.add("warning", f"{path}:{lineno}", f"intensity {inten} is outside 0-5; treated as unknown",
                         "check this file against the distribution")
                inten = UNKNOWN
            if frame in values:
                same = values[frame] == inten
                scan.add("warning" if same else "error", f"{path}:{lineno}",
                         f"repeats frame {frame} of line {lines_of[frame]}"
                         + (" with the same intensity; the repeat is ignored" if same else f" with intensity {inten} "
                            f"instead of {values[frame]}"), "delete the repeated line" if same else
                         "keep the right line and delete the other")
                if not same:
                    return None
                continue
            values[frame], lines_of[frame] = inten, lineno
        per_au[au] = values
    ends = [max(v) for v in per_au.values() if v]
    if not ends:
        scan.add("error", folder, "has no readable labels", "copy this subject's ActionUnit_Labels folder again")
        return None
    n = max(set(ends), key=lambda e: (ends.count(e), e))  # where most files end (one stray line cannot move it)
    frames = np.arange(1, n + 1)
    codes = np.full((n, len(aus)), UNKNOWN, np.int16)
    for j, au in enumerate(aus):
        for f, v in per_au[au].items():
            if 1 <= f <= n:
                codes[f - 1, j] = v
        past = sorted(f for f in per_au[au] if f > n)
        if past:
            scan.add("warning", folder / f"{sn}_au{au}.txt", f"has {len(past)} line(s) past frame {n}, where the "
                     f"other label files of {sn} end (frames {past[:3]}{'...' if len(past) > 3 else ''}); they are "
                     "ignored", "delete the stray lines, or copy the files again if the others are short")
        short = n - len([f for f in per_au[au] if f <= n])
        if per_au[au] and short > 0:
            scan.add("warning", folder / f"{sn}_au{au}.txt", f"covers {n - short} of {n} frames (truncated); "
                     "the rest are unknown for this AU", "copy this file again")
    return frames, codes


def _video_length(path: Path, decode_up_to: int | None = None) -> int:
    """Frames of a video: its header's count, or with ``decode_up_to`` the frames that really decode
    (reading at most that many)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if decode_up_to is not None or n <= 0:  # some containers do not store it: count
            n = 0
            while (decode_up_to is None or n < decode_up_to) and cap.read()[0]:
                n += 1
        return n
    finally:
        cap.release()


def scan_disfa(root: Path, *, frames_dir: Path | None = None, need_images: bool = True, decode: bool = False) -> Scan:
    """Read ``ActionUnit_Labels/<SN>/`` and match label frames to the left-camera video (or frames); with
    ``decode``, decode every video frame (or image) the labels use."""
    root = Path(root)
    scan = Scan("disfa")
    labels = root / "ActionUnit_Labels"
    if not labels.is_dir():
        scan.add("error", root, "has no ActionUnit_Labels folder",
                 "point at the DISFA root (holding ActionUnit_Labels/ and Videos_LeftCamera/)")
        return scan
    found = sorted(p.name for p in labels.iterdir() if p.is_dir() and re.fullmatch(r"SN\d{3}", p.name))
    unknown = sorted(set(found) - set(DISFA_SUBJECTS))
    for sn in unknown:
        scan.add("warning", labels / sn, "is not one of DISFA's 27 subjects; ignored", "remove or rename it")
    frames_per_subject, short, broken = {}, {}, []
    for sn in [s for s in DISFA_SUBJECTS if s in found]:
        read = read_disfa_labels(labels / sn, sn, scan)
        if read is None:
            continue
        frames, codes = read
        frames_per_subject[sn] = len(frames)
        seq = Sequence(sn, "LeftCamera", frames, codes)
        if need_images:
            if frames_dir is not None:
                index = _frame_index(Path(frames_dir) / sn)
                base = 0 if 0 in index else 1  # ME-GraphAU/JAA-Net name frames by 0-based label line
                seq.images = [index.get(int(f) - 1 + base) for f in frames]
                for i, p in enumerate(seq.images if decode else []):
                    why = _undecodable(p) if p is not None else None
                    if why:
                        broken.append((p, why + "; its labelled frame is counted as a frame without image"))
                        seq.images[i] = None
                missing = sum(p is None for p in seq.images)
            else:
                video = root / "Videos_LeftCamera" / f"LeftVideo{sn}_comp.avi"
                if not video.is_file():
                    scan.add("warning", video, "is missing; the subject is skipped",
                             "copy Videos_LeftCamera from the distribution, or pass --frames-dir with extracted frames")
                    continue
                seq.video_path = video
                length = _video_length(video, len(frames) if decode else None)
                missing = max(0, len(frames) - length)
                if decode and missing:
                    declared = _video_length(video)
                    broken.append((video, f"decodes {length} of the {len(frames)} frames its labels cover (its header "
                                          f"declares {declared}): cut short or corrupt"))
            if missing:
                short[sn] = missing
                scan.add("warning", sn, f"{missing} labelled frames have no image (the video ends early or frames are "
                         "missing); they are skipped and counted", "check the video or frame folder of this subject")
        scan.sequences.append(seq)
    scan.add_each("warning", broken, "copy these files again from the distribution")
    absent = sorted(set(DISFA_SUBJECTS) - set(found))
    if absent:
        scan.add("warning", labels, f"lacks subjects {absent}", "copy them if you want the full protocols; folds "
                 "that need them will refuse to run")
    scan.counts = {"subjects": len(frames_per_subject), "frames_per_subject": frames_per_subject,
                   "labelled_frames": int(sum(frames_per_subject.values())), "frames_without_image": short,
                   "undecodable_files": len(broken) if decode else "not checked (--quick)",
                   "subject_ids": sorted(frames_per_subject)}
    return scan


# --------------------------------------------------------------------------- list files


_LIST_PATTERNS = (
    re.compile(r"(?P<subject>[FM]\d{3})[/_](?P<video>T\d)[/_](?P<frame>\d+)\.(?:jpg|jpeg|png)$", re.I),
    re.compile(r"(?P<subject>SN\d{3})[/_](?:LeftVideoSN\d{3}_comp_)?(?P<frame>\d+)\.(?:jpg|jpeg|png)$", re.I),
)


def parse_list_file(path: Path) -> list[tuple[str, str, int, str]]:
    """``(subject, video, frame, relative path)`` per line of a JAA-Net / ME-GraphAU / AU-Net list file.

    Handles CRLF endings and any zero-padding. DISFA frame numbers are returned as written in the
    names (0- or 1-based; the caller decides).
    """
    out = []
    for lineno, raw in enumerate(Path(path).read_bytes().decode(errors="replace").splitlines(), start=1):
        line = raw.strip().split()[0] if raw.strip() else ""
        if not line:
            continue
        for pat in _LIST_PATTERNS:
            m = pat.search(line.replace("\\", "/"))
            if m:
                out.append((m["subject"], m.groupdict().get("video") or "LeftCamera", int(m["frame"]), line))
                break
        else:
            raise DatasetError(f"{path}:{lineno}: cannot read subject/task/frame from {line!r}; expected names like "
                               "F001/T1/2440.jpg, F007_T1_0643.jpg or SN001/0.png")
    return out
