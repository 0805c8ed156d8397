import json
import os
import re

import pytest
from conftest import FAST

from aubench.cli import main


def test_run_with_seeds_reports_mean_and_std_then_skips_on_rerun(registry, runs, capsys):
    args = ["run", "vmnc-bce", "--protocol", "tiny-3fold", "--fold", "1", "--seeds", "2", "--runs-dir", str(runs),
            "--no-progress", *FAST]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("done  vmnc-bce") == 2
    assert re.search(r"vmnc-bce\s+tiny-3fold@v1\s+F1\s+[\d.]+ ±\s+[\d.]+\s+\(2 cell\(s\)\)", out)
    assert f"leaderboard: {runs / 'LEADERBOARD.md'}" in out
    assert main(args) == 0
    assert capsys.readouterr().out.count("skip  vmnc-bce") == 2


def test_dataset_option_picks_its_protocols(registry, runs, capsys):
    assert main(["run", "vmnc-bce", "--dataset", "tiny-bp4d", "--fold", "2", "--runs-dir", str(runs), "--no-progress",
                 *FAST]) == 0
    assert "tiny-3fold@v1 fold 2" in capsys.readouterr().out
    assert main(["run", "vmnc-bce", "--dataset", "tiny-disfa", "--protocol", "tiny-3fold", "--runs-dir", str(runs)]) == 2
    assert "do not use dataset 'tiny-disfa'" in capsys.readouterr().err


def test_errors_are_one_line_with_a_suggestion(registry, capsys):
    assert main(["run", "vmnc-bec"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown method 'vmnc-bec'. Did you mean 'vmnc-bce'") and "Traceback" not in err
    assert main(["run", "vmnc-bce", "--protocol", "tiny-3fold", "optim.lrr=1"]) == 2
    assert "Did you mean 'optim.lr'" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert "--all" in capsys.readouterr().err


def test_show_prints_the_resolved_recipe(registry, capsys):
    assert main(["show", "vmnc-wbce-dice", "optim.lr=0.01"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.01" in out and "backbone: aubench_smoke_cnn" in out and "name: dice" in out


def test_list_shows_every_kind(registry, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("PLUGINS", "DATASETS", "MODELS", "LOSSES", "METHODS", "PROTOCOLS", "tiny-3fold@v1", "weighted_bce",
                 "register_methods"):
        assert word in out


def test_doctor_prints_versions_device_plugins_and_datasets(registry, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for word in ("torch", "cuda available", "plugins", "baseline", "datasets (prepared copies)", "tiny-bp4d"):
        assert word in out


def test_leaderboard_command_needs_an_existing_runs_folder(registry, tmp_path, capsys):
    assert main(["leaderboard", "--runs-dir", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_failed_cell_gives_exit_code_one_and_keeps_going(registry, runs, capsys):
    code = main(["run", "vmnc-bce", "--protocol", "tiny-3fold", "--fold", "1", "--fold", "2", "--runs-dir", str(runs),
                 "--no-progress", *FAST, "engine.device=cuda:7"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out.count("FAIL  vmnc-bce") == 2  # both cells tried, each failed
    assert "CUDA is not available" in captured.out and "cell(s) failed" in captured.err
    assert len(list(runs.rglob("failed.json"))) == 2 and not list(runs.rglob("record.json"))


def test_sweep_runs_one_job_per_cell(registry, runs, capsys):
    assert main(["sweep", "method=vmnc-bce", "protocol=tiny-3fold", "fold=1,3", f"runs_dir={runs}", *FAST]) == 0
    records = sorted(p.relative_to(runs).parts[3] for p in runs.rglob("record.json"))
    assert records == ["1", "3"]


def test_sweep_sweeps_recipe_values_keeps_the_preset_and_checks_keys(registry, runs, capsys):
    assert main(["sweep", "method=vmnc-bce", "protocol=tiny-3fold", "fold=1", "optim.lr=0.001,0.002", "preset=smoke",
                 f"runs_dir={runs}", *FAST]) == 0
    records = [json.loads(p.read_text()) for p in runs.rglob("record.json")]
    assert sorted(r["config"]["optim"]["lr"] for r in records) == [0.001, 0.002]
    assert {r["preset"] for r in records} == {"smoke"} and len({r["config_hash"] for r in records}) == 2
    assert main(["sweep", "method=vmnc-bce", "protocol=tiny-3fold", "fold=1", "optim.lrr=0.1", f"runs_dir={runs}"]) != 0
    assert "optim.lrr" in capsys.readouterr().err


def test_sweep_on_submitits_local_launcher_runs_each_cell_in_its_own_process(runs, monkeypatch):
    """Hydra's submitit launcher in local mode: real processes (plugins from entry points), one cell
    each, into one runs folder; the leaderboard then aggregates them."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.delenv("AUBENCH_PLUGINS", raising=False)
    code = main(["sweep", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "method=vmnc-bce",
                 "protocol=synth-bp4d-3fold", "fold=1,2", f"runs_dir={runs}", "epochs=1", "batch_size=64",
                 "engine.threads=1"])
    assert code == 0
    records = sorted(runs.rglob("record.json"))
    assert [p.relative_to(runs).parts[3] for p in records] == ["1", "2"]
    jobs = [p for p in runs.glob(".sweeps/*/.submitit/*") if p.is_dir() and p.name.isdigit()]
    assert len(jobs) == 2 and all(str(os.getpid()) != p.name for p in jobs)  # a process of its own per cell
    assert main(["leaderboard", "--runs-dir", str(runs)]) == 0
    assert re.search(r"\| vmnc-bce +\| smoke \+ [^|]*\|.*\| 2 × 1 ", (runs / "LEADERBOARD.md").read_text())


def test_sweep_on_hydras_ray_launcher_against_a_local_ray_instance(runs, monkeypatch):
    """The same two cells as jobs of a local Ray instance. Hydra's Ray launcher is not in the test extra
    (ray[default], boto3: ~400 MB): `make test-ray` installs it and sets AUBENCH_TEST_RAY=1, under which
    a missing launcher fails instead of skipping (CI runs it after `make test`)."""
    if os.environ.get("AUBENCH_TEST_RAY") == "1":
        import hydra_plugins.hydra_ray_launcher  # noqa: F401
    else:
        pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    monkeypatch.delenv("AUBENCH_PLUGINS", raising=False)
    assert main(["sweep", "hydra/launcher=ray", "method=vmnc-bce", "protocol=synth-bp4d-3fold", "fold=1,2",
                 f"runs_dir={runs}", "epochs=1", "batch_size=64", "engine.threads=1"]) == 0
    assert sorted(p.relative_to(runs).parts[3] for p in runs.rglob("record.json")) == ["1", "2"]
    assert main(["leaderboard", "--runs-dir", str(runs)]) == 0
