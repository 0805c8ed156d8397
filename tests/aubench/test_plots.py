"""Core plots of a finished cell."""
from conftest import FAST

from aubench.cells import plan_cells
from aubench.engine import run_cell


def test_reliability_histogram_png(registry, runs):
    from aubench.cli import main

    cell = plan_cells(registry, "vmnc-bce", "tiny-3fold", folds=["1"], overrides=FAST, runs_dir=runs)[0]
    run_cell(cell, registry, progress=False)
    assert main(["plot", "reliability", str(cell.run_dir)]) == 0
    png = cell.run_dir / "reliability.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
