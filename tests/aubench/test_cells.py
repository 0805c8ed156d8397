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


def test_parallel_workers_run_a_dependency_before_the_cells_that_start_from_it(runs, monkeypatch, tmp_path):
    from conftest import make_registry

    from aubench import MethodSpec, hookimpl

    class TwoStage:
        @hookimpl
        def aubench_register_methods(self):
            return [MethodSpec(name="stage2")]

        @hookimpl
        def aubench_config_search_paths(self):
            return [tmp_path / "conf"]

    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path / "home"))
    conf = tmp_path / "conf" / "method"
    conf.mkdir(parents=True)
    (conf / "stage2.yaml").write_text("# @package _global_\ndefaults:\n  - /recipe/multitask\n  - _self_\nmodel:\n"
                                      "  head: vmns\ninit:\n  from:\n    method: monet-vmns\n    same: [protocol, fold]\n"
                                      "    overrides: [epochs=1]\n")
    reg = make_registry(("twostage", TwoStage()))
    cells = plan_cells(reg, "stage2", "monet-toy", seeds=[0, 1], overrides=["epochs=1"], runs_dir=runs)
    assert {c.depends_on.run_dir for c in cells} == {cells[0].depends_on.run_dir}  # one stage-1 cell (seed 0)
    lines = []
    outcomes = run_cells(cells, reg, progress=False, jobs=2, echo=lines.append)
    assert [o.status for o in outcomes] == ["done", "done"] and len(lines) == 3
    assert lines[0].startswith("done  monet-vmns")
    assert all(o.record.init_checkpoint["from"]["method"] == "monet-vmns" for o in outcomes)


def test_parallel_runs_build_the_missing_generated_datasets_first(registry, monkeypatch, tmp_path):
    """With several workers the generated datasets are built side by side, by workers started before the
    cells are planned (which would otherwise build them one at a time, the other workers waiting on the
    lock); an up-to-date copy is kept, and one worker process does nothing ahead."""
    import shutil

    from aubench.data.prepared import dataset_dir
    from aubench.workers import Workers, _build_dataset

    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AUBENCH_DATA", raising=False)
    shutil.rmtree(dataset_dir("monet-toy"), ignore_errors=True)
    with Workers(1) as one:
        one.build(["monet-toy"], registry)
    assert one.pool is None and not one.building
    with Workers(2) as workers:
        workers.build(["monet-toy", "monet-toy"], registry)
        assert workers.building == {"monet-toy"}
    assert (dataset_dir("monet-toy") / "meta.json").is_file()
    with Workers(2) as again:
        again.build(["monet-toy"], registry)
        assert not again.building
    _build_dataset("no-such-dataset")  # left to the cells, which record the error where it is read


def test_parallel_workers_take_the_cells_one_method_at_a_time():
    """Two workers starting two cells of one method would wait on the same lock (its feature store)."""
    from types import SimpleNamespace

    from aubench.cells import _interleaved

    cells = [SimpleNamespace(method=m, i=i) for m, n in (("a", 3), ("b", 1), ("c", 2)) for i in range(n)]
    assert [(c.method, c.i) for c in _interleaved(cells)] == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("c", 1),
                                                              ("a", 2)]


def test_a_finished_cell_whose_recipe_changed_since_is_kept_and_reported_stale_not_skipped(registry, runs):
    """Its folder is named by preset and overrides: after an edit to the recipe file the same folder holds a
    result of the old recipe, which a silent skip would pass off as the new one's."""
    import dataclasses

    from conftest import FAST

    cell = plan_cells(registry, "vmnc-bce", "tiny-3fold", folds=["1"], overrides=FAST, runs_dir=runs)[0]
    assert run_cells([cell], registry, progress=False, echo=lambda m: None)[0].status == "done"
    before, said = cell.record_path.read_bytes(), []
    assert run_cells([cell], registry, progress=False, echo=said.append)[0].status == "skipped"
    edited = dataclasses.replace(cell, config_hash="0123456789")  # what an edited recipe composes to
    (out,) = run_cells([edited], registry, progress=False, echo=said.append)
    assert out.status == "stale" and "trained with another recipe" in out.error and "--overwrite" in out.error
    assert said[-1].startswith("STALE vmnc-bce") and cell.record_path.read_bytes() == before
