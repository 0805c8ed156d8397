"""`aubench new-plugin` writes a package that installs, passes its own tests and runs a smoke cell."""
import json
import os
import subprocess
import sys

from aubench.cli import main


def test_new_plugin_installs_passes_its_tests_and_runs_a_cell(tmp_path, capsys):
    dest = tmp_path / "aubench-my-method"
    assert main(["new-plugin", "my-method", "--dest", str(dest), "--title", "My method"]) == 0
    assert "pip install -e" in capsys.readouterr().out
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(dest)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr and "warning" not in out.stderr, out.stderr  # packaging is clean
    env = dict(os.environ, PYTHONPATH=str(site))
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(dest / "tests")],
                           capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout + tests.stderr
    runs = tmp_path / "runs"
    cell = subprocess.run([sys.executable, "-m", "aubench.cli", "run", "my-method", "--protocol", "synth-bp4d-3fold",
                           "--fold", "1", "epochs=1", "--runs-dir", str(runs), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert cell.returncode == 0, cell.stdout + cell.stderr
    (record,) = runs.rglob("record.json")
    rec = json.loads(record.read_text())
    assert rec["method"] == "my-method" and rec["versions"]["my-method"].startswith("0.1.0 src ")
    assert main(["new-plugin", "my-method", "--dest", str(dest)]) == 2  # never written over
    assert main(["new-plugin", "My_Method", "--dest", str(tmp_path / "x")]) == 2
