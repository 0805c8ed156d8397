"""Pixels: one face drawn region by region (head and hair, texture cues, brows, eyes, nose, mouth),
then the camera (lighting, blur and sensor noise). Every region also paints the parsing map."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aubench_synthau.variants import AU_COL, CUE_GAIN, RENDERED_AUS

__all__ = ["render_face"]

SUPERSAMPLING = 2


def _poly(pts: np.ndarray) -> list[float]:
    """Points as PIL takes them, flat (x0, y0, x1, y1, ...)."""
    return np.asarray(pts, np.float64).ravel().tolist()


def _ellipse_pts(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


@dataclass
class _Canvas:
    """The supersampled image and parsing map being drawn, and the face-units → pixels transform."""

    img: Any  # PIL.Image (RGB)
    par: Any  # PIL.Image (L), parsing classes 0-7
    draw: Any
    draw_par: Any
    R: np.ndarray
    scale: float
    center: np.ndarray
    lw: int
    ident: dict[str, Any]

    def tf(self, pts: np.ndarray) -> np.ndarray:
        return (np.asarray(pts, float) @ self.R.T) * self.scale + self.center

    def line(self, pts: np.ndarray, strength: float, width: int | None = None) -> None:
        """A skin-coloured crease whose darkness follows ``strength`` (an AU intensity in [0, 1])."""
        if strength <= 0.05:
            return
        col = tuple(int(sv * (1 - 0.45 * min(strength, 1.0))) for sv in self.ident["skin"])
        self.draw.line(_poly(self.tf(pts)), fill=col, width=self.lw if width is None else width)

    def skin_shade(self, k: float) -> tuple[int, ...]:
        return tuple(int(v * k) for v in self.ident["skin"])


def _canvas(ident: dict[str, Any], pose: dict[str, float], size: int, lab: bool) -> _Canvas:
    from PIL import Image, ImageDraw

    S = size * SUPERSAMPLING
    scale = S * (0.27 if lab else 0.3) * pose["scale"]
    c, s = np.cos(pose["angle"]), np.sin(pose["angle"])
    center = np.array([S / 2 + pose["dx"] * S, S / 2 + pose["dy"] * S + 0.05 * S])
    bg = np.array([70, 90, 140]) if lab else np.array([200, 196, 188])
    img = Image.new("RGB", (S, S), tuple(int(v) for v in bg * pose["bg"]))
    par = Image.new("L", (S, S), 0)
    return _Canvas(img, par, ImageDraw.Draw(img), ImageDraw.Draw(par), np.array([[c, -s], [s, c]]), scale, center,
                   max(1, int(round(S / 64))), ident)


def _head(cv: _Canvas, landmarks: np.ndarray) -> None:
    """Hair (parsing 7), then the face outline from the jaw up to the hairline (skin, parsing 1)."""
    ident = cv.ident
    jaw = landmarks[0:17]
    top = np.stack([np.linspace(jaw[-1, 0], jaw[0, 0], 15),
                    jaw[0, 1] + (ident["hairline"] - 0.35 - jaw[0, 1]) * np.sin(np.linspace(0, np.pi, 15))], 1)
    face = cv.tf(np.concatenate([jaw, top]))
    hair = cv.tf(np.concatenate([top * [1.08, 1.0] + [0, -0.05],
                                 _ellipse_pts(0, ident["hairline"] - 0.55, 1.12, 0.55)[12:]]))
    cv.draw.polygon(_poly(hair), fill=tuple(int(v) for v in ident["hair"]))
    cv.draw_par.polygon(_poly(hair), fill=7)
    cv.draw.polygon(_poly(face), fill=tuple(int(v) for v in ident["skin"]))
    cv.draw_par.polygon(_poly(face), fill=1)


def _texture_cues(cv: _Canvas, landmarks: np.ndarray, A: dict[int, float]) -> None:
    """The wrinkles and bulges FACS coders look for, each scaled by its AU's intensity."""
    ident, wr = cv.ident, cv.ident["wrinkle"]
    # AU6: raised cheeks (bulge) and crow's feet at the outer eye corners
    for sign, corner in ((-1, 36), (1, 45)):
        cx, cy = landmarks[corner]
        if A[6] > 0.1:
            bulge = cv.tf(_ellipse_pts(cx - sign * 0.12, cy + 0.2 - 0.06 * A[6], 0.2, 0.1 + 0.04 * A[6]))
            cv.draw.polygon(_poly(bulge), fill=tuple(int(min(255, v * (1 + 0.18 * A[6]))) for v in ident["skin"]))
            for k in (-1, 0, 1):
                cv.line(np.array([[cx + sign * 0.03, cy + k * 0.03], [cx + sign * 0.15, cy + k * 0.07]]), A[6] * wr)
    # AU4: vertical glabella furrows; AU1: horizontal forehead lines
    for x in (-0.06, 0.06):
        cv.line(np.array([[x, -0.55], [x * 0.7, -0.38]]), A[4] * 1.4 * wr)
    for k in range(3):
        y = -0.75 - 0.07 * k
        cv.line(np.array([[-0.35, y], [0, y - 0.03], [0.35, y]]), (A[1] + 0.5 * A[2]) * wr)
    # AU9: nose-bridge wrinkles; AU10/AU9/AU12: nasolabial folds
    for k in range(2):
        y = -0.2 - 0.06 * k
        cv.line(np.array([[-0.1, y], [0.1, y]]), A[9] * 1.6 * wr)
    fold = max(A[9], A[10], 0.7 * A[12]) * wr
    cv.line(np.array([landmarks[31] + [-0.05, 0], landmarks[48] + [-0.06, -0.02]]), fold, cv.lw + 1)
    cv.line(np.array([landmarks[35] + [0.05, 0], landmarks[54] + [0.06, -0.02]]), fold, cv.lw + 1)
    # AU14: dimples; AU17: chin boss crease; AU20: stretch lines
    for corner, sign in ((48, -1), (54, 1)):
        x, y = landmarks[corner]
        if A[14] > 0.1:
            dim = cv.tf(_ellipse_pts(x + sign * 0.05, y, 0.025 + 0.02 * A[14], 0.04, 10))
            cv.draw.polygon(_poly(dim), fill=cv.skin_shade(1 - 0.35 * A[14]))
        cv.line(np.array([[x + sign * 0.02, y + 0.04], [x + sign * 0.08, y + 0.16]]), A[20] * wr)
    chin_y = landmarks[57, 1]
    cv.line(np.array([[-0.15, chin_y + 0.08], [0, chin_y + 0.11 - 0.04 * A[17]], [0.15, chin_y + 0.08]]),
            A[17] * 1.5 * wr)


def _brows(cv: _Canvas, landmarks: np.ndarray) -> None:
    """Both brows (parsing 2), as thick curves through landmarks 17-21 and 22-26."""
    bw = max(cv.lw, int(round(cv.ident["brow_width"] * cv.scale)))
    brow_col = tuple(int(cv.ident["brow_color"] * k) for k in (1.0, 0.9, 0.8))
    for idx in (range(17, 22), range(22, 27)):
        pts = cv.tf(landmarks[list(idx)])
        cv.draw.line(_poly(pts), fill=brow_col, width=bw, joint="curve")
        cv.draw_par.line(_poly(pts), fill=2, width=bw)


def _eyes(cv: _Canvas, landmarks: np.ndarray) -> None:
    """Both eyes (parsing 3): sclera, an iris sized by the lid opening, and the upper lid line."""
    dark = cv.skin_shade(0.62)
    for base in (36, 42):
        eye = cv.tf(landmarks[base:base + 6])
        cv.draw.polygon(_poly(eye), fill=(235, 235, 230), outline=dark)
        cv.draw_par.polygon(_poly(eye), fill=3)
        ec = eye.mean(0)
        open_h = np.linalg.norm(eye[[1, 2]].mean(0) - eye[[4, 5]].mean(0))
        r = max(1.0, min(open_h * 0.55, np.linalg.norm(eye[0] - eye[3]) * 0.22))
        cv.draw.ellipse([ec[0] - r, ec[1] - r, ec[0] + r, ec[1] + r], fill=tuple(int(v) for v in cv.ident["iris"]))
        cv.draw.line(_poly(eye[[0, 1, 2, 3]]), fill=cv.skin_shade(0.4), width=cv.lw + 1)


def _nose(cv: _Canvas, landmarks: np.ndarray) -> None:
    """The nose (parsing 4): the nostril line and one side of the bridge."""
    dark = cv.skin_shade(0.62)
    nose = cv.tf(np.concatenate([landmarks[[27]] + [-0.05, 0], landmarks[31:36], landmarks[[27]] + [0.05, 0]]))
    cv.draw_par.polygon(_poly(nose), fill=4)
    cv.draw.line(_poly(cv.tf(landmarks[31:36])), fill=dark, width=cv.lw + 1)
    cv.draw.line(_poly(cv.tf(landmarks[[28, 30]] + [0.06, 0])), fill=dark, width=cv.lw)


def _mouth(cv: _Canvas, landmarks: np.ndarray, A: dict[int, float]) -> None:
    """Lips (parsing 5, darker when pressed: AU23/24), then the opening between the inner lips
    (parsing 6, with teeth) or, closed, the line between them."""
    ident = cv.ident
    lip_col = tuple(int(v * (1 - 0.3 * max(A[23], A[24]))) for v in ident["lip"])
    outer = cv.tf(landmarks[48:60])
    cv.draw.polygon(_poly(outer), fill=lip_col)
    cv.draw_par.polygon(_poly(outer), fill=5)
    inner = cv.tf(landmarks[60:68])
    gap = landmarks[[65, 66, 67], 1].mean() - landmarks[[61, 62, 63], 1].mean()
    if gap > 0.05:
        cv.draw.polygon(_poly(inner), fill=(45, 15, 20))
        cv.draw_par.polygon(_poly(inner), fill=6)
        teeth = cv.tf(np.concatenate([landmarks[61:64], landmarks[61:64][::-1] + [0, min(gap * 0.4, 0.04)]]))
        cv.draw.polygon(_poly(teeth), fill=(230, 230, 220))
    else:
        cv.draw.line(_poly(inner[[0, 1, 2, 3, 4]]), fill=tuple(int(v * 0.5) for v in ident["lip"]), width=cv.lw)


def _camera(cv: _Canvas, size: int, pose: dict[str, float], lab: bool,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Downsample, then lighting (a directional gradient and a global gain) and sensor noise."""
    from PIL import Image, ImageFilter

    img = cv.img.filter(ImageFilter.GaussianBlur(radius=0.6 * SUPERSAMPLING)) if lab else cv.img
    img = img.resize((size, size), Image.BOX)
    par = cv.par.resize((size, size), Image.NEAREST)
    arr = np.asarray(img, np.float32)
    ramp = np.linspace(-1, 1, size)[None, :, None] * pose["light"]
    arr = arr * (pose["gain"] + 0.25 * ramp)
    arr = arr + rng.normal(0, 4.0 if lab else 3.0, arr.shape)
    if lab:
        arr = arr * 0.85 + arr.mean(-1, keepdims=True) * 0.15
    return np.clip(arr, 0, 255).astype(np.uint8), np.asarray(par, np.uint8)


def render_face(landmarks: np.ndarray, au: np.ndarray, ident: dict[str, Any], pose: dict[str, float],
                size: int, style: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one face. Returns (image uint8 [S,S,3], landmarks in pixels [68,2], parsing uint8 [S,S]).

    ``landmarks`` are in face units (already deformed by the AUs); ``au`` holds the intensities of
    :data:`RENDERED_AUS`, used for the texture cues (at :data:`CUE_GAIN` x intensity / 5). ``style`` "lab"
    (DISFA-like) blurs, desaturates and frames the face smaller than "studio" (BP4D-like).
    """
    lab = style == "lab"
    cv = _canvas(ident, pose, size, lab)
    A = {a: au[AU_COL[a]] * (CUE_GAIN / 5.0) for a in RENDERED_AUS}
    _head(cv, landmarks)
    _texture_cues(cv, landmarks, A)
    _brows(cv, landmarks)
    _eyes(cv, landmarks)
    _nose(cv, landmarks)
    _mouth(cv, landmarks, A)
    img, par = _camera(cv, size, pose, lab, rng)
    return img, (cv.tf(landmarks) / SUPERSAMPLING).astype(np.float32), par
