"""Checkpoints in and out of the Hugging Face Hub: publish, download, and checkpoint sources.

A published repository holds one method recipe trained on one protocol::

    README.md              model card (what it is, how it was trained and evaluated, per-AU F1 as
                           ``model-index`` results, the published numbers it compares to, how to load it)
    aubench.json           the index: method, preset, recipe hash, protocol, and the fold folders
    <fold>/model.safetensors     final weights (safetensors only; never a pickle) with CheckpointMeta
    <fold>/recipe.yaml           the resolved recipe
    <fold>/aubench_meta.json     the typed metadata record, per-AU metrics and the weights' SHA-256

A checkpoint *source* is a local cell folder (or ``model.safetensors``), a downloaded repository
folder, ``hf://org/name[@revision][/fold]``, or a name a plugin registered with
``aubench_register_checkpoints``. The Hub's environment (``HF_ENDPOINT``, ``HF_HOME``,
``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``) is read when a command runs. Tokens come from
huggingface-hub's login or ``HF_TOKEN``; aubench never prints or stores them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aubench.checkpoints import WEIGHTS_FILE, CheckpointMeta, read_meta
from aubench.checkpoints import file_sha256 as sha256
from aubench.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from aubench.registry import Registry

__all__ = ["HUB_SCHEMA_VERSION", "HubCheckpoint", "parse_hf_source", "resolve_checkpoints", "publish", "download",
           "build_publish_folder"]

HUB_SCHEMA_VERSION = 1
INDEX_FILE, META_FILE, RECIPE_FILE = "aubench.json", "aubench_meta.json", "recipe.yaml"
PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_META_KEYS = {"schema_version", "checkpoint", "weights_sha256", "metrics", "seed", "selection", "n_test_frames",
              "aubench_version", "environment"}
_TOKEN = re.compile(r"hf_[A-Za-z0-9_]{6,}")


@dataclass(frozen=True)
class HubCheckpoint:
    """One fold's weights, resolved to a local folder holding ``model.safetensors``."""

    path: Path
    source: str  # what the user named, made exact (hf://org/name@<commit>/<fold> for the Hub)
    revision: str | None = None

    @property
    def meta(self) -> CheckpointMeta:
        return read_meta(self.path)


def _redact(text: str) -> str:
    return _TOKEN.sub("hf_***", text)


# --------------------------------------------------------------------------- sources


def parse_hf_source(source: str) -> tuple[str, str | None, str | None]:
    """``hf://org/name[@rev][/fold]`` -> (repo id, revision or None, fold or None)."""
    rest = source.removeprefix("hf://").strip("/")
    parts = rest.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigError(f"{source!r} is not a Hub source; write hf://org/name, hf://org/name@revision or "
                          "hf://org/name@revision/fold")
    name, _, rev = parts[1].partition("@")
    return f"{parts[0]}/{name}", rev or None, "/".join(parts[2:]) or None


def _refuse_pickle(path: Path) -> None:
    if path.suffix in PICKLES or (path.is_dir() and not (path / WEIGHTS_FILE).exists()
                                  and any(p.suffix in PICKLES for p in path.glob("*"))):
        raise CheckpointError(f"{path} is a pickle ({', '.join(PICKLES)}); aubench loads weights from safetensors "
                              "only, since unpickling runs arbitrary code. Convert it with "
                              "safetensors.torch.save_file, or use a cell folder holding model.safetensors")


def _fold_dirs(root: Path, fold: str | None, source: str) -> list[Path]:
    """The fold folders of a repository folder (or ``root`` itself when it holds the weights)."""
    if (root / WEIGHTS_FILE).is_file():
        return [root]
    index_path = root / INDEX_FILE
    if not index_path.is_file():
        _refuse_pickle(root)
        raise CheckpointError(f"{source}: no {WEIGHTS_FILE} and no {INDEX_FILE} in {root}; name a cell folder "
                              "(the one holding record.json), a published repository, or hf://org/name")
    folds = list(json.loads(index_path.read_text())["folds"])
    if fold is not None:
        if fold not in folds:
            raise CheckpointError(f"{source}: no fold {fold!r}; the repository has folds {folds}")
        folds = [fold]
    return [root / f for f in folds]


def resolve_checkpoints(source: str, registry: Registry | None = None, fold: str | None = None) -> list[HubCheckpoint]:
    """Every fold checkpoint ``source`` names, downloaded when it is on the Hub (see the module doc)."""
    source = str(source)
    if registry is None and not source.startswith("hf://") and not Path(source).expanduser().exists():
        from aubench.registry import get_registry

        registry = get_registry()  # the name may be a registered checkpoint
    if registry is not None and source in registry.specs.get("checkpoint", {}):
        spec = registry.specs["checkpoint"][source]
        source = f"hf://{spec.repo_id}" + (f"@{spec.revision}" if spec.revision else "") + f"/{spec.fold}"
    if source.startswith("hf://"):
        repo_id, revision, hf_fold = parse_hf_source(source)
        root, commit = download(repo_id, revision)
        return [HubCheckpoint(d, f"hf://{repo_id}@{commit}/{d.name}", commit)
                for d in _fold_dirs(root, hf_fold or fold, source)]
    path = Path(source).expanduser()
    if path.is_file() and path.name == WEIGHTS_FILE:
        path = path.parent
    _refuse_pickle(path)
    if not path.exists():
        names = sorted(registry.specs.get("checkpoint", {})) if registry is not None else []
        raise CheckpointError(f"checkpoint {source!r} is neither a folder nor hf://org/name"
                              + (f" nor a registered checkpoint ({', '.join(names)})" if names else "")
                              + "; `aubench list checkpoints` shows the registered ones")
    return [HubCheckpoint(d, str(d)) for d in _fold_dirs(path, fold, source)]


# --------------------------------------------------------------------------- download


def _hub_env() -> dict[str, Any]:
    """The Hub settings of the environment now (huggingface-hub reads them only at import)."""
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return {"endpoint": os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/"),
            "cache_dir": os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub"), "offline": offline}


def _hub_error(exc: Exception, what: str) -> CheckpointError:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(exc, RevisionNotFoundError):
        return CheckpointError(f"{what}: that revision does not exist; name a branch, tag or commit of the repository")
    if isinstance(exc, RepositoryNotFoundError):
        return CheckpointError(f"{what}: no such repository (or it is private: log in with `hf auth login` or "
                               "set HF_TOKEN)")
    if isinstance(exc, LocalEntryNotFoundError):
        if _hub_env()["offline"]:
            return CheckpointError(f"{what}: not in the Hugging Face cache ({_hub_env()['cache_dir']}) and "
                                   "HF_HUB_OFFLINE=1; download it once online, or unset HF_HUB_OFFLINE")
        return CheckpointError(f"{what}: the Hub at {_hub_env()['endpoint']} cannot be reached and the cache "
                               "has no copy; check the network (or HF_ENDPOINT) and try again")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None and exc.response.status_code in (401, 403):
        return CheckpointError(f"{what}: the Hub refused the token (HTTP {exc.response.status_code}); log in with "
                               "`hf auth login` or set HF_TOKEN to a token with write access to this namespace")
    return CheckpointError(f"{what}: {_redact(str(exc).splitlines()[0])}")


def _with_retry(call: Any, what: str, attempts: int = 3, wait: float = 1.0) -> Any:
    """Call; on a connection failure (online only) retry ``attempts - 1`` times, waiting 1 s, 2 s, ..."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    for attempt in range(attempts):
        try:
            return call()
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            transient = isinstance(exc, LocalEntryNotFoundError) and not _hub_env()["offline"] or (
                isinstance(exc, HfHubHTTPError) and exc.response is not None and exc.response.status_code >= 500)
            if not transient or attempt == attempts - 1:
                raise _hub_error(exc, what) from None
            time.sleep(wait * (attempt + 1))


def download(repo_id: str, revision: str | None = None, to: Path | None = None) -> tuple[Path, str]:
    """Fetch a published repository into the Hugging Face cache, verify every fold; return (folder, commit).

    With ``to``, the files are also copied there (an existing different file is never replaced).
    """
    from huggingface_hub import snapshot_download

    env, what = _hub_env(), f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    root = Path(_with_retry(lambda: snapshot_download(
        repo_id, revision=revision, cache_dir=env["cache_dir"], endpoint=env["endpoint"],
        local_files_only=env["offline"]), what))
    files = [p for p in root.rglob("*") if p.is_file()]
    if not any(p.name == WEIGHTS_FILE for p in files):
        pickles = [p.name for p in files if p.suffix in PICKLES]
        raise CheckpointError(f"{what} has no {WEIGHTS_FILE}" + (f", only pickles ({', '.join(pickles)}), which "
                              "aubench never loads" if pickles else "") + "; it was not published by aubench")
    for d in _fold_dirs(root, None, what):
        verify_folder(d, what)
    if to is not None:
        for src in files:
            dest = Path(to) / src.relative_to(root)
            if dest.exists() and sha256(dest) != sha256(src):
                raise CheckpointError(f"{dest} exists with other content; choose another --to folder")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    return root, root.name


def verify_folder(folder: Path, what: str) -> dict[str, Any]:
    """Check a fold folder: metadata schema, the weights' checksum, and metadata == safetensors header."""
    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{what}: {meta_path.name} in {folder.name}/ cannot be read ({exc}); republish it") from None
    missing, extra = sorted(_META_KEYS - set(meta)), sorted(set(meta) - _META_KEYS)
    if missing or extra or meta.get("schema_version") != HUB_SCHEMA_VERSION:
        raise CheckpointError(f"{what}: {folder.name}/{META_FILE} does not follow aubench's schema "
                              f"{HUB_SCHEMA_VERSION} (missing {missing}, unexpected {extra}, schema "
                              f"{meta.get('schema_version')!r}); republish it with this aubench")
    actual = sha256(folder / WEIGHTS_FILE)
    if actual != meta["weights_sha256"]:
        raise CheckpointError(f"{what}: {folder.name}/{WEIGHTS_FILE} has SHA-256 {actual[:12]}..., its metadata "
                              f"says {meta['weights_sha256'][:12]}...; the download is corrupt or was altered. "
                              "Delete it from the cache and download again")
    header = asdict(read_meta(folder))
    for key, value in meta["checkpoint"].items():
        if json.loads(json.dumps(header.get(key))) != value:
            raise CheckpointError(f"{what}: {folder.name}/{META_FILE} says {key}={value!r:.80} but the weights' "
                                  f"own metadata says {header.get(key)!r:.80}; republish it")
    return meta


# --------------------------------------------------------------------------- publish


def _cell_folders(path: Path, seed: int | None) -> list[Path]:
    """The finished cell folders of one method recipe on one protocol below ``path``: one per fold."""
    from aubench.records import load_record

    path = Path(path)
    cells = sorted(p.parent for p in path.rglob("record.json")) if not (path / "record.json").exists() else [path]
    cells = [c for c in cells if seed is None or load_record(c / "record.json").seed == seed]
    if not cells:
        raise CheckpointError(f"{path} holds no finished cell (no record.json below it)"
                              + (f" with seed {seed}" if seed is not None else ""))
    recs = [load_record(c / "record.json") for c in cells]
    groups = {(r.protocol_id, r.method, r.config_hash) for r in recs}
    if len(groups) > 1:
        raise CheckpointError(f"{path} holds several recipes or protocols ({sorted(groups)}); publish one run "
                              "folder (<protocol>/<method>/<variant>) or one cell folder at a time")
    folds = [r.fold for r in recs]
    if len(set(folds)) != len(folds):
        seeds = sorted({r.seed for r in recs})
        raise CheckpointError(f"{path} holds several seeds per fold ({seeds}); choose one with --seed")
    for c in cells:
        if not (c / WEIGHTS_FILE).is_file():
            raise CheckpointError(f"{c} has a record but no {WEIGHTS_FILE}; re-run the cell to publish it")
    return cells


def build_publish_folder(path: Path, repo_id: str, out: Path, registry: Registry | None = None,
                         seed: int | None = None) -> Path:
    """Write exactly what ``publish`` uploads into ``out`` (which must not hold files yet)."""
    from omegaconf import OmegaConf

    from aubench import __version__
    from aubench.records import load_record

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} is not empty; choose an empty folder for the publish folder")
    cells = _cell_folders(path, seed)
    records = sorted((load_record(c / "record.json") for c in cells), key=lambda r: r.fold)
    for cell, rec in zip(sorted(cells, key=lambda c: load_record(c / "record.json").fold), records):
        fold_dir = out / rec.fold
        fold_dir.mkdir(parents=True)
        shutil.copyfile(cell / WEIGHTS_FILE, fold_dir / WEIGHTS_FILE)
        meta = read_meta(fold_dir)
        (fold_dir / RECIPE_FILE).write_text(OmegaConf.to_yaml(OmegaConf.create(meta.config)))
        (fold_dir / META_FILE).write_text(json.dumps({
            "schema_version": HUB_SCHEMA_VERSION, "checkpoint": json.loads(json.dumps(asdict(meta))),
            "weights_sha256": sha256(fold_dir / WEIGHTS_FILE), "seed": rec.seed, "selection": rec.selection,
            "n_test_frames": rec.n_test_frames, "aubench_version": __version__,
            "environment": {k: v for k, v in rec.environment.items() if k not in ("platform", "git_commit")},
            "metrics": {"f1_avg": rec.f1_avg, "threshold": rec.threshold, "per_au": rec.per_au}}, indent=2) + "\n")
    first = records[0]
    (out / INDEX_FILE).write_text(json.dumps({
        "schema_version": HUB_SCHEMA_VERSION, "method": first.method, "preset": first.preset,
        "config_hash": first.config_hash, "protocol": first.protocol_id, "folds": [r.fold for r in records]},
        indent=2) + "\n")
    from aubench.modelcard import model_card

    model_card(records, repo_id, registry).save(out / "README.md")
    return out


def publish(path: Path, repo_id: str, *, revision: str | None = None, private: bool = False,
            registry: Registry | None = None, seed: int | None = None, staging: Path | None = None) -> str:
    """Upload a cell or run folder as one repository; return the commit URL.

    A repository that already holds another method's (or protocol's) weights is refused.
    """
    import tempfile

    from huggingface_hub import HfApi, hf_hub_download

    env = _hub_env()
    if env["offline"]:
        raise CheckpointError("HF_HUB_OFFLINE=1: publishing needs the Hub; unset HF_HUB_OFFLINE (or use --dry-run)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_publish_folder(path, repo_id, Path(staging or tmp) / "upload", registry, seed)
        ours = json.loads((folder / INDEX_FILE).read_text())
        api = HfApi(endpoint=env["endpoint"])
        what = f"hf://{repo_id}"
        _with_retry(lambda: api.create_repo(repo_id, private=private, exist_ok=True), what)
        try:
            theirs = json.loads(Path(hf_hub_download(repo_id, INDEX_FILE, revision=revision, cache_dir=env["cache_dir"],
                                                     endpoint=env["endpoint"])).read_text())
        except Exception:  # noqa: BLE001 - no index yet (a new repository, or not aubench's)
            theirs = None
        if theirs and (theirs.get("method"), theirs.get("protocol")) != (ours["method"], ours["protocol"]):
            raise CheckpointError(f"{what} holds {theirs.get('method')} on {theirs.get('protocol')}, not "
                                  f"{ours['method']} on {ours['protocol']}; publish to another repository")
        info = _with_retry(lambda: api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), revision=revision,
            commit_message=f"aubench: {ours['method']} [{ours['preset']}] on {ours['protocol']}"), what)
    return str(info)
