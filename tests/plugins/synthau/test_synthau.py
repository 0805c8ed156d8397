import numpy as np
import pytest

from aubench import BP4D_SUBJECTS, DISFA_SUBJECTS, ConfigError
from aubench.data.prepared import PARSING_CLASSES, PreparedDataset
from aubench_synthau.generate import generate, simulate, synth_fingerprint
from aubench_synthau.geometry import canonical_landmarks
from aubench_synthau.identities import trajectory
from aubench_synthau.variants import AU_COL, RENDERED_AUS, VARIANTS

TINY = {"subjects": 3, "frames_per_video": 3, "image_size": 32}


def test_generation_is_deterministic_and_seeded(tmp_path):
    a = PreparedDataset(generate(tmp_path / "a", name="synth-bp4d", progress=False, **TINY))
    b = PreparedDataset(generate(tmp_path / "b", name="synth-bp4d", progress=False, **TINY))
    c = PreparedDataset(generate(tmp_path / "c", name="synth-bp4d", seed=1, progress=False, **TINY))
    assert np.array_equal(a.frames, b.frames) and a.meta["content_hash"] == b.meta["content_hash"]
    assert not np.array_equal(a.frames, c.frames)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_variants_are_shaped_like_the_real_datasets():
    assert len(BP4D_SUBJECTS) == 41 and BP4D_SUBJECTS[0] == "F001" and BP4D_SUBJECTS[-1] == "M018"
    assert len(DISFA_SUBJECTS) == 27 and not {"SN014", "SN015", "SN019", "SN020", "SN022"} & set(DISFA_SUBJECTS)
    assert VARIANTS["synth-bp4d"].videos == tuple(f"T{i}" for i in range(1, 9))
    assert VARIANTS["synth-bp4d"].au_set == (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    assert VARIANTS["synth-disfa"].au_set == (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)


def test_prepared_output_has_frames_landmarks_parsing_and_label_codes(tmp_path):
    ds = PreparedDataset(generate(tmp_path / "d", name="synth-disfa", progress=False, subjects=2, frames_per_video=20,
                                  image_size=32))
    assert ds.frames.shape == (40, 32, 32, 3) and ds.frames.dtype == np.uint8
    assert ds.landmarks.shape == (40, 68, 2)
    assert (ds.landmarks > 0).all() and (ds.landmarks < 32).all()
    assert set(np.unique(ds.parsing)) <= set(range(len(PARSING_CLASSES)))
    assert {1, 2, 3, 5} <= set(np.unique(ds.parsing))  # skin, brows, eyes, lips are visible
    assert ds.meta["label_kind"] == "intensity" and ds.codes.min() >= 0 and ds.codes.max() <= 5
    assert list(ds.index["frame"][:3]) == [1, 2, 3]  # DISFA frames are 1-based


def test_neighbouring_frames_are_correlated():
    videos = simulate("synth-bp4d", subjects=4)
    lag1, shuffled = [], []
    rng = np.random.default_rng(0)
    for v in videos:
        x = v["intensity"]
        lag1.append(np.abs(np.diff(x, axis=0)).mean())
        shuffled.append(np.abs(np.diff(rng.permutation(x), axis=0)).mean())
    assert np.mean(lag1) < 0.75 * np.mean(shuffled)


def test_co_occurrence_rules_hold():
    rng = np.random.default_rng(0)
    x = np.concatenate([trajectory(rng, 200, {"tension": 1, "surprise": 1, "laugh": 1}, 0.1, {}) for _ in range(20)])
    au = {a: x[:, AU_COL[a]] for a in RENDERED_AUS}
    assert (au[25] >= au[26]).all()  # jaw drop parts the lips
    strong4 = au[4] >= 2.0
    assert strong4.any() and (au[1][strong4] == 0).all() and (au[2][strong4] == 0).all()
    assert np.corrcoef(au[6], au[12])[0, 1] > 0.5
    assert np.corrcoef(au[1], au[2])[0, 1] > 0.5


def test_bp4d_variant_is_less_imbalanced_than_disfa():
    def rates(name, aus):
        v = simulate(name, subjects=10)
        x = np.concatenate([vv["intensity"] for vv in v])
        return np.array([(x[:, AU_COL[a]] >= 2).mean() for a in aus])

    shared = (1, 2, 4, 6, 12)
    assert rates("synth-bp4d", shared).mean() > 1.5 * rates("synth-disfa", shared).mean()


def test_label_noise_drops_positive_episodes_only():
    clean = simulate("synth-bp4d", subjects=6, unknown_rate=0)
    noisy = simulate("synth-bp4d", subjects=6, unknown_rate=0, label_noise=0.5)
    c = np.concatenate([v["codes"] for v in clean])
    n = np.concatenate([v["codes"] for v in noisy])
    assert ((n == 1) <= (c == 1)).all()  # never adds a positive
    assert 0.3 < (n == 1).sum() / (c == 1).sum() < 0.7


def test_unknown_codes_are_nine():
    codes = np.concatenate([v["codes"] for v in simulate("synth-bp4d", subjects=5, unknown_rate=0.05)])
    assert set(np.unique(codes)) == {0, 1, 9}


def test_fingerprint_tracks_parameters():
    assert synth_fingerprint("synth-bp4d", {}) == synth_fingerprint("synth-bp4d", {"seed": 0})
    assert synth_fingerprint("synth-bp4d", {}) != synth_fingerprint("synth-bp4d", {"label_noise": 0.1})
    with pytest.raises(ConfigError, match="unknown SynthAU parameters"):
        synth_fingerprint("synth-bp4d", {"bogus": 1})


def test_template_is_left_right_symmetric():
    from aubench.data.augment import IBUG_FLIP

    p = canonical_landmarks()
    mirrored = (p * [-1, 1])[IBUG_FLIP]
    assert np.allclose(mirrored, p, atol=1e-9)


def test_the_union_protocol_tests_on_both_datasets_fold_k_subjects_over_17_aus():
    from aubench import BP4D_AUS, DISFA_AUS, JAANET_BP4D_PARTS, JAANET_DISFA_PARTS, jaanet_folds
    from aubench.registry import Registry
    from aubench.specs import resolve_factory

    reg = Registry()
    proto = reg.get("protocol", "synth-union-3fold")
    assert proto.eval_aus == tuple(sorted(set(BP4D_AUS) | set(DISFA_AUS))) and len(proto.eval_aus) == 17
    for fold, b, d in zip(proto.folds, jaanet_folds(JAANET_BP4D_PARTS), jaanet_folds(JAANET_DISFA_PARTS)):
        assert set(fold.test_subjects) == set(b.test_subjects) | set(d.test_subjects)
    spec = reg.get("dataset", "synth-union")
    fp = resolve_factory(spec.fingerprint)
    assert fp("synth-union", dict(spec.params)) != fp("synth-union", {**spec.params, "positive_threshold": 3})


def test_au_cues_are_drawn_at_the_cue_gain_and_the_protocols_carry_the_generator_version(monkeypatch):
    """Landmarks move by CUE_GAIN x intensity / 5 of each AU's displacement (linear in the gain, in pixels
    too), and every SynthAU protocol is versioned by the generator: results on v1 frames never share a
    protocol id (a leaderboard row) with results on v2 frames."""
    import aubench_synthau.generate as gen
    from aubench.registry import get_registry
    from aubench_synthau.variants import CUE_GAIN, GENERATOR_VERSION, PROTOCOL_VERSION

    video = simulate("synth-bp4d", subjects=1, frames_per_video=6)[0]
    t = int(np.argmax(video["intensity"].sum(1)))  # the frame with the most AU activity

    def landmarks(gain):
        monkeypatch.setattr(gen, "CUE_GAIN", gain)
        return list(gen.render_video(video, 64, "studio"))[t][1].astype(np.float64)

    neutral, once, twice = landmarks(0.0), landmarks(CUE_GAIN), landmarks(2 * CUE_GAIN)
    assert np.abs(once - neutral).max() > 0.5  # AUs visibly move landmarks (pixels at 64 px)
    assert np.allclose(twice - neutral, 2 * (once - neutral), atol=1e-3)
    assert CUE_GAIN == 2.2 and PROTOCOL_VERSION == f"v{GENERATOR_VERSION}" == "v2"
    synth = [p for p in get_registry().specs["protocol"].values() if p.train_dataset.startswith("synth-")]
    assert len(synth) == 7 and {p.version for p in synth} == {PROTOCOL_VERSION}
