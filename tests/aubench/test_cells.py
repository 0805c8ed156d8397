"""Planning and running lists of cells: duplicates run once, cells run in parallel worker processes."""
from aubench.cells import plan_cells, run_cells


def test_cells_run_in_parallel_worker_processes_with_one_thread_each(registry, runs, monkeypatch, tmp_path):
    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path / "home"))  # inherited by the spawned workers
    cells = plan_cells(registry, "monet", "monet-toy", seeds=[0, 1], overrides=["epochs=2", "model.n_orders=6",
                                                                            "model.keep=4"], runs_dir=runs)
    lines = []
    outcomes = run_cells(cells, registry, progress=False, jobs=2, echo=lines.append)
    assert [o.status for o in outcomes] == ["done", "done"] and [o.cell.seed for o in outcomes] == [0, 1]
    assert all(c.record_path.is_file() for c in cells) and len(lines) == 2
    threads = {o.record.environment.get("threads") for o in outcomes}
    assert threads == {1}, threads


def test_a_cell_listed_twice_runs_once(registry, runs):
    from conftest import FAST

    cell = plan_cells(registry, "vmnc-bce", "tiny-3fold", folds=["1"], overrides=FAST, runs_dir=runs)[0]
    lines = []
    outcomes = run_cells([cell, cell], registry, progress=False, echo=lines.append)
    assert outcomes[0] is outcomes[1] and outcomes[0].status == "done" and len(lines) == 1
