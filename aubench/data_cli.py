"""``aubench data``: generate, check, prepare, verify and locate datasets."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aubench.errors import ConfigError

if TYPE_CHECKING:
    from aubench.commands import Commands
    from aubench.specs import DatasetSpec

__all__ = ["add_data_commands", "cmd_data"]


def add_data_commands(sub: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add ``aubench data``; return the ``check`` and ``prepare`` parsers (plugins add options to them)."""
    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    gen = dsub.add_parser("generate", help="generate a synthetic dataset (cached; regenerated when it changes)")
    gen.add_argument("dataset")
    gen.add_argument("--force", action="store_true", help="regenerate even if the cached copy is current")
    dsub.add_parser("where", help="print where prepared datasets are stored")
    chk = dsub.add_parser("check", help="scan a raw copy of a real dataset and report what was found and every problem")
    chk.add_argument("dataset")
    chk.add_argument("raw_root", type=Path)
    chk.add_argument("--report", type=Path, default=None, metavar="FILE",
                     help="also write every count, issue and bad file as JSON")
    prep = dsub.add_parser("prepare", help="prepare a real dataset from a raw copy (resumable)")
    prep.add_argument("dataset")
    prep.add_argument("raw_root", type=Path)
    prep.add_argument("--force", action="store_true", help="replace an existing prepared copy")
    prep.add_argument("--report", type=Path, default=None, metavar="FILE",
                      help="also write every issue and file that could not be used as JSON")
    ver = dsub.add_parser("verify", help="hash every file of a prepared dataset against its meta.json")
    ver.add_argument("dataset")
    return chk, prep


def cmd_data(args: argparse.Namespace, cli: Commands) -> int:
    from aubench.data.prepared import PreparedDataset, dataset_dir, ensure_prepared
    from aubench.registry import get_registry

    if args.data_command == "where":
        print(dataset_dir("<name>").parent)
        return 0
    spec = get_registry().get("dataset", args.dataset)
    if args.data_command in ("check", "prepare"):
        return _data_real(args, spec, cli)
    if args.data_command == "verify":
        ds = PreparedDataset(dataset_dir(spec.name))  # per-load checks: index.csv hash, array shapes
        checked = ds.verify()
        if spec.synthetic:
            from aubench.specs import resolve_factory

            expected = resolve_factory(spec.fingerprint)(spec.name, dict(spec.params))
            if expected != ds.fingerprint:
                raise ConfigError(f"{ds.root} was generated as {ds.fingerprint}; the generator now gives {expected}. "
                                  f"Regenerate it: `aubench data generate {spec.name} --force`")
            checked.append(f"fingerprint {expected} matches the generator")
        print(f"{ds.root}: OK ({len(ds)} frames, {len(ds.subjects)} subjects)\n  " + "\n  ".join(checked))
        return 0
    if not (spec.synthetic or spec.derived):
        raise ConfigError(f"{args.dataset} is a real dataset; it is prepared from a licensed copy, not generated")
    ds = ensure_prepared(spec, force=args.force)
    print(f"{ds.root}: {len(ds)} frames, {len(ds.subjects)} subjects, fingerprint {ds.fingerprint}")
    return 0


def _data_real(args: argparse.Namespace, spec: DatasetSpec, cli: Commands) -> int:
    from aubench.data.prepared import PreparedDataset, dataset_dir
    from aubench.errors import ResultExistsError
    from aubench.specs import resolve_factory

    if spec.synthetic:
        raise ConfigError(f"{spec.name} is synthetic; use `aubench data generate {spec.name}`")
    if not args.raw_root.exists():
        raise ConfigError(f"raw root {args.raw_root} does not exist; point at your copy of {spec.name}")
    options = cli.keyword_arguments(f"data {args.data_command}", spec.name, args)
    if args.data_command == "check":
        if spec.check is None:
            raise ConfigError(f"dataset {spec.name} has no checker")
        scan = resolve_factory(spec.check)(raw_root=args.raw_root, **options)
        print(f"{spec.name} at {args.raw_root}")
        print(scan.report())
        if args.report is not None:
            print(f"report: {scan.write_report(args.report)}")
        return 1 if scan.errors else 0
    out = dataset_dir(spec.name)
    if (out / "meta.json").exists() and not args.force:
        raise ResultExistsError(f"{out} is already prepared; pass --force to prepare it again")
    extra = {"report": args.report} if args.report is not None else {}
    resolve_factory(spec.prepare)(out_dir=out, raw_root=args.raw_root, progress=True, **options, **extra)
    ds = PreparedDataset(out)
    print(f"{out}: {len(ds)} frames, {len(ds.subjects)} subjects, preprocessing {ds.meta['preprocessing_id']}, "
          f"detection failed on {100 * ds.meta['detection_failed_fraction']:.2f}% of frames, "
          f"{ds.meta.get('frames_without_image', 0)} coded frames without image, "
          f"{ds.meta.get('undecodable_files', 0)} file(s) that could not be decoded"
          + (f", {ds.meta['shards_redone']} sequence(s) redone since their inputs changed" if ds.meta.get("shards_redone")
             else ""))
    return 0


