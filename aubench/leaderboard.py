"""Render result records beside the published tables as a Markdown leaderboard.

One section per protocol (id and version): our rows ranked, with mean ± std over folds × seeds, a
95 % bootstrap interval over test subjects (:mod:`aubench.bootstrap`), ranks that are shared where
the paired interval of a difference contains 0, and the per-AU means; the all-positive predictor as
a floor (F1 protocols); each row's details (selection rule, test data, versions); then every one of
our rows that a published row is mapped to (``ReferenceTable.method``) beside it with the difference,
then the published rows without an aubench row. The output is deterministic (no timestamps), so a
committed leaderboard can be checked against the records it was rendered from.
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aubench.errors import RecordError
from aubench.metrics import all_positive_f1, mean_std

if TYPE_CHECKING:
    from aubench.records import ResultRecord
    from aubench.registry import Registry
    from aubench.specs import ProtocolSpec, ReferenceTable

__all__ = ["METRICS", "score", "aggregate", "render", "write_leaderboard"]


METRICS = {"f1": "F1", "accuracy": "accuracy"}
INTRO = ("F1 (%) per AU at threshold 0.5 over all test frames of each fold, AU-average as mean ± std over "
         "folds × seeds (with several seeds, also the std over seeds of the fold average). *95 % CI*: "
         "bootstrap interval of that average over test subjects (subjects resampled within each fold, frames "
         "of a subject kept together). *Rank*: rows share a rank when the paired bootstrap interval of their "
         "difference (same drawn subjects) contains 0, i.e. when the test set cannot tell them apart. *All "
         "positive* predicts every AU present (F1 = 2p/(1+p)): the floor to beat. Numbers are reproducible on "
         "the same machine with the same seed; another CPU changes floating-point order and gives other "
         "numbers within the seed noise. Rendered by `aubench leaderboard`; every row traces to result records"
         " with config, code version, data fingerprint and stored predictions (`--verify` recomputes them).")


def score(rec: ResultRecord, metric: str = "f1", au: int | None = None) -> float:
    """A record's AU-average (or one AU's) ``metric`` in percent."""
    if au is not None:
        return float(rec.per_au[str(au)][metric])
    if metric == "f1":
        return rec.f1_avg
    return float(sum(rec.per_au[str(a)][metric] for a in rec.aus) / len(rec.aus))


def aggregate(records: Iterable[ResultRecord], metrics: Mapping[str, str] | None = None,
              uncertainty: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Group records by protocol and (method, variant); mean ± std over their cells.

    ``metrics`` maps a protocol id to the metric its rows are scored by (default ``"f1"``); with
    ``uncertainty`` each row also gets its bootstrap ``ci`` and its ``rank`` (ties shared).
    """
    from aubench import bootstrap

    groups: dict[tuple[str, str, str], list[ResultRecord]] = defaultdict(list)
    for rec in records:
        groups[(rec.protocol_id, rec.method, rec.variant)].append(rec)
    table: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (proto, method, variant), recs in sorted(groups.items()):
        metric = (metrics or {}).get(proto, "f1")
        if len(recipes := sorted({r.config_hash for r in recs})) > 1:  # e.g. one fold redone after a recipe edit
            warnings.warn(f"{proto} {method} [{variant}] averages cells of {len(recipes)} recipes (config "
                          f"{', '.join(recipes)}): the recipe changed between them; rerun the row with --overwrite",
                          stacklevel=2)
        aus = recs[0].aus
        mean, std = mean_std([score(r, metric) for r in recs])
        per_au = {str(a): mean_std([score(r, metric, a) for r in recs if r.per_au[str(a)].get("scored", True)]
                                   or [float("nan")])[0] for a in aus}
        seeds = sorted({r.seed for r in recs})
        row = {"method": method, "variant": variant, "aus": aus, "mean": mean, "std": std, "per_au": per_au,
               "folds": sorted({r.fold for r in recs}), "seeds": seeds, "n_cells": len(recs),
               "frames": sum(r.n_test_frames for r in recs) // max(len(seeds), 1),
               "hashes": sorted({f"{r.fold}:{r.test_subject_hash}" for r in recs}), "records": recs}
        if len(seeds) > 1:  # the spread a new seed would bring: std over seeds of the fold-averaged score
            per_seed = [mean_std([score(r, metric) for r in recs if r.seed == seed])[0] for seed in seeds]
            row["seed_std"] = mean_std(per_seed)[1]
        if uncertainty and min(len(r.test_subjects) for r in recs) < 2:  # nothing to resample
            row["replicates"], row["ci"] = None, None
        elif uncertainty:
            try:
                row["replicates"] = bootstrap.row_replicates(recs, metric)
            except RecordError as exc:
                warnings.warn(f"{proto} {method} [{variant}]: {exc}; the row gets no interval", stacklevel=2)
                row["replicates"] = None
            else:
                if row["replicates"] is None:
                    warnings.warn(f"{proto} {method} [{variant}]: a cell has no predictions.npz beside its record; "
                                  "the row gets no interval and is ranked by its mean", stacklevel=2)
            row["ci"] = bootstrap.interval(row["replicates"]) if row["replicates"] is not None else None
        table[proto].append(row)
    if uncertainty:
        for rows in table.values():
            for row, rank in zip(rows, bootstrap.ranks_with_ties([r["mean"] for r in rows],
                                                                 [r["replicates"] for r in rows])):
                row["rank"] = rank
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


def _machines(rows: list[dict[str, Any]]) -> str:
    """Where the cells ran (records' ``environment``): the same seed on another CPU gives other numbers."""
    from collections import Counter

    def machine(env: dict[str, Any]) -> str:
        if str(env.get("device") or "").startswith("cuda"):
            return f"{env.get('gpu') or 'a CUDA GPU'} (cuda)"
        return env.get("cpu") or "a CPU its records do not name"

    seen = Counter(machine(rec.environment or {}) for row in rows for rec in row["records"])
    return ("Measured on " + ", ".join(f"{m}: {n} cell{'s' * (n != 1)}" for m, n in sorted(seen.items()))
            + ". Another machine gives other numbers for the same seed (README, \"Robustness\").")


def _fmt(value: float | None) -> str:
    return "" if value is None else "n/a" if value != value else f"{value:.1f}"  # NaN: nothing to score


def _label(row: dict[str, Any]) -> str:
    return f"{row['method']} [{row['variant']}]"


def _details(row: dict[str, Any]) -> list[str]:
    """What a reader needs to judge a row: selection, test data, versions, a loss form if the loss has one."""
    recs = row["records"]
    data = sorted({(r.dataset, r.data.get("preprocessing_id"), r.data.get("detection_failed_fraction")) for r in recs},
                  key=str)
    test_data = "; ".join(f"{name} `{pid}`" + ("" if failed is None else f", detection failed on {100 * failed:.2f}%")
                          for name, pid, failed in data)  # None: the dataset records no face-detection step
    versions = sorted({", ".join(f"{k} {v}" for k, v in sorted(r.versions.items())) for r in recs})
    if all(set(r.versions) == {"aubench"} for r in recs):
        versions = [versions[0] + " (plugin versions not recorded: schema-1 record)"]
    forms = sorted({str(item["form"]) for r in recs for item in _losses(r) if "form" in item})
    unscored = sorted({f"AU{a} (fold {r.fold})" for r in recs for a, v in r.per_au.items() if v.get("scored") is False})
    notes = ([f"form={', '.join(forms)}"] if forms else []) + (
        [f"no labelled test frame, left out of the average: {', '.join(unscored)}"] if unscored else [])
    return [row["method"], row["variant"], "; ".join(sorted({r.selection for r in recs})), test_data,
            "; ".join(versions), "; ".join(notes)]


def _losses(rec: ResultRecord) -> list[dict[str, Any]]:
    loss = rec.config.get("loss") or []
    return loss if isinstance(loss, list) else [loss]


def _our_table(rows: list[dict[str, Any]], metric: str) -> list[str]:
    from tabulate import tabulate

    aus = rows[0]["aus"]
    headers = ["rank", "method", "preset", f"avg {METRICS[metric]}", "95 % CI", *[f"AU{a}" for a in aus],
               "folds × seeds", "test frames"]
    body = []
    floor = _all_positive_row(rows) if metric == "f1" else None
    for row in sorted(rows, key=lambda r: (r.get("rank", 0), -r["mean"])):
        ci = row.get("ci")
        seeds = f" (seeds ± {row['seed_std']:.1f})" if "seed_std" in row else ""
        below = floor is not None and row["mean"] <= floor["mean"]  # no better than saying "present" everywhere
        avg = (f"{row['mean']:.1f} ± {row['std']:.1f}{seeds} (not above *all positive*)" if below else
               f"**{row['mean']:.1f}** ± {row['std']:.1f}{seeds}")
        body.append([str(row.get("rank", "")), row["method"], row["variant"], avg,
                     f"{ci[0]:.1f}–{ci[1]:.1f}" if ci else "n/a",
                     *[_fmt(row['per_au'][str(a)]) for a in aus], f"{len(row['folds'])} × {len(row['seeds'])}",
                     row["frames"]])
    if floor is not None:
        body.append(["", "*all positive*", "", f"{floor['mean']:.1f} ± {floor['std']:.1f}", "",
                     *[f"{floor['per_au'][str(a)]:.1f}" for a in aus], "", ""])
    lines = [tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True), ""]
    ties = len(rows) - len({r.get("rank") for r in rows})
    if "rank" in rows[0] and all(r.get("ci") is None for r in rows):
        lines += ["Ranked by the mean: a fold with a single test subject leaves nothing to resample, so the "
                  "spread over seeds is the only uncertainty shown.", ""]
    elif "rank" in rows[0]:
        lines += [f"{ties} of {len(rows)} rows share a rank with a better-scoring row (their difference is inside "
                  "the paired 95 % bootstrap interval).", ""]
    details = [_details(r) for r in sorted(rows, key=lambda r: -r["mean"])]
    lines += [tabulate(details, headers=["method", "preset", "selection", "test data", "versions", "notes"],
                       tablefmt="pipe", disable_numparse=True), ""]
    return lines


def _reference_checks(ref: ReferenceTable, protocols: Mapping[str, ProtocolSpec], methods: set[str]) -> list[str]:
    """Flags for a published table: an unknown protocol or method, a printed average that is not the mean of its AUs."""
    where = ref.file or ref.source
    notes = []
    if protocols and ref.protocol not in protocols and ref.comparable:
        notes.append(f"protocol {ref.protocol!r} is not registered")
    unknown = sorted({m.split(" [")[0] for m in ref.method.values()} - methods) if methods else []
    if unknown:
        notes.append(f"unknown aubench methods {unknown}")
    for note in notes:  # a plugin's mistake: said on every render until it is fixed
        warnings.warn(f"reference table {where}: {note}", stacklevel=3)
    for label, row in ref.rows.items():  # the source's own typos: flagged on the board, kept as printed
        per_au = [v for k, v in row.items() if str(k).isdigit()]
        if "avg" in row and len(per_au) > 1 and abs(sum(per_au) / len(per_au) - row["avg"]) > 0.1 + 1e-9:
            notes.append(f"row {label!r}: printed average {row['avg']} is not the mean of its AUs "
                         f"({sum(per_au) / len(per_au):.2f}); kept as printed")
    return notes


def _side_by_side(row: dict[str, Any], label: str, ref: ReferenceTable, metric: str) -> list[str]:
    from tabulate import tabulate

    pub = ref.rows[label]
    aus = [a for a in row["aus"] if str(a) in pub] or row["aus"]
    ours = [row["mean"], *[row["per_au"][str(a)] for a in aus]]
    theirs = [pub.get("avg"), *[pub.get(str(a)) for a in aus]]
    delta = [None if t is None else o - t for o, t in zip(ours, theirs)]
    body = [[f"ours: {_label(row)}", *map(_fmt, ours)], [f"published: {label}", *map(_fmt, theirs)],
            ["Δ (ours − published)", *[f"{d:+.1f}" if d is not None else "" for d in delta]]]
    headers = ["", f"avg {METRICS[metric]}", *[f"AU{a}" for a in aus]]
    return [f"{ref.source}:", "", tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True), ""]


def _published(ref: ReferenceTable, owner: str, labels: list[str], notes: list[str]) -> list[str]:
    from tabulate import tabulate

    keys: list[str] = []
    extra: list[str] = []  # columns beside the per-AU values (e.g. how often an order was found)
    for label in labels:
        keys += [k for k in ref.rows[label] if k not in keys and str(k).isdigit()]
        extra += [k for k in ref.rows[label] if k not in extra and not str(k).isdigit() and k not in ("avg", "avg_std")]
    keys.sort(key=int)
    headers = ["published", f"avg {METRICS.get(ref.metric, ref.metric)}", *[f"AU{k}" for k in keys], *extra,
               "aubench method"]

    def avg(row: Mapping[str, float]) -> str:
        return _fmt(row.get("avg")) + (f" ± {row['avg_std']:.1f}" if "avg_std" in row else "")

    body = [[label, avg(ref.rows[label]), *[_fmt(ref.rows[label].get(k)) for k in keys],
             *[f"{ref.rows[label][k]:g}" if k in ref.rows[label] else "" for k in extra], ref.method.get(label, "")]
            for label in labels]
    flags = "".join(f" **Check:** {n}." for n in notes)
    return [f"{ref.source} (registered by plugin `{owner}`)." + (f" {ref.note}" if ref.note else "") + flags, "",
            tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True), ""]


def _matches(rows: list[dict[str, Any]], refs: list[ReferenceTable]) -> list[tuple[dict[str, Any], str, ReferenceTable]]:
    """(our row, published label, table) for every published row mapped to one of ``rows``.

    A published row maps to ``"method [variant]"``, or to a method name: its run with the plain preset.
    """
    by_label = {r["method"]: r for r in rows if " + " not in r["variant"]} | {_label(r): r for r in rows}
    return [(row, label, ref) for ref in refs for label, name in ref.method.items()
            if label in ref.rows and (row := by_label.get(name)) is not None]


def render(records: list[ResultRecord], references: Iterable[tuple[str, ReferenceTable]] = (), *,
           protocols: Mapping[str, ProtocolSpec] | None = None, methods: Iterable[str] = (),
           title: str = "aubench leaderboard", uncertainty: bool = True, plot_dir: str | None = None,
           all_published: bool = True) -> str:
    """Markdown for ``records`` beside ``references`` (``(plugin, ReferenceTable)`` pairs).

    ``plot_dir``: link each protocol's per-AU bar chart (``<plot_dir>/<protocol>.png``);
    ``all_published``: also a section for each protocol with published rows but none of ours.
    """
    refs, protocols, methods = list(references), protocols or {}, set(methods)
    table = aggregate(records, {key: spec.metric for key, spec in protocols.items()}, uncertainty)
    notes = {id(ref): _reference_checks(ref, protocols, methods) for _, ref in refs}
    out = [f"# {title}", "", INTRO, ""]
    for proto_id in [*table, *(sorted({r.protocol for _, r in refs} - set(table)) if all_published else [])]:
        rows, spec = table.get(proto_id, []), protocols.get(proto_id)
        metric = spec.metric if spec is not None else "f1"
        out += [f"## {proto_id}", ""]
        if spec is not None and spec.description:
            out += [spec.description + ".", ""]
        if spec is not None and spec.fold_convention:
            out += [f"Folds: {spec.fold_convention}", ""]
        if metric != "f1":
            out += [f"Scored by {METRICS[metric]} (%) per task (column AU*k* is task *k*), not F1.", ""]
        if rows:
            out += _our_table(rows, metric)
            out += [f"Test-subject hashes (fold:hash): {', '.join(sorted({h for r in rows for h in r['hashes']}))}.", ""]
            out += [_machines(rows), ""]
            if plot_dir is not None:
                out += [f"![per-AU {METRICS[metric]} of {proto_id}]({plot_dir}/{proto_id}.png)", ""]
        mine = [(owner, ref) for owner, ref in refs if ref.protocol == proto_id]
        if not rows and mine and not any(ref.comparable for _, ref in mine):
            out += ["**Not comparable with AU detection**: published numbers of another task, kept for the record "
                    "(no aubench protocol measures this).", ""]
        elif not rows:
            out += ["No aubench results on this protocol yet.", ""]
        matched = _matches(rows, [ref for _, ref in mine])
        if matched:
            out += ["### Ours beside the published rows", ""]
            for row, label, ref in matched:
                out += _side_by_side(row, label, ref, metric)
        shown = {(id(ref), label) for _, label, ref in matched}
        unmatched = [(owner, ref, [lb for lb in ref.rows if (id(ref), lb) not in shown]) for owner, ref in mine]
        if any(labels for _, _, labels in unmatched):
            out += ["### Published rows without an aubench row", ""]
            for owner, ref, labels in unmatched:
                if labels:
                    out += _published(ref, owner, labels, notes[id(ref)])
    return "\n".join(out).rstrip() + "\n"


def _bar_chart(rows: list[dict[str, Any]], matched: list[tuple[dict, str, ReferenceTable]], metric: str,
               path: Path) -> None:
    """Per-AU bars of our rows, each followed by the published rows mapped to it (hatched)."""
    from aubench.plots import pyplot

    plt = pyplot()
    aus = rows[0]["aus"]
    bars = []
    for row in sorted(rows, key=lambda r: -r["mean"]):
        bars.append((_label(row), [row["per_au"][str(a)] for a in aus], ""))
        bars += [(f"published: {label}", [ref.rows[label].get(str(a), 0.0) for a in aus], "//")
                 for ours, label, ref in matched if ours is row]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(aus) + 2), 3.6))
    width = 0.8 / len(bars)
    for i, (label, values, hatch) in enumerate(bars):
        ax.bar([j + i * width for j in range(len(aus))], values, width, label=label, hatch=hatch)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(aus))], [f"AU{a}" for a in aus])
    ax.set_ylabel(f"{METRICS[metric]} (%)")
    ax.set_title(path.stem, fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_leaderboard(records_dir: Path, out: Path, registry: Registry, title: str = "aubench leaderboard",
                      all_published: bool = True) -> Path:
    """Render every record under ``records_dir`` into ``out`` (atomically), with per-protocol bar charts in
    ``plots/`` beside it when matplotlib is installed; return ``out``.

    A record that cannot be read or does not match the schema, or that is stale (it started from a cell of
    the folder whose weights changed since), is skipped with a warning naming it.
    """
    import importlib.util

    from aubench.records import load_records
    from aubench.results import atomic_write_text
    from aubench.verify import start_checks

    records = load_records(records_dir, strict=False)
    stale = {id(rec): why for rec, why in start_checks(records) if why is not None}
    for rec in records:
        if id(rec) in stale:
            warnings.warn(f"skipped {rec.path}: {stale[id(rec)]}", stacklevel=2)
    records = [rec for rec in records if id(rec) not in stale]
    plots = importlib.util.find_spec("matplotlib") is not None
    protocols = registry.specs["protocol"]
    text = render(records, registry.references, protocols=protocols, methods=registry.names("method"), title=title,
                  plot_dir="plots" if plots else None, all_published=all_published)
    if plots:
        for proto, rows in aggregate(records, {k: p.metric for k, p in protocols.items()}).items():
            matched = _matches(rows, [ref for _, ref in registry.references if ref.protocol == proto])
            _bar_chart(rows, matched, protocols[proto].metric if proto in protocols else "f1",
                       Path(out).parent / "plots" / f"{proto}.png")
    atomic_write_text(out, text)
    return out
