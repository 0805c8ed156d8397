"""What a check of raw data reports: counts, and every problem as an :class:`Issue` naming the file
and the fix. Dataset plugins return a :class:`Scan` (or a subclass) from their ``check``; ``aubench
data check`` prints it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Issue", "Scan"]


@dataclass
class Issue:
    """One problem found in a raw copy: ``level`` is "error" (preparation refuses) or "warning"."""

    level: str
    where: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.level.upper():7s} {self.where}: {self.message} -> {self.fix}"


@dataclass
class Scan:
    """What a raw copy contains (``counts``; ``subject_ids`` lists the subjects) and every problem found."""

    dataset: str
    issues: list[Issue] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, str]] = field(default_factory=list)  # every bad file, for the --report file

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    def add(self, level: str, where: str | Path, message: str, fix: str) -> None:
        self.issues.append(Issue(level, str(where), message, fix))

    def add_each(self, level: str, items: list[tuple[str | Path, str]], fix: str, limit: int = 10) -> None:
        """One issue per ``(file, message)``, at most ``limit`` of them, then one counting the rest (all of
        them are in :meth:`to_json`'s ``files`` list)."""
        for where, message in items[:limit]:
            self.add(level, where, message, fix)
        if len(items) > limit:
            self.add(level, f"{len(items) - limit} more file(s)", f"with the same problem ({items[limit][1]}, ...)",
                     fix + "; the full list is in the --report file")
        self.files.extend({"level": level, "file": str(w), "problem": m} for w, m in items)

    def to_json(self) -> dict[str, Any]:
        """What ``--report FILE`` writes: counts, every issue, and every bad file (machine-readable)."""
        return {"dataset": self.dataset, "counts": self.counts, "errors": len(self.errors),
                "warnings": len(self.issues) - len(self.errors), "issues": [vars(i) for i in self.issues],
                "files": self.files}

    def write_report(self, path: str | Path) -> Path:
        from aubench.results import atomic_write_json

        atomic_write_json(Path(path), self.to_json())
        return Path(path)

    def report(self) -> str:
        """The text ``aubench data check`` prints: counts, subjects, issues, and a one-line total."""
        lines = [f"  {key}: {value}" for key, value in self.counts.items() if key != "subject_ids"]
        lines.append(f"  subjects: {' '.join(self.counts.get('subject_ids', []))}")
        lines += [f"  {issue}" for issue in self.issues]
        lines.append(f"{len(self.errors)} error(s), {len(self.issues) - len(self.errors)} warning(s)")
        return "\n".join(lines)
