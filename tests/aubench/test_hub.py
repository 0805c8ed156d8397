"""Publishing to and downloading from the Hugging Face Hub, and evaluating checkpoints, with no network.

The real ``huggingface_hub`` client talks to the small Hub in ``tests/hubserver.py`` on 127.0.0.1
(``HF_ENDPOINT``), into a temporary ``HF_HOME``; the README's round trip runs exactly as a user
types it.
"""
import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import FAST, make_registry
from hubserver import READ, WRITE, Hub

from aubench import BP4D_AUS, CheckpointSpec, Fold, ProtocolSpec, hookimpl
from aubench.cells import plan_cells, run_cells
from aubench.cli import main
from aubench.registry import reset_registry

TINY = ("F001", "F002", "F003", "F004", "F005", "F006")


class HubPlugin:
    @hookimpl
    def aubench_register_checkpoints(self):
        return [CheckpointSpec("tiny.vmnc-fold1", repo_id="org/vmnc", fold="1", protocol="tiny-3fold",
                               description="vmnc-bce on tiny-3fold fold 1")]

    @hookimpl
    def aubench_register_protocols(self):
        folds = (Fold("1", TINY[:2]), Fold("2", TINY[2:4]), Fold("3", TINY[4:]))
        return [ProtocolSpec(name="tiny-3fold-reordered", version="v1", train_dataset="tiny-bp4d",
                             test_dataset="tiny-bp4d", folds=folds, eval_aus=tuple(reversed(BP4D_AUS)))]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """vmnc-bce trained on the three folds of tiny-3fold (one run folder)."""
    reg = make_registry(("hubtest", HubPlugin()))
    runs = tmp_path_factory.mktemp("runs")
    cells = plan_cells(reg, "vmnc-bce", "tiny-3fold", overrides=FAST, runs_dir=runs)
    assert all(o.status == "done" for o in run_cells(cells, reg, progress=False, echo=lambda m: None))
    return reg, runs, cells[0].run_dir.parent.parent  # the run folder: <protocol>/<method>/<variant>


@pytest.fixture
def hub(trained, tmp_path, monkeypatch):
    reset_registry(trained[0])
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", WRITE)
    monkeypatch.setattr("aubench.hub.time.sleep", lambda s: None)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # an earlier Hydra test may have left one
    with Hub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
    reset_registry(None)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_round_trip_publish_download_evaluate_leaderboard(trained, hub, tmp_path, capsys):
    reg, runs, run_folder = trained
    assert main(["publish", str(run_folder), "--repo-id", "org/vmnc"]) == 0
    published = hub.files("org/vmnc")
    assert sorted(published) == ["1/aubench_meta.json", "1/model.safetensors", "1/recipe.yaml",
                                 "2/aubench_meta.json", "2/model.safetensors", "2/recipe.yaml",
                                 "3/aubench_meta.json", "3/model.safetensors", "3/recipe.yaml",
                                 "README.md", "aubench.json"]
    assert not any(name.endswith((".pt", ".bin")) for name in published)
    assert main(["download", "org/vmnc"]) == 0
    assert main(["evaluate", "--checkpoint", "hf://org/vmnc", "--protocol", "tiny-3fold",
                 "--runs-dir", str(tmp_path / "eval"), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "checksums and metadata verified" in out.out and WRITE not in out.out + out.err
    from aubench.records import load_record, load_records

    evaluated = {r.fold: r for r in load_records(tmp_path / "eval")}
    assert sorted(evaluated) == ["1", "2", "3"]
    for fold, rec in evaluated.items():
        original = load_record(run_folder / fold / "seed0" / "record.json")
        assert rec.per_au == original.per_au and rec.f1_avg == original.f1_avg
        assert rec.init_checkpoint["evaluated"] and rec.init_checkpoint["source"].startswith("hf://org/vmnc@")
        assert rec.init_checkpoint["revision"] == hub.repos["org/vmnc"].refs["main"]
    assert main(["leaderboard", "--runs-dir", str(tmp_path / "eval")]) == 0
    board = (tmp_path / "eval" / "LEADERBOARD.md").read_text()
    assert f"augment.shift=1 @ hf://org/vmnc@{hub.repos['org/vmnc'].refs['main']}" in board
    for path in [*tmp_path.rglob("*.json"), *tmp_path.rglob("*.md")]:
        assert WRITE not in path.read_text(), path


def test_model_card_round_trips_with_its_model_index(trained, hub, tmp_path):
    from huggingface_hub import ModelCard

    from aubench.hub import build_publish_folder

    out = build_publish_folder(trained[2], "org/vmnc", tmp_path / "dry", trained[0])
    card = ModelCard.load(out / "README.md")
    results = card.data.eval_results
    assert len(results) == 1 + len(BP4D_AUS)
    assert results[0].metric_type == "f1" and results[0].dataset_name == "tiny-3fold@v1"
    metas = [json.loads((out / f / "aubench_meta.json").read_text()) for f in ("1", "2", "3")]
    assert results[0].metric_value == pytest.approx(sum(m["metrics"]["f1_avg"] for m in metas) / 3, abs=0.01)
    assert "aubench evaluate --checkpoint hf://org/vmnc/1" in card.text


def test_a_protocol_whose_aus_are_a_subset_is_scored_by_au_number(trained, hub, tmp_path):
    from aubench.evaluation import evaluate_source

    (rec,) = evaluate_source(str(trained[2] / "1" / "seed0"), trained[0], "tiny-cross", tmp_path / "eval",
                             progress=False, echo=lambda m: None)
    assert rec.aus == [1, 2, 4, 6, 12] and rec.train_aus == list(BP4D_AUS) and rec.dataset == "tiny-disfa"
    assert rec.init_checkpoint["trained_protocol"] == "tiny-3fold@v1" and "@ " in rec.variant


def test_dry_run_writes_the_upload_folder_and_contacts_nobody(trained, hub, tmp_path):
    assert main(["publish", str(trained[2] / "2" / "seed0"), "--repo-id", "org/one", "--dry-run",
                 str(tmp_path / "dry")]) == 0
    assert sorted(_files(tmp_path / "dry")) == ["2/aubench_meta.json", "2/model.safetensors", "2/recipe.yaml",
                                                "README.md", "aubench.json"]
    assert hub.requests == [] and "org/one" not in hub.repos
    assert main(["publish", str(trained[2] / "2" / "seed0"), "--repo-id", "org/one", "--dry-run",
                 str(tmp_path / "dry")]) == 2  # never written over


def test_offline_mode_reads_the_cache_and_fails_fast_without_it(trained, hub, tmp_path, monkeypatch, capsys):
    assert main(["publish", str(trained[2]), "--repo-id", "org/vmnc"]) == 0
    assert main(["download", "org/vmnc"]) == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.requests.clear()
    assert main(["evaluate", "--checkpoint", "hf://org/vmnc/2", "--protocol", "tiny-3fold",
                 "--runs-dir", str(tmp_path / "eval"), "--no-progress"]) == 0
    assert hub.requests == []
    capsys.readouterr()
    assert main(["download", "org/other"]) == 2
    assert "HF_HUB_OFFLINE=1" in capsys.readouterr().err and hub.requests == []


def test_registered_checkpoints_are_listed_and_usable_by_name(trained, hub, tmp_path, capsys):
    reg = trained[0]
    assert main(["publish", str(trained[2]), "--repo-id", "org/vmnc"]) == 0
    assert main(["list", "checkpoints"]) == 0
    assert "tiny.vmnc-fold1" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", "tiny.vmnc-fold1", "--protocol", "tiny-3fold",
                 "--runs-dir", str(tmp_path / "eval"), "--no-progress"]) == 0
    # as init.checkpoint of a cross-dataset cell (other subjects of another dataset)
    cell = plan_cells(reg, "vmnc-bce", "tiny-cross", overrides=[*FAST, "init.checkpoint=tiny.vmnc-fold1"],
                      runs_dir=tmp_path / "c")[0]
    from aubench.engine import run_cell

    rec = run_cell(cell, reg, progress=False)
    assert rec.init_checkpoint["source"].startswith("hf://org/vmnc@") and rec.init_checkpoint["fold"] == "1"


def _upload(hub_url: str, folder: Path, repo: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_url, token=WRITE)
    api.create_repo(repo, exist_ok=True)
    api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message="test")


def _tampered(trained, tmp_path, how: str) -> Path:
    from aubench.hub import build_publish_folder

    out = build_publish_folder(trained[2], "org/bad", tmp_path / how, trained[0])
    meta_path = out / "1" / "aubench_meta.json"
    meta = json.loads(meta_path.read_text())
    if how == "checksum":
        meta["weights_sha256"] = "0" * 64
    elif how == "missing":
        del meta["metrics"]
    elif how == "extra":
        meta["surprise"] = 1
    elif how == "pickle":
        for f in out.rglob("model.safetensors"):
            shutil.move(f, f.with_name("pytorch_model.bin"))
    meta_path.write_text(json.dumps(meta))
    return out


@pytest.mark.parametrize(("case", "args", "message"), [
    ("checksum", ["download", "org/bad"], "SHA-256"),
    ("missing", ["download", "org/bad"], "missing ['metrics']"),
    ("extra", ["download", "org/bad"], "unexpected ['surprise']"),
    ("pickle", ["download", "org/bad"], "only pickles (pytorch_model.bin"),
    ("revision", ["download", "org/vmnc@v9"], "that revision does not exist"),
    ("no-repo", ["download", "org/nothing"], "no such repository"),
    ("overlap", ["evaluate", "--checkpoint", "hf://org/vmnc/1", "--protocol", "tiny-3fold", "--fold", "2"],
     "subjects ['F003', 'F004']"),
    ("au-order", ["evaluate", "--checkpoint", "hf://org/vmnc/1", "--protocol", "tiny-3fold-reordered", "--fold", "1"],
     "in another order"),
    ("local-pickle", ["evaluate", "--checkpoint", "PICKLE", "--protocol", "tiny-3fold"], "safetensors only"),
    ("other-method", ["publish", "RUN", "--repo-id", "org/taken"], "holds monet on tiny-3fold@v1"),
    ("read-token", ["publish", "RUN", "--repo-id", "org/new"], "refused the token (HTTP 403)"),
    ("unreachable", ["download", "org/vmnc"], "cannot be reached"),
])
def test_bad_input_gets_one_clear_line_and_changes_nothing(trained, hub, tmp_path, monkeypatch, capsys, case, args,
                                                           message):
    assert main(["publish", str(trained[2]), "--repo-id", "org/vmnc"]) == 0
    if case in ("checksum", "missing", "extra", "pickle"):
        _upload(hub.url, _tampered(trained, tmp_path, case), "org/bad")
    if case == "other-method":
        _upload(hub.url, _tampered(trained, tmp_path, "ok"), "org/taken")
        index = json.loads(hub.files("org/taken")["aubench.json"])
        hub.repos["org/taken"].commits[hub.repos["org/taken"].refs["main"]]["aubench.json"] = json.dumps(
            {**index, "method": "monet"}).encode()
    if case == "read-token":
        monkeypatch.setenv("HF_TOKEN", READ)
    if case == "unreachable":
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    (tmp_path / "model.pt").write_bytes(b"not a real pickle")
    args = [str(trained[2]) if a == "RUN" else str(tmp_path / "model.pt") if a == "PICKLE" else a for a in args]
    if args[0] == "evaluate":
        args += ["--runs-dir", str(tmp_path / "eval"), "--no-progress"]
    before = _files(trained[1])
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1  # besides progress bars
    assert "Traceback" not in err and WRITE not in err and READ not in err
    assert _files(trained[1]) == before
    assert not list((tmp_path / "eval").rglob("record.json")) if (tmp_path / "eval").exists() else True


def test_checkpoint_metadata_with_extra_fields_is_refused(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    from aubench.checkpoints import read_meta
    from aubench.errors import CheckpointError

    src = trained[2] / "1" / "seed0" / "model.safetensors"
    meta = read_meta(src).to_metadata()
    save_file(load_file(str(src)), str(tmp_path / "model.safetensors"), metadata={**meta, "extra_field": "x"})
    with pytest.raises(CheckpointError, match="extra_field"):
        read_meta(tmp_path)
