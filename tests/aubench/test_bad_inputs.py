"""Bad input, case by case: each ends in one clear line (or an accurate warning) naming the file or value
and the fix, with the right exit code, and leaves existing datasets and results untouched.

Each case is (name, setup, expected fragment, exit code). ``setup(ctx)`` plants the problem in fresh
copies of official-layout BP4D / DISFA trees (or elsewhere) and returns the command line.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from conftest import FAST, make_registry
from fixtures.raw_trees import write_bp4d_tree, write_disfa_tree

from aubench.cli import main
from aubench.registry import reset_registry


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("trees")
    write_bp4d_tree(root / "bp4d", subjects=2, frames_per_video=4, videos=("T1",), awkward=False)
    write_disfa_tree(root / "disfa", subjects=2, frames_per_video=8, awkward=False)
    return root


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A runs folder with two finished cells (a corrupt copy of one is planted per case)."""
    reg = make_registry()
    runs = tmp_path_factory.mktemp("runs")
    from aubench.cells import plan_cells, run_cells

    run_cells(plan_cells(reg, "vmnc-bce", "tiny-3fold", folds=["1", "2"], overrides=FAST, runs_dir=runs), reg,
              progress=False, echo=lambda m: None)
    return runs


class Ctx:
    def __init__(self, tmp: Path, trees: Path, finished: Path, monkeypatch):
        self.tmp, self.monkeypatch = tmp, monkeypatch
        self.bp4d = tmp / "bp4d"
        self.disfa = tmp / "disfa"
        shutil.copytree(trees / "bp4d", self.bp4d)
        shutil.copytree(trees / "disfa", self.disfa)
        self.runs = tmp / "runs"
        shutil.copytree(finished, self.runs)

    def bp4d_csv(self) -> Path:
        return sorted((self.bp4d / "AUCoding" / "AU_OCC").glob("*.csv"))[0]

    def edit(self, path: Path, fn) -> None:
        lines = path.read_text().splitlines()
        path.write_text("\n".join(fn(lines)) + "\n")

    def disfa_label(self, au: int = 1, sn: str = "SN001") -> Path:
        return self.disfa / "ActionUnit_Labels" / sn / f"{sn}_au{au}.txt"

    def a_record(self) -> Path:
        return sorted(self.runs.rglob("record.json"))[0]


def _row_with_extra_cell(c):
    c.edit(c.bp4d_csv(), lambda ls: [ls[0], ls[1].replace(",", ",0,", 1), *ls[2:]])
    return ["data", "check", "bp4d", str(c.bp4d), "--quick"]


def _conflicting_duplicate(c):
    def dup(ls):
        cells = ls[1].split(",")
        cells[1] = "1" if cells[1] == "0" else "0"  # AU1
        return [*ls, ",".join(cells)]
    c.edit(c.bp4d_csv(), dup)
    return ["data", "check", "bp4d", str(c.bp4d), "--quick"]


def _same_duplicate(c):
    c.edit(c.bp4d_csv(), lambda ls: [*ls, ls[1]])
    return ["data", "check", "bp4d", str(c.bp4d), "--quick"]


def _fractional_frame(c):
    c.edit(c.bp4d_csv(), lambda ls: [ls[0], ls[1].replace(ls[1].split(",")[0], "129.6", 1), *ls[2:]])
    return ["data", "check", "bp4d", str(c.bp4d), "--quick"]


def _bad_header(c):
    c.edit(c.bp4d_csv(), lambda ls: ["frame,AU1,AU2", *ls[1:]])
    return ["data", "check", "bp4d", str(c.bp4d), "--quick"]


def _disfa_frame_zero(c):
    c.edit(c.disfa_label(), lambda ls: ["0,3", *ls])
    return ["data", "check", "disfa", str(c.disfa), "--quick"]


def _disfa_conflicting_duplicate(c):
    c.edit(c.disfa_label(), lambda ls: [*ls, f"{ls[0].split(',')[0]},{(int(ls[0].split(',')[1]) + 1) % 6}"])
    return ["data", "check", "disfa", str(c.disfa), "--quick"]


def _disfa_stray_line(c):
    c.edit(c.disfa_label(), lambda ls: [*ls, f"{len(ls) + 1},0"])
    return ["data", "check", "disfa", str(c.disfa), "--quick"]


def _disfa_not_numeric(c):
    c.edit(c.disfa_label(), lambda ls: [ls[0], "frame,intensity", *ls[1:]])
    return ["data", "check", "disfa", str(c.disfa), "--quick"]


def _corrupt_jpeg(c):
    jpg = sorted((c.bp4d / "F001" / "T1").glob("*.jpg"))[0]
    jpg.write_bytes(jpg.read_bytes()[:40])
    return ["data", "check", "bp4d", str(c.bp4d)]


def _empty_jpeg(c):
    jpg = sorted((c.bp4d / "F001" / "T1").glob("*.jpg"))[1]
    jpg.write_bytes(b"")
    return ["data", "check", "bp4d", str(c.bp4d)]


def _video_cut_in_half(c):
    video = c.disfa / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    return ["data", "check", "disfa", str(c.disfa)]


def _missing_frames_dir(c):
    return ["data", "check", "bp4d", str(c.bp4d), "--frames-dir", str(c.tmp / "nowhere")]


def _missing_frames_dir_prepare(c):
    return ["data", "prepare", "bp4d", str(c.bp4d), "--frames-dir", str(c.tmp / "nowhere"), "--crop", "none"]


def _size(n):
    def setup(c):
        c.monkeypatch.setenv("AUBENCH_DATA", str(c.tmp / "data"))
        return ["data", "prepare", "bp4d", str(c.bp4d), "--crop", "none", "--size", str(n)]
    return setup


def _missing_raw_root(c):
    return ["data", "check", "bp4d", str(c.tmp / "no-such-copy")]


def _bad_list_file(c):
    listing = c.tmp / "list.txt"
    listing.write_text("F001/T1/0001.jpg\nnot-a-frame.txt\n")
    c.monkeypatch.setenv("AUBENCH_DATA", str(c.tmp / "data"))
    return ["data", "prepare", "bp4d", str(c.bp4d), "--from-list", str(listing), "--workers", "1"]


def _data_is_a_file(c):
    (c.tmp / "afile").write_text("x")
    c.monkeypatch.setenv("AUBENCH_DATA", str(c.tmp / "afile"))
    return ["data", "where"]


def _home_is_a_file(c):
    (c.tmp / "home").write_text("x")
    c.monkeypatch.setenv("AUBENCH_HOME", str(c.tmp / "home"))
    c.monkeypatch.delenv("AUBENCH_DATA", raising=False)
    return ["data", "generate", "tiny-bp4d", "--force"]


def _home_unwritable(c):
    c.monkeypatch.setenv("AUBENCH_HOME", "/proc/aubench-home")  # not writable, even by root
    c.monkeypatch.delenv("AUBENCH_DATA", raising=False)
    return ["data", "generate", "tiny-bp4d", "--force"]


def _runs_dir_is_a_file(command):
    def setup(c):
        (c.tmp / "runs-file").write_text("x")
        return ([*command, "--runs-dir", str(c.tmp / "runs-file")])
    return setup


def _typed(key, value):
    return lambda c: ["run", "vmnc-bce", "--protocol", "tiny-3fold", "--runs-dir", str(c.runs), f"{key}={value}"]


def _record_corrupt(c):
    c.a_record().write_text("{not json")
    return ["leaderboard", "--runs-dir", str(c.runs)]


def _record_missing_keys(c):
    data = json.loads(c.a_record().read_text())
    del data["per_au"]
    c.a_record().write_text(json.dumps(data))
    return ["leaderboard", "--runs-dir", str(c.runs)]


def _record_nan(c):
    c.a_record().write_text(c.a_record().read_text().replace('"f1_avg": ', '"f1_avg": NaN, "x": ', 1))
    return ["leaderboard", "--runs-dir", str(c.runs)]


CASES = [
    ("BP4D row with an extra cell", _row_with_extra_cell, "has 41 cells, the header has 40", 1),
    ("BP4D conflicting duplicate frame", _conflicting_duplicate, "with other labels", 1),
    ("BP4D identical duplicate frame", _same_duplicate, "with the same labels; the repeat is ignored", 0),
    ("BP4D fractional frame number", _fractional_frame, "frame number '129.6' is not a whole number", 1),
    ("BP4D unexpected header", _bad_header, "has an unexpected header", 1),
    ("DISFA line for frame 0", _disfa_frame_zero, "DISFA frames are numbered from 1", 0),
    ("DISFA conflicting duplicate line", _disfa_conflicting_duplicate, "instead of", 1),
    ("DISFA stray line past the end", _disfa_stray_line, "line(s) past frame 8", 0),
    ("DISFA non-numeric line", _disfa_not_numeric, "is not 'frame,intensity'", 1),
    ("corrupt JPEG", _corrupt_jpeg, "cannot be decoded", 0),
    ("zero-byte JPEG", _empty_jpeg, "is empty (0 bytes)", 0),
    ("DISFA video cut in half", _video_cut_in_half, "of the 8 frames its labels cover", 0),
    ("check --frames-dir missing", _missing_frames_dir, "--frames-dir", 2),
    ("prepare --frames-dir missing", _missing_frames_dir_prepare, "does not exist", 2),
    ("prepare --size 0", _size(0), "--size 0: the crop size must be at least 8", 2),
    ("prepare --size -5", _size(-5), "--size -5", 2),
    ("raw root missing", _missing_raw_root, "does not exist; point at your copy", 2),
    ("list file with a bad line", _bad_list_file, "cannot read subject/task/frame", 2),
    ("AUBENCH_DATA is a file", _data_is_a_file, "AUBENCH_DATA", 2),
    ("AUBENCH_HOME is a file", _home_is_a_file, "is a file, not a folder", 2),
    ("AUBENCH_HOME not writable", _home_unwritable, "/proc/aubench-home", 2),
    ("run --runs-dir is a file", _runs_dir_is_a_file(["run", "vmnc-bce", "--protocol", "tiny-3fold"]), "is a file", 2),
    ("leaderboard --runs-dir is a file", _runs_dir_is_a_file(["leaderboard"]), "is a file", 2),
    ("seed=abc", _typed("seed", "abc"), "seed='abc' must be a whole number", 2),
    ("epochs=abc", _typed("epochs", "abc"), "epochs='abc' must be int", 2),
    ("batch_size=abc", _typed("batch_size", "abc"), "batch_size='abc' must be int", 2),
    ("optim.lr=abc", _typed("optim.lr", "abc"), "optim.lr", 2),
    ("epochs=0", _typed("epochs", "0"), "epochs=0 must be at least 1", 2),
    ("unknown protocol", lambda c: ["run", "vmnc-bce", "--protocol", "tiny-3fodl"], "Did you mean 'tiny-3fold", 2),
    ("unknown fold", lambda c: ["run", "vmnc-bce", "--protocol", "tiny-3fold", "--fold", "9"], "fold", 2),
    ("--seeds 0", lambda c: ["run", "vmnc-bce", "--protocol", "tiny-3fold", "--seeds", "0"], "--seeds", 2),
    ("--jobs -1", lambda c: ["run", "vmnc-bce", "--protocol", "tiny-3fold", "--jobs", "-1", "--runs-dir",
                             str(c.runs)], "--jobs must be 0 (one per CPU core) or more", 2),
    ("corrupt record.json", _record_corrupt, "cannot be read as JSON", 0),
    ("record missing keys", _record_missing_keys, "missing fields ['per_au']", 0),
    ("record with NaN F1", _record_nan, "unknown fields ['x']", 0),
    ("evaluate a missing checkpoint", lambda c: ["evaluate", "--checkpoint", str(c.tmp / "nothing"), "--protocol",
                                                 "tiny-3fold"], "is neither a folder nor hf://", 2),
    ("verify an unprepared dataset", lambda c: ["data", "verify", "bp4d"], "No prepared dataset", 2),
]


@pytest.mark.parametrize(("name", "setup", "expected", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_table(name, setup, expected, code, trees, finished, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUBENCH_DATA", str(tmp_path / "data"))
    reset_registry(make_registry())
    try:
        ctx = Ctx(tmp_path, trees, finished, monkeypatch)
        args = setup(ctx)
        before = {p: p.read_bytes() for p in ctx.runs.rglob("*") if p.is_file() and p.name != ".lock"}
        with warnings.catch_warnings(record=True) as caught:  # the CLI prints them as "warning: ..." lines
            warnings.simplefilter("always")
            assert main(args) == code
    finally:
        reset_registry(None)
    out = capsys.readouterr()
    text = out.out + out.err + "".join(f"warning: {w.message}\n" for w in caught)
    assert expected in text, text
    assert "Traceback" not in text
    errors = [line for line in out.err.splitlines() if line.startswith("error:")]
    assert len(errors) == (1 if code == 2 else 0), out.err
    if args[0] == "leaderboard" and code == 0:  # one bad record is skipped with a warning; the rest is rendered
        board = (ctx.runs / "LEADERBOARD.md").read_text()
        assert "| vmnc-bce" in board and "nan" not in board.lower() and "skipped" in text
    after = {p: p.read_bytes() for p in before if p.exists()}
    assert after == before or args[0] == "leaderboard"  # results untouched (the board itself is re-rendered)


def test_every_bad_input_is_counted():
    """The README's count of bad inputs tried: the table above plus the Hub's, the plugin mistakes' and the
    fault tests (kept equal to what the tests run)."""
    from test_hub import test_bad_input_gets_one_clear_line_and_changes_nothing as hub
    from test_plugin_mistakes import MISTAKES

    hub_cases = next(m for m in hub.pytestmark if m.name == "parametrize").args[1]
    assert len(CASES) + len(hub_cases) + len(MISTAKES) >= 60


def test_bad_files_are_named_ten_on_screen_and_all_in_the_report(tmp_path, capsys):
    root = tmp_path / "bp4d"
    write_bp4d_tree(root, subjects=3, frames_per_video=5, videos=("T1",), awkward=False)
    jpgs = sorted(root.glob("F00*/T1/*.jpg"))[:12]
    for jpg in jpgs:
        jpg.write_bytes(b"\xff\xd8broken")
    reset_registry(make_registry())
    try:
        assert main(["data", "check", "bp4d", str(root), "--report", str(tmp_path / "issues.json")]) == 0
    finally:
        reset_registry(None)
    out = capsys.readouterr().out
    assert sum(".jpg: cannot be decoded" in line for line in out.splitlines()) == 10 and "2 more file(s)" in out
    report = json.loads((tmp_path / "issues.json").read_text())
    assert sorted(f["file"] for f in report["files"]) == sorted(map(str, jpgs))
    assert report["counts"]["undecodable_images"] == 12


def test_an_empty_aubench_home_means_the_default_never_the_current_folder(monkeypatch, tmp_path):
    from aubench.data.prepared import aubench_home

    monkeypatch.setenv("AUBENCH_HOME", "")
    monkeypatch.chdir(tmp_path)
    assert aubench_home() == Path.home() / ".cache" / "aubench"
    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path / "h"))
    assert aubench_home() == tmp_path / "h"
