"""The ``aubench`` command line.

Kept light at import: listing plugins and ``--help`` never import torch or build a model.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aubench import __version__
from aubench.errors import AubenchError, ConfigError, UnknownNameError

if TYPE_CHECKING:
    from aubench.commands import Commands
    from aubench.registry import Registry
    from aubench.specs import ProtocolSpec

__all__ = ["main", "build_parser"]

KINDS = ("plugins", "datasets", "models", "losses", "methods", "protocols", "references", "checkpoints")


def build_parser(registry: Registry | None = None) -> tuple[argparse.ArgumentParser, Commands]:
    """The ``aubench`` parser: core commands, then what plugins add through ``aubench_register_commands``."""
    import warnings

    from aubench.commands import Commands
    from aubench.data_cli import add_data_commands
    from aubench.hub_cli import add_hub_commands
    from aubench.scaffold import add_scaffold_command

    p = argparse.ArgumentParser(prog="aubench", description="Benchmark harness for facial Action Unit detection.")
    p.add_argument("--version", action="version", version=f"aubench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ls = sub.add_parser("list", help="list plugins and what they register")
    ls.add_argument("kind", nargs="?", choices=KINDS, help="show only this kind (default: everything)")

    show = sub.add_parser("show", help="print a method's resolved recipe (after preset and overrides)")
    show.add_argument("method")
    show.add_argument("overrides", nargs="*", help="Hydra-style overrides, e.g. optim.lr=1e-4")
    target = show.add_mutually_exclusive_group()
    target.add_argument("--dataset", default=None, help="resolve preset=auto as for this dataset")
    target.add_argument("--protocol", default=None, help="resolve preset=auto as for this protocol's training data")

    run = sub.add_parser("run", help="train and evaluate methods on protocols",
                         description="Run `aubench run METHOD [key=value ...]` or `aubench run --all`. Finished "
                                     "cells are skipped; --overwrite redoes them.")
    run.add_argument("items", nargs="*", metavar="METHOD | key=value",
                     help="a method name and Hydra-style overrides (optim.lr=1e-4, preset=paper, engine.device=cpu)")
    run.add_argument("--all", action="store_true", help="every default method on every default protocol")
    run.add_argument("--dataset", help="run the protocols of this dataset (default protocols if omitted)")
    run.add_argument("--protocol", action="append", help="protocol name (or name@version); repeatable")
    run.add_argument("--fold", action="append", help="only this fold (repeatable); default: every fold")
    run.add_argument("--seeds", type=int, default=1,
                     help="run N seeds, starting at the recipe's seed (0, or seed=K), and report mean ± std")
    run.add_argument("--jobs", type=int, default=int(os.environ.get("AUBENCH_JOBS", "0") or 0),
                     help="cells in parallel worker processes, each with cores/jobs torch threads (default 0: "
                          "one per CPU core; on a GPU one per two cores and 8 GiB of GPU memory; env AUBENCH_JOBS)")
    run.add_argument("--runs-dir", type=Path, default=Path(os.environ.get("AUBENCH_RUNS", "runs")))
    run.add_argument("--overwrite", action="store_true", help="redo cells that already have a result record")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (one line per cell only)")

    lb = sub.add_parser("leaderboard", help="render a Markdown leaderboard from result records")
    lb.add_argument("--runs-dir", type=Path, default=Path(os.environ.get("AUBENCH_RUNS", "runs")))
    lb.add_argument("--out", type=Path, default=None, help="default: <runs-dir>/LEADERBOARD.md")
    lb.add_argument("--export", type=Path, default=None, metavar="DIR",
                    help="copy the result records (record.json only) into DIR, keeping their layout; refuses to "
                         "replace a different record unless --overwrite")
    lb.add_argument("--overwrite", action="store_true", help="with --export: replace records that differ")
    lb.add_argument("--verify", action="store_true",
                    help="recompute every number from the stored predictions (and, where the dataset is prepared "
                         "here, check its labels and fingerprint); fail at the first mismatch")
    lb.add_argument("--migrate", action="store_true", help="rewrite older records in the current record schema")
    lb.add_argument("--published", choices=["all", "run"], default="run",
                    help="run: published rows for the protocols the runs folder has results for (default); all: "
                         "also a section for every other protocol with published rows (the committed board)")

    sub.add_parser("doctor", help="print what a bug report needs: versions, device, plugins, datasets")

    chk, prep = add_data_commands(sub)

    plot = sub.add_parser("plot", help="draw a finished cell (PNG next to its run folder)")
    plot.add_argument("kind", metavar="KIND")
    plot.add_argument("run_dir", type=Path, help="a cell folder (the one holding record.json)")
    plot.add_argument("--out", type=Path, default=None)

    sweep = sub.add_parser("sweep", help="Hydra multirun: one job per cell (local, or SLURM/Ray launchers)",
                           add_help=False)
    sweep.add_argument("hydra_args", nargs=argparse.REMAINDER,
                       help="e.g. method=M1,M2 protocol=P fold=1,2,3 seed=0,1 (Hydra multirun syntax)")

    cli = Commands(sub, {"data check": chk, "data prepare": prep})
    add_hub_commands(cli)
    add_scaffold_command(cli)
    cli.add_plot("reliability", "per-AU histograms of predictions by ground truth (thesis Fig. 4.4)", _reliability)
    if registry is not None:
        for impl in registry.pm.hook.aubench_register_commands.get_hookimpls():
            try:
                impl.function(**({"cli": cli} if "cli" in impl.argnames else {}))
            except Exception as exc:  # one plugin's broken command must not take the command line down
                warnings.warn(f"plugin {impl.plugin_name!r} failed to add its commands "
                              f"({type(exc).__name__}: {exc}); the other commands work", stacklevel=2)
    plot.description = "Kinds: " + "; ".join(f"{k}: {h}" for k, (h, _) in sorted(cli.plots.items())) + "."
    return p, cli


def _reliability(run_dir: Path, out: Path | None) -> Path:
    from aubench.plots import reliability_histogram

    return reliability_histogram(run_dir, out)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001 (warnings' signature)
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    from aubench.registry import get_registry

    warnings.formatwarning = _one_line_warning  # a user reads what is wrong, not where in aubench it was noticed
    broken: AubenchError | None = None
    try:
        registry = get_registry()
    except AubenchError as exc:  # still parse, so --help and --version work with a broken plugin
        registry, broken = None, exc
    parser, cli = build_parser(registry)
    args, extra = parser.parse_known_args(argv)
    if extra:  # overrides may come after options: `aubench run m --fold 1 optim.lr=1e-3`
        if args.command in ("run", "show") and all("=" in e or e.startswith("~") for e in extra):
            if args.command == "run":
                args.items += extra
            else:
                args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if broken is not None and args.command != "doctor":
            raise broken
        if hasattr(args, "run"):
            return args.run(args)
        return {"list": cmd_list, "show": cmd_show, "run": cmd_run, "leaderboard": cmd_leaderboard,
                "doctor": cmd_doctor, "data": _cmd_data, "sweep": cmd_sweep, "plot": cmd_plot}[args.command](args, cli)
    except AubenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as exc:  # a path that cannot be written or read: one line, not a traceback
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return 2


def _os_error(exc: OSError) -> str:
    import errno

    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (f"no space left to write{where}: {exc.strerror}. Files written before are intact (results are written "
                "atomically); free space and run the same command again")
    return f"{exc.strerror or exc}{where}; check that the path exists, is the kind you meant, and is writable"


# --------------------------------------------------------------------------- list / show


def cmd_list(args: argparse.Namespace, cli: Commands) -> int:
    from tabulate import tabulate

    from aubench.registry import get_registry

    reg = get_registry()
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        print(f"\n{kind.upper()}")
        if kind == "plugins":
            rows = [[p.name, p.version, p.module, ", ".join(h.removeprefix("aubench_") for h in p.hooks)]
                    for p in reg.plugins()]
            print(tabulate(rows, headers=["plugin", "version", "module", "hooks"], tablefmt="simple"))
            for name, msg in reg.load_errors.items():
                print(f"  BROKEN {name}: {msg}")
            for problem in (f"  WARNING {p.name}: {w}" for p in reg.plugins() for w in p.problems):
                print(problem)
        elif kind == "references":
            rows = [[t.protocol, t.source, len(t.rows), owner] for owner, t in reg.references]
            print(tabulate(rows, headers=["protocol", "source", "rows", "plugin"], tablefmt="simple"))
        else:
            singular = kind.removesuffix("es") if kind == "losses" else kind[:-1]
            rows = []
            for key in reg.names(singular):
                spec = reg.specs[singular][key]
                extra = ""
                if singular == "dataset":
                    extra = f"AUs {','.join(map(str, spec.au_set))}; {'synthetic' if spec.synthetic else 'real'}"
                elif singular == "protocol":
                    extra = (f"{spec.train_dataset} -> {spec.test_dataset}; {len(spec.folds)} fold(s); "
                             f"AUs {','.join(map(str, spec.eval_aus))}{'; default' if spec.default else ''}")
                elif singular == "method":
                    extra = "default" if spec.default else ""
                elif singular == "checkpoint":
                    extra = f"hf://{spec.repo_id}@{spec.revision or 'main'}/{spec.fold}; {spec.protocol}"
                elif singular == "model" and (spec.inputs or spec.inputs_for):
                    extra = "needs " + ", ".join([*spec.inputs, *(["inputs its recipe asks for"] if spec.inputs_for else [])])
                rows.append([key, reg.owners[singular][key], extra, spec.description])
            print(tabulate(rows, headers=[singular, "plugin", "details", "description"], tablefmt="simple"))
    return 0


def cmd_show(args: argparse.Namespace, cli: Commands) -> int:
    from omegaconf import OmegaConf

    from aubench.config import compose
    from aubench.registry import get_registry

    reg = get_registry()
    proto = reg.get("protocol", args.protocol) if args.protocol else None
    cfg = compose(args.method, args.overrides, registry=reg, dataset=proto.train_dataset if proto else args.dataset,
                  protocol=proto.id if proto else None)
    print(OmegaConf.to_yaml(cfg), end="")
    return 0


# --------------------------------------------------------------------------- run


def _split_items(items: list[str]) -> tuple[list[str], list[str]]:
    methods = [i for i in items if "=" not in i and not i.startswith("~")]
    overrides = [i for i in items if i not in methods]
    return methods, overrides


def _protocols_for(reg: Registry, dataset: str | None, names: list[str] | None) -> list[ProtocolSpec]:
    if names:
        protos = [reg.get("protocol", n) for n in names]
        if dataset:
            bad = [p.id for p in protos if dataset not in (p.train_dataset, p.test_dataset)]
            if bad:
                raise ConfigError(f"protocols {bad} do not use dataset {dataset!r}")
        return protos
    if dataset:
        reg.get("dataset", dataset)
        protos = [p for p in reg.specs["protocol"].values() if p.train_dataset == p.test_dataset == dataset]
        if not protos:
            raise ConfigError(f"no within-dataset protocol for {dataset!r}; pick one with --protocol "
                              "(see `aubench list protocols`)")
        return protos
    return [p for p in reg.specs["protocol"].values() if p.default]


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"seed={text!r} must be a whole number") from None


def _runs_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--runs-dir {path} is a file; give a folder (it is created if missing)")
    return path


def cmd_run(args: argparse.Namespace, cli: Commands) -> int:
    from tqdm.auto import tqdm

    from aubench.cells import plan_cells, run_cells
    from aubench.leaderboard import write_leaderboard
    from aubench.metrics import mean_std
    from aubench.registry import get_registry
    from aubench.workers import Workers, default_jobs

    reg = get_registry()
    _runs_dir(args.runs_dir)
    methods, overrides = _split_items(args.items)
    if args.all and methods:
        raise ConfigError("give either --all or method names, not both")
    if args.all:
        methods = [m.name for m in reg.specs["method"].values() if m.default]
    if not methods:
        raise ConfigError("name a method (see `aubench list methods`) or pass --all")
    if args.seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    if args.jobs < 0:
        raise ConfigError("--jobs must be 0 (one per CPU core) or more")
    from aubench.distributed import is_main, world

    if args.jobs == 0 or world()[1] > 1:  # under torchrun the processes share each cell instead
        args.jobs = 1 if world()[1] > 1 else default_jobs(overrides)
    protos = _protocols_for(reg, args.dataset, args.protocol)
    with Workers(args.jobs) as workers:  # they start up and build the datasets while the recipes compose
        workers.build((n for p in protos for n in (p.train_dataset, p.test_dataset)), reg)
        cells = []
        for method in methods:
            for proto in protos:
                first = next((_seed(o.split("=", 1)[1]) for o in overrides if o.startswith("seed=")), 0)
                cells += plan_cells(reg, method, proto.id, folds=args.fold,
                                    seeds=list(range(first, first + args.seeds)), overrides=overrides,
                                    runs_dir=args.runs_dir)
        folds = len({(c.protocol.id, c.fold.name) for c in cells})
        if is_main():
            print(f"{len(cells)} cell(s): {len(methods)} method(s) x {folds} protocol fold(s) x {args.seeds} "
                  f"seed(s); runs in {args.runs_dir}")
        outer = tqdm(total=len(cells), desc="cells", unit="cell", disable=args.no_progress or not is_main(),
                     position=0)

        def echo(msg: str) -> None:
            outer.update(1)
            tqdm.write(msg)

        outcomes = run_cells(cells, reg, overwrite=args.overwrite, progress=not args.no_progress and args.jobs == 1,
                             echo=echo, jobs=args.jobs, workers=workers)
        outer.close()
    if not is_main():  # torchrun's other ranks: rank 0 reports and renders
        return int(any(o.status in ("failed", "stale") for o in outcomes))
    print()
    groups: dict[tuple[str, str], list[float]] = {}
    for o in outcomes:
        if o.record is not None:
            groups.setdefault((o.cell.method, o.cell.protocol.id), []).append(o.record.f1_avg)
    for (method, proto), f1s in sorted(groups.items()):
        mean, std = mean_std(f1s)
        print(f"{method:28s} {proto:34s} F1 {mean:5.1f} ± {std:4.1f}  ({len(f1s)} cell(s))")
    failed = [o for o in outcomes if o.status == "failed"]
    stale = [o for o in outcomes if o.status == "stale"]
    out = write_leaderboard(args.runs_dir, args.runs_dir / "LEADERBOARD.md", reg, all_published=False)
    print(f"\nleaderboard: {out}")
    if failed:
        print(f"{len(failed)} cell(s) failed; see failed.json in their run folders", file=sys.stderr)
    if stale:
        print(f"{len(stale)} finished cell(s) are stale (the weights they started from changed): rerun them with "
              "--overwrite; `aubench leaderboard --verify` refuses them until then", file=sys.stderr)
    return int(bool(failed or stale))


def cmd_leaderboard(args: argparse.Namespace, cli: Commands) -> int:
    from aubench.leaderboard import write_leaderboard
    from aubench.registry import get_registry

    if not _runs_dir(args.runs_dir).is_dir():
        raise ConfigError(f"runs folder {args.runs_dir} does not exist; run `aubench run ...` first or pass --runs-dir")
    if args.export:
        from aubench.results import export_records

        copied = export_records(args.runs_dir, args.export, overwrite=args.overwrite)
        print(f"exported {copied} record(s) with their predictions to {args.export}")
        return 0
    if args.migrate:
        from aubench.records import migrate_records

        print(f"migrated {migrate_records(args.runs_dir)} record(s) to the current schema")
    if args.verify:
        from aubench.verify import verify_records

        print(verify_records(args.runs_dir))
        return 0
    out = write_leaderboard(args.runs_dir, args.out or args.runs_dir / "LEADERBOARD.md", get_registry(),
                            all_published=args.published == "all")
    print(out)
    return 0


# --------------------------------------------------------------------------- doctor / plot / sweep


def cmd_doctor(args: argparse.Namespace, cli: Commands) -> int:
    from aubench.doctor import report

    print(report())
    return 0


def _cmd_data(args: argparse.Namespace, cli: Commands) -> int:
    from aubench.data_cli import cmd_data

    return cmd_data(args, cli)


def cmd_plot(args: argparse.Namespace, cli: Commands) -> int:
    if args.kind not in cli.plots:
        raise UnknownNameError("plot", args.kind, cli.plots)
    print(cli.plots[args.kind][1](args.run_dir, args.out))
    return 0


def cmd_sweep(args: argparse.Namespace, cli: Commands) -> int:
    from aubench.hydra_app import run_multirun

    return run_multirun(args.hydra_args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
