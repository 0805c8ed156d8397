"""A separately installed plugin package is discovered through its entry point and runs.

The package is the CONTRIBUTING.md example under examples/, built and installed into a temporary
folder (not into the environment), then used from a fresh process.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "plugin"  # a copy: building leaves no build/ or egg-info in the tree
    shutil.copytree(ROOT / "examples" / "aubench_example_plugin", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stderr.lower(), out.stderr  # its packaging pattern is clean
    env = dict(os.environ, PYTHONPATH=str(target))
    return env


def aubench(env, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "aubench.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_installed_plugin_is_listed_with_its_hooks(installed):
    out = aubench(installed, "list")
    assert out.returncode == 0, out.stderr
    assert "example" in out.stdout and "aubench_example_plugin.plugin" in out.stdout
    assert "example-little-cnn" in out.stdout and "little-cnn" in out.stdout


def test_installed_plugin_runs_a_cell(installed, tmp_path):
    runs = tmp_path / "runs"
    out = aubench(installed, "run", "example-little-cnn", "--protocol", "synth-bp4d-3fold", "--fold", "1",
                  "epochs=1", "--runs-dir", str(runs), "--no-progress")
    assert out.returncode == 0, out.stdout + out.stderr
    records = list(runs.rglob("record.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["method"] == "example-little-cnn" and rec["config"]["model"]["name"] == "little-cnn"
    board = (runs / "LEADERBOARD.md").read_text()
    assert re.search(r"\| 1 +\| example-little-cnn +\| smoke", board), board  # ranked first: the only row


def test_without_the_package_the_method_is_unknown(tmp_path):
    out = aubench(dict(os.environ), "run", "example-little-cnn", "--runs-dir", str(tmp_path))
    assert out.returncode == 2 and "Unknown method 'example-little-cnn'" in out.stderr
