"""Coverage: a mapping version may be used only when every canonical value in use has a target.

``values_in_use`` comes from the caller (the push engine reads the distinct units, warehouses, customers
... of the records about to be sent). Tables over closed vocabularies (stage, VAT rate) must cover the
whole vocabulary regardless, because any record may carry any of those values tomorrow.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass, field

from hub.errors import ConfigError
from mappings.apply import table_key
from mappings.spec import CLOSED_DOMAINS, Mapping


@dataclass(frozen=True)
class CoverageReport:
    """Per table, the values in use that have no target (empty when the mapping covers everything)."""

    mapping: str
    gaps: dict[str, list[str]] = field(default_factory=dict)
    unknown_tables: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing."""
        return not self.gaps and not self.unknown_tables


def find_gaps(
    mapping: Mapping, values_in_use: AnyMapping[str, Iterable[object]] | None = None
) -> CoverageReport:
    """Which values in use (plus closed vocabularies) ``mapping`` cannot translate."""
    values_in_use = values_in_use or {}
    gaps: dict[str, list[str]] = {}
    for name, table in mapping.tables.items():
        wanted = {table_key(table, v) for v in values_in_use.get(name, ()) if v not in (None, "")}
        wanted |= set(CLOSED_DOMAINS.get(table.domain, ()))
        missing = sorted(v for v in wanted if not table.covers(v))
        if missing:
            gaps[name] = missing
    unknown = sorted(set(values_in_use) - set(mapping.tables))
    return CoverageReport(mapping=mapping.key, gaps=gaps, unknown_tables=unknown)


def check_coverage(
    mapping: Mapping, values_in_use: AnyMapping[str, Iterable[object]] | None = None, *, where: str = ""
) -> CoverageReport:
    """Refuse (``ConfigError``) a mapping version that leaves a value in use without a target.

    ``where`` prefixes the message (e.g. ``mappings/kis_sales_outbound.v2.yaml:14``).
    """
    report = find_gaps(mapping, values_in_use)
    if report.ok:
        return report
    prefix = f"{where}: " if where else ""
    parts = [
        f"table {table!r} has no target for {', '.join(repr(v) for v in values)}"
        for table, values in report.gaps.items()
    ]
    parts += [
        f"values were given for table {t!r}, which the mapping does not define" for t in report.unknown_tables
    ]
    raise ConfigError(
        f"{prefix}mapping {mapping.key} does not cover the values in use: {'; '.join(parts)}. "
        "Add the missing targets (or a default) and save it as a new version before using it.",
        context={"mapping": mapping.key, "gaps": report.gaps},
    )
