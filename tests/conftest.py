"""Shared fixtures: an isolated aubench home, and a tiny SynthAU protocol registered by a test plugin."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("AUBENCH_HOME", str(Path(__file__).parent / ".." / ".cache" / "test-home"))
os.environ.setdefault("AUBENCH_JOBS", "1")  # `aubench run` in tests: cells in the test process unless asked
# The suite's expectations are the CPU's (CI has none): CUDA stays hidden from it on a GPU machine too (device
# `auto` would otherwise move cells there, and torchrun's two ranks onto NCCL on one GPU). tests/aubench/test_gpu.py
# runs the GPU path in subprocesses that see the devices saved here.
os.environ.setdefault("AUBENCH_TEST_CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", "all"))
os.environ["CUDA_VISIBLE_DEVICES"] = ""

from aubench import BP4D_AUS, DISFA_AUS, DatasetSpec, Fold, ProtocolSpec, hookimpl, transfer_folds  # noqa: E402
from aubench.registry import Registry, reset_registry  # noqa: E402

TINY_SUBJECTS = ("F001", "F002", "F003", "F004", "F005", "F006")  # the first 6 synth-bp4d subjects
TINY_DISFA = ("SN001", "SN002", "SN003", "SN004")
FAST = ["epochs=1", "batch_size=16", "augment.shift=1"]


class TinyPlugin:
    """A small SynthAU protocol so engine tests take seconds."""

    @hookimpl
    def aubench_register_datasets(self):
        return [
            DatasetSpec(name="tiny-bp4d", au_set=BP4D_AUS, label_kind="occurrence",
                        prepare="aubench_synthau.generate:prepare",
                        fingerprint="aubench_synthau.generate:synth_fingerprint", subjects=TINY_SUBJECTS, synthetic=True,
                        params={"variant": "synth-bp4d", "subjects": 6, "frames_per_video": 3, "image_size": 32}),
            DatasetSpec(name="tiny-disfa", au_set=DISFA_AUS, label_kind="intensity",
                        prepare="aubench_synthau.generate:prepare",
                        fingerprint="aubench_synthau.generate:synth_fingerprint", subjects=TINY_DISFA, synthetic=True,
                        params={"variant": "synth-disfa", "subjects": 4, "frames_per_video": 12, "image_size": 32}),
        ]

    @hookimpl
    def aubench_register_protocols(self):
        folds = (Fold("1", TINY_SUBJECTS[:2]), Fold("2", TINY_SUBJECTS[2:4]), Fold("3", TINY_SUBJECTS[4:]))
        return [
            ProtocolSpec(name="tiny-3fold", version="v1", train_dataset="tiny-bp4d", test_dataset="tiny-bp4d",
                         folds=folds, eval_aus=BP4D_AUS),
            ProtocolSpec(name="tiny-cross", version="v1", train_dataset="tiny-bp4d", test_dataset="tiny-disfa",
                         folds=(Fold("all", TINY_DISFA, TINY_SUBJECTS),), eval_aus=(1, 2, 4, 6, 12),
                         train_aus=BP4D_AUS),
            ProtocolSpec(name="tiny-folds-cross", version="v1", train_dataset="tiny-bp4d", test_dataset="tiny-disfa",
                         folds=transfer_folds(folds, TINY_DISFA, TINY_SUBJECTS), eval_aus=(1, 2, 4, 6, 12),
                         train_aus=BP4D_AUS, models_from="tiny-3fold@v1"),
        ]


def make_registry(*extra) -> Registry:
    return Registry(extra_plugins=[("tiny", TinyPlugin()), *extra])


@pytest.fixture
def registry():
    reg = make_registry()
    reset_registry(reg)
    yield reg
    reset_registry(None)


@pytest.fixture
def runs(tmp_path) -> Path:
    return tmp_path / "runs"
