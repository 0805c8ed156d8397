"""The model card of a published aubench repository (``README.md``): what the model is, how it was
trained and evaluated, per-AU F1 as ``model-index`` results the Hub renders, the published rows the
method reproduces, and how to load it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aubench.records import ResultRecord
    from aubench.registry import Registry

__all__ = ["model_card"]


def _published_rows(registry: Registry | None, method: str, protocol: str) -> list[tuple[str, str, float]]:
    """(source, row label, average) of published rows a method reproduces on a protocol's dataset."""
    if registry is None:
        return []
    out = []
    for _, table in registry.references:
        for label, target in table.method.items():
            if target.split(" [")[0] == method and label in table.rows and "avg" in table.rows[label]:
                out.append((f"{table.source} ({table.protocol})", label, float(table.rows[label]["avg"])))
    return out


def model_card(records: list[ResultRecord], repo_id: str, registry: Registry | None = None) -> Any:
    """The model card: a ``huggingface_hub.ModelCard`` with per-AU F1 (mean over folds) as ``model-index``."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from aubench import __version__

    first = records[0]
    spec = registry.specs.get("method", {}).get(first.method) if registry is not None else None
    folds = ", ".join(f"fold {r.fold}: {r.f1_avg:.1f}" for r in records)
    mean = sum(r.f1_avg for r in records) / len(records)
    results = [EvalResult(task_type="multi-label-classification", task_name="Facial Action Unit detection",
                          dataset_type=first.dataset, dataset_name=first.protocol_id, dataset_split="test",
                          metric_type="f1", metric_name="F1 AU average (%)", metric_value=round(mean, 2))]
    for au in first.aus:
        value = sum(r.per_au[str(au)]["f1"] for r in records) / len(records)
        results.append(EvalResult(task_type="multi-label-classification", dataset_type=first.dataset,
                                  dataset_name=first.protocol_id, dataset_split="test", metric_type="f1",
                                  metric_name=f"F1 AU{au} (%)", metric_value=round(value, 2)))
    data = ModelCardData(model_name=f"{first.method} [{first.variant}] on {first.protocol_id}", library_name="aubench",
                         tags=["action-units", "facial-action-coding", "aubench", first.method],
                         eval_results=results, license="other")
    published = _published_rows(registry, first.method, first.protocol_id)
    pub = "\n".join(f"| {src} | {label} | {avg:.1f} |" for src, label, avg in published) or "| (none registered) | | |"
    loads = "\n".join(f"    aubench evaluate --checkpoint hf://{repo_id}/{r.fold} --protocol {first.protocol_id} "
                      f"--fold {r.fold}" for r in records)
    template = f"""---
{{{{ card_data }}}}
---

# {first.method} [{first.variant}] on {first.protocol_id}

{spec.description if spec is not None else first.method}: trained and evaluated with
aubench {__version__}. One folder per fold; each holds `model.safetensors`
(with aubench's checkpoint metadata), the resolved `recipe.yaml` and `aubench_meta.json`.

## Training and evaluation

- Protocol `{first.protocol_id}`: trained on `{first.train_dataset}`, tested on `{first.dataset}`,
  subject-exclusive folds; each fold's model never saw its test subjects.
- Selection: {first.selection}. Threshold {first.threshold}. Seed {first.seed}.
- AUs (output order): {", ".join(map(str, first.train_aus))}; evaluated: {", ".join(map(str, first.aus))}.
- F1 (%) per fold: {folds}; mean {mean:.1f}. Per-AU F1 (mean over folds) is in the metadata above.

## Published numbers it compares to

| source | row | AU-average F1 |
|---|---|---|
{pub}

Published rows come from the papers' own data and code; compare on real data only.

## How to use

    aubench download {repo_id}
{loads}
"""
    return ModelCard.from_template(data, template_str=template)
