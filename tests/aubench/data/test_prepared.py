import json

import numpy as np
import pytest

from aubench.data.prepared import PreparedDataset
from aubench.errors import DatasetError
from aubench_synthau.generate import generate


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("p") / "tiny", name="synth-bp4d", subjects=2, frames_per_video=3,
                    image_size=16, unknown_rate=0.2, progress=False)


def test_missing_dataset_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"No prepared dataset at .*nothing.*aubench data prepare"):
        PreparedDataset(tmp_path / "nothing")


def test_unfinished_preparation_is_reported(tmp_path):
    (tmp_path / "ds.partial").mkdir()
    with pytest.raises(DatasetError, match="unfinished preparation"):
        PreparedDataset(tmp_path / "ds")


def test_corrupt_meta_and_incomplete_flag(tmp_path, tiny_root):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_root, bad)
    (bad / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        PreparedDataset(bad)
    meta = json.loads((tiny_root / "meta.json").read_text())
    meta["complete"] = False
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="not marked complete"):
        PreparedDataset(bad)


def test_truncated_frames_are_detected(tmp_path, tiny_root):
    import shutil

    bad = tmp_path / "trunc"
    shutil.copytree(tiny_root, bad)
    frames = np.load(bad / "frames.npy")
    np.save(bad / "frames.npy", frames[:-1])
    with pytest.raises(DatasetError, match="frames.npy has .* rows but index.csv has"):
        PreparedDataset(bad)


def test_occurrence_labels_mask_code_nine(tiny_root):
    ds = PreparedDataset(tiny_root)
    y, m = ds.labels(ds.au_set)
    assert ((ds.codes == 9) == ~m).all()
    assert (y[~m] == 0).all() and (y[m] == ds.codes[m]).all()


def test_intensity_labels_binarise_at_threshold_and_unknown_aus_are_masked(tmp_path):
    ds = PreparedDataset(generate(tmp_path / "d", name="synth-disfa", subjects=1, frames_per_video=40,
                                  image_size=16, progress=False))
    y, m = ds.labels((12, 7), positive_threshold=2)
    assert (y[:, 0] == (ds.codes[:, ds.au_set.index(12)] >= 2)).all()
    assert m[:, 0].all() and not m[:, 1].any()  # AU7 is not labelled in DISFA


def test_missing_subjects_are_reported(tiny_root):
    ds = PreparedDataset(tiny_root)
    with pytest.raises(DatasetError, match=r"1 subject\(s\) \(M999\) are not in the prepared dataset"):
        ds.rows_for(["F001", "M999"])


def test_an_edited_index_or_reshaped_array_is_refused_at_load_and_verify_hashes_every_byte(tmp_path, tiny_root):
    import shutil

    bad = tmp_path / "edited"
    shutil.copytree(tiny_root, bad)
    PreparedDataset(bad).verify()
    lines = (bad / "index.csv").read_text().splitlines()
    first = lines[1].split(",")
    first[3] = "1" if first[3] == "0" else "0"  # one AU label of one frame flipped
    (bad / "index.csv").write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    with pytest.raises(DatasetError, match=r"index.csv changed after the dataset was prepared.*fingerprint"):
        PreparedDataset(bad)
    shutil.copyfile(tiny_root / "index.csv", bad / "index.csv")
    parsing = np.load(bad / "landmarks.npy")
    np.save(bad / "landmarks.npy", parsing.astype(np.float64))
    with pytest.raises(DatasetError, match=r"landmarks.npy is .* float64, meta.json says .* float32"):
        PreparedDataset(bad)
    shutil.copyfile(tiny_root / "landmarks.npy", bad / "landmarks.npy")
    frames = np.load(bad / "frames.npy")
    frames[0, 0, 0, 0] ^= 1  # one bit of one pixel: only the full hash sees it
    np.save(bad / "frames.npy", frames)
    ds = PreparedDataset(bad)
    with pytest.raises(DatasetError, match="a file changed after preparation"):
        ds.verify()


def test_data_verify_command(tmp_path, monkeypatch, capsys):
    from conftest import make_registry

    from aubench.cli import main
    from aubench.data.prepared import dataset_dir, ensure_prepared
    from aubench.registry import reset_registry

    reg = make_registry()
    reset_registry(reg)
    try:
        ensure_prepared(reg.get("dataset", "tiny-bp4d"), progress=False)
        assert main(["data", "verify", "tiny-bp4d"]) == 0
        assert "OK" in capsys.readouterr().out
        assert main(["data", "verify", "tiny-disfa" if not (dataset_dir("tiny-disfa") / "meta.json").exists()
                     else "bp4d"]) == 2
    finally:
        reset_registry(None)
