"""What a backfill tells whoever runs it: a progress line per page, then the report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Report:
    service: str
    since: str
    dry_run: bool
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: Alerts the run could not list; with the alerts it listed but did not fold, what
    #: makes it incomplete. An operator must not take a partial backfill for a whole one.
    unlisted: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        counts = Counter(a["outcome"] for a in self.alerts)
        warnings = [*self.unlisted]
        if counts["invalid"]:
            warnings.append(f"{counts['invalid']} alerts unreadable, not folded (see the log)")
        if counts["deleted"]:
            warnings.append(f"{counts['deleted']} alerts deleted in Opsgenie before being read")
        return {
            "service": self.service,
            "since": self.since,
            "dry_run": self.dry_run,
            "complete": not warnings,
            "warnings": warnings,
            "counts": dict(sorted(counts.items())),
            "alerts": self.alerts,
        }


@dataclass(frozen=True, slots=True)
class Progress:
    """After each page, and every ``progress_every`` seconds within one: what a progress
    line shows while a long backfill runs."""

    page: int
    alerts_seen: int
    counts: dict[str, int]
    retries: int

    def as_json(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "alerts_seen": self.alerts_seen,
            "counts": dict(sorted(self.counts.items())),
            "retries": self.retries,
        }
