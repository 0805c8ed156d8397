"""``aubench sweep``: Hydra multirun over cells, so existing launchers can spread them out.

Each Hydra job is one (method, protocol, fold, seed) selection and runs through the same engine as
``aubench run``; results land in the same runs folder and skip cells already finished. Examples::

    aubench sweep method=vmnc-bce,vmnc-wbce protocol=synth-bp4d-3fold fold=1,2,3 seed=0,1
    aubench sweep method=vmnc-bce protocol=synth-bp4d-3fold fold=1,2,3 optim.lr=1e-3,3e-3
    # on SLURM (pip install hydra-submitit-launcher):
    aubench sweep hydra/launcher=submitit_slurm hydra.launcher.partition=gpu method=vmnc-bce ...
"""
from __future__ import annotations

import sys
from typing import Any

from aubench.errors import AubenchError, ConfigError

__all__ = ["run_multirun"]

#: the keys of `aubench sweep`'s own config (conf/sweep.yaml); every other override belongs to the recipe
SWEEP_KEYS = ("method", "protocol", "fold", "seed", "preset", "runs_dir", "overwrite")


def _hydra_args(argv: list[str]) -> list[str]:
    """Recipe overrides become Hydra ``++key=value`` (add or override) on the sweep config, so Hydra can
    sweep them; the recipe checks them when each job composes it."""
    out = []
    for arg in argv:
        key = arg.split("=", 1)[0]
        if arg.startswith("~"):
            raise ConfigError(f"{arg!r}: a sweep cannot delete recipe keys; use `aubench run` for that")
        if "=" in arg and not arg.startswith(("+", "hydra", "-")) and key.split("/")[0] not in SWEEP_KEYS:
            arg = "++" + arg
        out.append(arg)
    return out


def run_multirun(argv: list[str]) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from aubench.cells import plan_cells, run_cells
    from aubench.registry import get_registry

    conf = str(get_registry().search_paths[0])
    args = _hydra_args([a for a in argv if a not in ("-m", "--multirun")])
    if not any(a.startswith("hydra.sweep.dir=") for a in args):
        args.append("hydra.sweep.dir=${runs_dir}/.sweeps/${now:%Y-%m-%d_%H-%M-%S}")
    failures: list[str] = []

    def task(cfg: Any) -> float | None:
        # the registry is looked up in the job's process (a launcher may run it in another one, where
        # plugins come from entry points), never pickled with the task
        reg = get_registry()
        hc = HydraConfig.get()
        if cfg.protocol is None:
            raise ConfigError("a sweep needs protocol=<name> (see `aubench list protocols`)")
        overrides = [o.lstrip("+") for o in hc.overrides.task
                     if o.split("=")[0].lstrip("+").split(".")[0] not in (*SWEEP_KEYS, "hydra")]
        if cfg.preset != "auto":
            overrides.append(f"preset={cfg.preset}")
        method = str(cfg.method)
        try:
            cells = plan_cells(reg, method, str(cfg.protocol), folds=None if cfg.fold is None else [str(cfg.fold)],
                               seeds=[int(cfg.seed)], overrides=overrides, runs_dir=cfg.runs_dir)
        except AubenchError as exc:  # a bad recipe value: this job fails in one line, the others run
            print(f"error: {method} {' '.join(overrides)}: {exc}", file=sys.stderr)
            failures.append(f"{method} {' '.join(overrides)}")
            return None
        outcomes = run_cells(cells, reg, overwrite=bool(cfg.overwrite), progress=False)
        failures.extend(o.cell.label for o in outcomes if o.status in ("failed", "stale"))
        done = [o.record.f1_avg for o in outcomes if o.record]
        return sum(done) / len(done) if done else None

    app = hydra.main(version_base="1.3", config_path=conf, config_name="sweep")(task)
    saved = sys.argv
    sys.argv = ["aubench sweep", "--multirun", *args]
    try:
        app()
    except AubenchError:
        raise
    finally:
        sys.argv = saved
    if failures:
        print(f"{len(failures)} cell(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0
