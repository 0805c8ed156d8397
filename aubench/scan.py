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

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    def add(self, level: str, where: str | Path, message: str, fix: str) -> None:
        self.issues.append(Issue(level, str(where), message, fix))

    def report(self) -> str:
        """The text ``aubench data check`` prints: counts, subjects, issues, and a one-line total."""
        lines = [f"  {key}: {value}" for key, value in self.counts.items() if key != "subject_ids"]
        lines.append(f"  subjects: {' '.join(self.counts.get('subject_ids', []))}")
        lines += [f"  {issue}" for issue in self.issues]
        lines.append(f"{len(self.errors)} error(s), {len(self.issues) - len(self.errors)} warning(s)")
        return "\n".join(lines)
