"""``aubench publish``, ``aubench download`` and ``aubench evaluate``: the command line of :mod:`aubench.hub`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aubench.commands import Commands

__all__ = ["add_hub_commands"]


def add_hub_commands(cli: Commands) -> None:
    pub = cli.add_command("publish", "upload a cell or run folder to the Hugging Face Hub (one repository)", _publish,
                          description="Upload final weights (safetensors only), the resolved recipe, the metadata "
                                      "record and a model card; a run folder (all folds) becomes one repository with a "
                                      "folder per fold. The token comes from `hf auth login` or HF_TOKEN.")
    pub.add_argument("path", type=Path, help="a cell folder (holding record.json) or a run folder above several")
    pub.add_argument("--repo-id", required=True, help="org/name on the Hub")
    pub.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    pub.add_argument("--private", action="store_true", help="create the repository as private")
    pub.add_argument("--seed", type=int, default=None, help="the seed to publish when the run has several")
    pub.add_argument("--dry-run", type=Path, default=None, metavar="DIR",
                     help="write the exact folder that would be uploaded into DIR, and upload nothing")

    dl = cli.add_command("download", "fetch a published checkpoint into the Hugging Face cache and verify it",
                         _download)
    dl.add_argument("repo", metavar="REPO_ID[@REVISION]")
    dl.add_argument("--to", type=Path, default=None, help="also copy the files into this folder")

    ev = cli.add_command("evaluate", "evaluate a checkpoint on a protocol without training; writes a result record",
                         _evaluate)
    ev.add_argument("--checkpoint", required=True,
                    help="a cell folder, a downloaded repository folder, hf://org/name[@rev][/fold], or a "
                         "registered checkpoint name (`aubench list checkpoints`)")
    ev.add_argument("--protocol", required=True, help="protocol name (or name@version)")
    ev.add_argument("--fold", default=None, help="the fold to test (default: the checkpoint's own fold on its own "
                                                 "protocol, else every fold)")
    ev.add_argument("--strict", action="store_true", help="refuse a checkpoint prepared with another preprocessing")
    ev.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    ev.add_argument("--runs-dir", type=Path, default=Path(os.environ.get("AUBENCH_RUNS", "runs")))
    ev.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation's record")
    ev.add_argument("--no-progress", action="store_true")


def _publish(args: argparse.Namespace) -> int:
    from aubench.hub import build_publish_folder, publish
    from aubench.registry import get_registry

    if args.dry_run is not None:
        out = build_publish_folder(args.path, args.repo_id, args.dry_run, get_registry(), args.seed)
        files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        print(f"dry run: {len(files)} files for {args.repo_id} written to {out} (nothing uploaded):")
        print("\n".join(f"  {f}" for f in files))
        return 0
    url = publish(args.path, args.repo_id, revision=args.revision, private=args.private, registry=get_registry(),
                  seed=args.seed)
    print(f"published {args.path} to {args.repo_id}: {url}")
    return 0


def _download(args: argparse.Namespace) -> int:
    import json

    from aubench.hub import INDEX_FILE, META_FILE, download

    repo_id, _, revision = args.repo.removeprefix("hf://").partition("@")
    root, commit = download(repo_id, revision or None, args.to)
    index = json.loads((root / INDEX_FILE).read_text())
    print(f"hf://{repo_id}@{commit}: {index['method']} [{index['preset']}] on {index['protocol']} "
          f"(checksums and metadata verified)")
    for fold in index["folds"]:
        meta = json.loads((root / fold / META_FILE).read_text())
        ck = meta["checkpoint"]
        print(f"  fold {fold}: F1 {meta['metrics']['f1_avg']:.1f}, AUs {','.join(map(str, ck['au_set']))}, "
              f"trained on {len(ck['train_subjects'])} {ck['train_dataset']} subjects, "
              f"preprocessing {ck['preprocessing_id']}")
    print(f"  files: {args.to or root}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from aubench.evaluation import evaluate_source
    from aubench.registry import get_registry

    evaluate_source(args.checkpoint, get_registry(), args.protocol, args.runs_dir, fold=args.fold, strict=args.strict,
                    overwrite=args.overwrite, progress=not args.no_progress, device=args.device)
    return 0
