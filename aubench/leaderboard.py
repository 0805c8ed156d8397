"""Render result records (and published reference tables) as a Markdown leaderboard.

One section per protocol: our rows (mean ± std of the AU-average F1 over folds × seeds, and the
per-AU means), the all-positive predictor as a floor, and the published rows registered by plugins
for that protocol. The output is deterministic (no timestamps), so a committed leaderboard can be
checked against the records it was rendered from.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aubench.metrics import all_positive_f1, mean_std

if TYPE_CHECKING:
    from aubench.records import ResultRecord
    from aubench.registry import Registry

__all__ = ["METRICS", "score", "aggregate", "render", "write_leaderboard"]


METRICS = {"f1": "F1", "accuracy": "accuracy"}


def score(rec: ResultRecord, metric: str = "f1", au: int | None = None) -> float:
    """A record's AU-average (or one AU's) ``metric`` in percent."""
    if au is not None:
        return float(rec.per_au[str(au)][metric])
    if metric == "f1":
        return rec.f1_avg
    return float(sum(rec.per_au[str(a)][metric] for a in rec.aus) / len(rec.aus))


def aggregate(records: Iterable[ResultRecord], metrics: Mapping[str, str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Group records by protocol and (method, variant); mean ± std over their cells.

    ``metrics`` maps a protocol id to the metric its rows are scored by (default ``"f1"``).
    """
    groups: dict[tuple[str, str, str], list[ResultRecord]] = defaultdict(list)
    for rec in records:
        groups[(rec.protocol_id, rec.method, rec.variant)].append(rec)
    table: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (proto, method, variant), recs in sorted(groups.items()):
        metric = (metrics or {}).get(proto, "f1")
        aus = recs[0].aus
        mean, std = mean_std([score(r, metric) for r in recs])
        per_au = {str(a): mean_std([score(r, metric, a) for r in recs])[0] for a in aus}
        seeds = sorted({r.seed for r in recs})
        table[proto].append({
            "method": method, "variant": variant, "aus": aus, "mean": mean, "std": std, "per_au": per_au,
            "folds": sorted({r.fold for r in recs}), "seeds": seeds, "n_cells": len(recs),
            "frames": sum(r.n_test_frames for r in recs) // max(len(seeds), 1),
            "hashes": sorted({f"{r.fold}:{r.test_subject_hash}" for r in recs}),
            "records": recs,
        })
    return dict(table)


def _all_positive_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The floor every method must beat: say "present" on every frame (per AU F1 = 2p/(1+p))."""
    by_fold: dict[str, ResultRecord] = {}
    for row in rows:
        for rec in row["records"]:
            by_fold.setdefault(rec.fold, rec)
    aus = rows[0]["aus"]
    per_fold = [{str(a): all_positive_f1(r.per_au[str(a)]["positive_rate"]) for a in aus} for r in by_fold.values()]
    per_au = {str(a): mean_std([pf[str(a)] for pf in per_fold])[0] for a in aus}
    avgs = [sum(pf.values()) / len(pf) for pf in per_fold]
    mean, std = mean_std(avgs)
    return {"per_au": per_au, "mean": mean, "std": std}


def render(records: list[ResultRecord], references: Iterable[tuple[str, Any]] = (), *,
           protocols: dict[str, Any] | None = None, title: str = "aubench leaderboard") -> str:
    """Markdown for ``records``; ``references`` are ``(plugin, ReferenceTable)`` pairs."""
    from tabulate import tabulate

    refs = list(references)
    protocols = protocols or {}
    table = aggregate(records, {key: spec.metric for key, spec in protocols.items()})
    out = [f"# {title}", "",
           "F1 (%) per AU at threshold 0.5 over all test frames of each fold, AU-average as mean ± std over "
           "folds × seeds. *All positive* predicts every AU present (F1 = 2p/(1+p)): the floor to beat. "
           "Rendered by `aubench leaderboard`; every row traces to result records with config, code version and "
           "data fingerprint.", ""]
    for proto_id, rows in table.items():
        aus = rows[0]["aus"]
        spec = protocols.get(proto_id)
        metric = spec.metric if spec is not None else "f1"
        out += [f"## {proto_id}", ""]
        if spec is not None and spec.description:
            out += [spec.description + ".", ""]
        if spec is not None and spec.fold_convention:
            out += [f"Folds: {spec.fold_convention}", ""]
        if metric != "f1":
            out += [f"Scored by {METRICS[metric]} (%) per task (column AU*k* is task *k*), not F1.", ""]
        headers = ["method", "preset", f"avg {METRICS[metric]}", *[f"AU{a}" for a in aus], "folds × seeds",
                   "test frames"]
        body = []
        for row in sorted(rows, key=lambda r: -r["mean"]):
            body.append([row["method"], row["variant"], f"**{row['mean']:.1f}** ± {row['std']:.1f}",
                         *[f"{row['per_au'][str(a)]:.1f}" for a in aus],
                         f"{len(row['folds'])} × {len(row['seeds'])}", row["frames"]])
        if metric == "f1":
            floor = _all_positive_row(rows)
            body.append(["*all positive*", "", f"{floor['mean']:.1f} ± {floor['std']:.1f}",
                         *[f"{floor['per_au'][str(a)]:.1f}" for a in aus], "", ""])
        out.append(tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True))
        out.append("")
        hashes = sorted({h for r in rows for h in r["hashes"]})
        out += [f"Test-subject hashes (fold:hash): {', '.join(hashes)}.", ""]
        data = sorted({(rec.dataset, rec.data.get("preprocessing_id"), rec.data.get("detection_failed_fraction"))
                       for r in rows for rec in r["records"] if rec.data}, key=str)
        for name, pid, failed in data:  # cropping changes F1 by points: show how the test data were prepared
            fail = f"{100 * failed:.2f}%" if failed is not None else "unknown"
            out += [f"Test data: {name}, preprocessing `{pid}`, face detection failed on {fail} of frames.", ""]
        for owner, ref in refs:
            if ref.protocol.split("@")[0] == proto_id.split("@")[0]:
                out += _render_reference(ref, owner)
    unshown = [(o, r) for o, r in refs if r.protocol.split("@")[0] not in {p.split("@")[0] for p in table}]
    if unshown:
        out += ["## Published results without aubench runs yet", ""]
        for owner, ref in unshown:
            out += _render_reference(ref, owner, with_protocol=True)
    return "\n".join(out).rstrip() + "\n"


def _render_reference(ref: Any, owner: str, with_protocol: bool = False) -> list[str]:
    from tabulate import tabulate

    keys: list[str] = []
    for row in ref.rows.values():
        keys += [k for k in row if k not in keys and str(k).isdigit()]
    keys.sort(key=int)
    extra: list[str] = []  # columns beside the per-AU values (e.g. how often an order was found)
    for row in ref.rows.values():
        extra += [k for k in row if k not in extra and not str(k).isdigit() and k not in ("avg", "avg_std")]
    headers = ["published", f"avg {METRICS.get(ref.metric, ref.metric)}", *[f"AU{k}" for k in keys],
               *[k for k in extra], "aubench method"]

    def avg(row: Any) -> str:
        text = f"{row['avg']:.1f}" if "avg" in row else ""
        return text + (f" ± {row['avg_std']:.1f}" if "avg_std" in row else "")

    body = [[label, avg(row), *[f"{row[k]:.1f}" if k in row else "" for k in keys],
             *[f"{row[k]:g}" if k in row else "" for k in extra], ref.method.get(label, "")]
            for label, row in ref.rows.items()]
    where = f" on {ref.protocol}" if with_protocol else ""
    lines = [f"Published{where}: {ref.source} (registered by plugin `{owner}`)." + (f" {ref.note}" if ref.note else ""),
             "", tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True), ""]
    return lines


def write_leaderboard(records_dir: Path, out: Path, registry: Registry, title: str = "aubench leaderboard") -> Path:
    """Render every record under ``records_dir`` into ``out`` (atomically); return ``out``.

    A record that cannot be read or does not match the schema is skipped with a warning naming it.
    """
    from aubench.records import load_records
    from aubench.results import atomic_write_text

    records = load_records(records_dir, strict=False)
    text = render(records, registry.references, protocols=registry.specs["protocol"], title=title)
    atomic_write_text(out, text)
    return out
