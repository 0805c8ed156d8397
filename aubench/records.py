"""The typed result record: one per finished cell, written by the engine, read by everything else.

A record is JSON on disk (``record.json``) and a :class:`ResultRecord` in code. The engine builds it
once; the leaderboard, the CLI and plugins read its fields, never string keys of a dict.
:func:`load_record` validates what it reads (schema version, every field present with the right
type, a finite F1), so a corrupt or foreign file is reported with its path instead of turning into
a wrong number.
"""
from __future__ import annotations

import json
import math
import types
import typing
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Union

from aubench.errors import RecordError

__all__ = ["RECORD_SCHEMA_VERSION", "ResultRecord", "load_record", "load_records", "migrate_records"]

#: 2 added ``versions`` (aubench's and each plugin's that built the model and losses)
RECORD_SCHEMA_VERSION = 2


@dataclass
class ResultRecord:
    """Everything that produced one cell's numbers, and the numbers (F1 in percent).

    ``per_au`` maps the AU number (as a string, JSON keys) to its metrics (``f1``, ``precision``,
    ``recall``, ``support``, ``n``, ``positive_rate`` and, in newer records, ``accuracy``);
    ``aus`` is the evaluated AU order and ``train_aus`` the model's output order.
    """

    schema_version: int
    method: str
    preset: str
    overrides: list[str]
    config_hash: str
    dataset: str
    train_dataset: str
    protocol: str
    protocol_version: str
    protocol_id: str
    fold: str
    test_subject_hash: str
    test_subjects: list[str]
    train_subjects: list[str]
    val_subjects: list[str]
    seed: int
    aus: list[int]
    train_aus: list[int]
    positive_threshold: int
    per_au: dict[str, dict[str, float]]
    f1_avg: float
    threshold: float
    n_test_frames: int
    n_train_frames: int
    init_checkpoint: dict[str, Any] | None
    selection: str
    postprocess: dict[str, Any]
    data: dict[str, Any]
    train_stats: dict[str, Any]
    model_extras: dict[str, Any]
    history: list[dict[str, Any]]
    timings: dict[str, float]
    environment: dict[str, Any]
    config: dict[str, Any]
    versions: dict[str, str]
    path: Path | None = field(default=None, compare=False, repr=False)

    @property
    def variant(self) -> str:
        """The recipe variant as the leaderboard names it: the preset and any overrides, and for a checkpoint
        evaluated without training (``aubench evaluate``), where its weights came from."""
        init = self.init_checkpoint or {}
        return (self.preset + (f" + {' '.join(self.overrides)}" if self.overrides else "")
                + (f" @ {init.get('origin') or init.get('source')}" if init.get("evaluated") else ""))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("path")
        return out

    def write(self, path: Path) -> None:
        """Write atomically: a reader sees the previous file or this one, never half of it."""
        from aubench.results import atomic_write_json

        atomic_write_json(path, self.to_dict())
        self.path = Path(path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "record") -> ResultRecord:
        """Validate ``data`` against the schema; raise :class:`RecordError` naming ``source`` and the field."""
        if not isinstance(data, dict):
            raise RecordError(f"{source}: a record is a JSON object, not {type(data).__name__}")
        data = _migrated(data)
        version = data.get("schema_version")
        if version != RECORD_SCHEMA_VERSION:
            raise RecordError(f"{source}: record schema {version!r}, this aubench reads {RECORD_SCHEMA_VERSION}; "
                              "upgrade aubench (or re-run the cell)")
        names = [f.name for f in fields(cls) if f.name != "path"]
        missing = [n for n in names if n not in data]
        unknown = [k for k in data if k not in names]
        if missing or unknown:
            raise RecordError(f"{source}: " + "; ".join(
                ([f"missing fields {missing}"] if missing else []) + ([f"unknown fields {unknown}"] if unknown else []))
                + ". Re-run the cell (`--overwrite`) or remove the file")
        hints = typing.get_type_hints(cls)
        for name in names:
            if not _is_instance(data[name], hints[name]):
                raise RecordError(f"{source}: field {name!r} is {data[name]!r:.60}, expected {_type_name(hints[name])}")
        f1 = data["f1_avg"]
        if not math.isfinite(f1):
            raise RecordError(f"{source}: f1_avg is {f1}; a record must hold a finite score. Re-run the cell")
        return cls(**{n: data[n] for n in names}, path=Path(source) if source != "record" else None)


def _migrated(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: the plugin versions were not recorded; only aubench's is known (its environment)."""
    if data.get("schema_version") == 1:
        aubench = (data.get("environment") or {}).get("aubench", "?")
        data = {**data, "schema_version": 2, "versions": {"aubench": str(aubench)}}
    return data


def migrate_records(root: Path) -> int:
    """Rewrite every older record under ``root`` in the current schema (atomically); return how many."""
    count = 0
    for path in sorted(Path(root).rglob("record.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema_version") != RECORD_SCHEMA_VERSION:
            load_record(path).write(path)
            count += 1
    return count


def _is_instance(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_is_instance(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    base = origin or hint
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def load_record(path: Path) -> ResultRecord:
    """Read and validate one ``record.json``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path} cannot be read as JSON ({exc}); delete it to re-run that cell") from exc
    return ResultRecord.from_dict(data, str(path))


def load_records(root: Path, *, strict: bool = True) -> list[ResultRecord]:
    """Every record under ``root`` (any depth), sorted by path for stable output.

    ``strict=False`` skips a bad record with a warning naming it, so one corrupt file does not
    block the rest (the leaderboard renders what it can).
    """
    records = []
    for path in sorted(Path(root).rglob("record.json")):
        try:
            records.append(load_record(path))
        except RecordError as exc:
            if strict:
                raise
            warnings.warn(f"skipped: {exc}", stacklevel=2)
    return records
