"""The two SynthAU shapes (BP4D-like, DISFA-like) and the expression prototypes their videos draw from."""
from __future__ import annotations

from dataclasses import dataclass

from aubench import BP4D_AUS, BP4D_SUBJECTS, DISFA_AUS, DISFA_SUBJECTS

__all__ = ["GENERATOR_VERSION", "PROTOCOL_VERSION", "CUE_GAIN", "RENDERED_AUS", "AU_COL", "PROTOTYPES", "BP4D_TASKS",
           "DISFA_MIX", "Variant", "VARIANTS"]

GENERATOR_VERSION = 2
#: the version of every SynthAU protocol: results on another generator's frames are not comparable
PROTOCOL_VERSION = f"v{GENERATOR_VERSION}"
#: How strongly an AU's intensity shows: landmark displacements and texture cues are drawn at
#: ``CUE_GAIN x intensity / 5`` of :data:`aubench_synthau.geometry.DISPLACEMENTS` and of the wrinkle
#: strengths (labels still follow the intensities: occurrence >= 1, DISFA-like levels >= 2). Version 1
#: drew them at gain 1, where the 32 px smoke models needed 12 epochs: vmnc-bce, seed 0, synth-bp4d-3fold
#: median fold F1 47.9 after 4 epochs and 59.6 after 12, synth-bp4d -> synth-disfa 39.8 / 57.8. At 2.2
#: (version 2) 4 epochs give 57.7 and 56.6, and 12 epochs 68.0 on synth-bp4d: the cues are learnt ~3x
#: sooner and the ceiling is still well above what the smoke recipes reach (benchmarks/README.md,
#: "SynthAU v2"). The identities' neutral-face biases (AU look-alikes, unlabelled) scale with it.
CUE_GAIN = 2.2
RENDERED_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26)
AU_COL = {au: i for i, au in enumerate(RENDERED_AUS)}

# Expression prototypes: relative AU intensities of one event (FACS-style compositions).
PROTOTYPES: dict[str, dict[int, float]] = {
    "smile": {6: 0.8, 12: 1.0, 7: 0.5, 10: 0.3},
    "laugh": {6: 1.0, 12: 1.0, 7: 0.6, 10: 0.6, 25: 1.0, 26: 0.6},
    "surprise": {1: 1.0, 2: 0.9, 5: 0.8, 25: 0.8, 26: 0.7},
    "sad": {4: 0.7, 15: 1.0, 17: 0.8},
    "worry": {1: 0.9, 2: 0.3, 15: 0.6, 20: 0.4},
    "fear": {1: 0.8, 2: 0.6, 5: 0.7, 20: 1.0, 25: 0.7},
    "disgust": {9: 1.0, 10: 0.9, 4: 0.4, 17: 0.5, 7: 0.4},
    "pain": {4: 1.0, 6: 0.8, 7: 1.0, 9: 0.5, 10: 0.8, 25: 0.4},
    "tension": {4: 1.0, 7: 0.8, 23: 1.0, 24: 0.8, 17: 0.6},
    "press": {24: 1.0, 23: 0.6, 17: 0.8, 14: 0.5},
    "dimple": {14: 1.0, 12: 0.3},
    "talk": {25: 1.0, 26: 0.5, 10: 0.3},
}

# Per task, the expression prototypes it elicits (weights), like BP4D's eight tasks.
BP4D_TASKS: dict[str, dict[str, float]] = {
    "T1": {"smile": 3, "laugh": 2, "talk": 2, "dimple": 1},
    "T2": {"sad": 3, "worry": 2, "talk": 1, "press": 1},
    "T3": {"surprise": 3, "fear": 1, "laugh": 1},
    "T4": {"smile": 2, "press": 2, "dimple": 2, "talk": 1},
    "T5": {"fear": 2, "surprise": 2, "tension": 1},
    "T6": {"pain": 3, "tension": 2, "press": 1},
    "T7": {"tension": 3, "press": 2, "disgust": 1},
    "T8": {"disgust": 3, "pain": 1, "smile": 1},
}
DISFA_MIX = {"smile": 2, "laugh": 1, "surprise": 1.2, "sad": 2.0, "fear": 0.8, "disgust": 2.0, "talk": 2.5,
             "worry": 0.8, "tension": 1.2, "pain": 0.6}


@dataclass(frozen=True)
class Variant:
    subjects: tuple[str, ...]
    au_set: tuple[int, ...]
    label_kind: str
    videos: tuple[str, ...]
    frames_per_video: int
    stride: int
    event_rate: float
    tonic: dict[int, float]
    style: str


VARIANTS: dict[str, Variant] = {
    "synth-bp4d": Variant(
        subjects=BP4D_SUBJECTS, au_set=BP4D_AUS, label_kind="occurrence", videos=tuple(BP4D_TASKS),
        frames_per_video=12, stride=3, event_rate=0.09,
        tonic={7: 0.5, 10: 0.5, 14: 0.4, 17: 0.3, 12: 0.3, 6: 0.2}, style="studio",
    ),
    "synth-disfa": Variant(
        subjects=DISFA_SUBJECTS, au_set=DISFA_AUS, label_kind="intensity", videos=("V1",),
        frames_per_video=150, stride=2, event_rate=0.04, tonic={25: 0.15}, style="lab",
    ),
}

