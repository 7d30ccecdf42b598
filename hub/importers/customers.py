"""Import customer sheets into the canonical store, with a row-level report.

Each row ends up ``created`` (a new customer), ``merged`` (into an existing customer, or into an earlier
row of the same file) or ``refused`` (with the reason). Identity is the store's: Unified Social Credit
Code first, then normalised name (:func:`crm_core.customers.upsert_customer`).

Speed: rows are validated in memory, duplicates inside the file are folded together first (one store
call per distinct customer), and the store work is committed once per batch of ``batch_size`` customers,
never per row. Should the store refuse one customer unexpectedly, only that batch is re-run with a
savepoint per customer, so one bad row cannot sink its neighbours.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.config.models.files import CustomerSheet
from hub.errors import DomainError
from hub.importers.sheets import SheetRow, read_sheet

OUTCOMES = ("created", "merged", "refused")
_TIER_LETTERS = {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5}
_FIELDS = ("industry", "scale", "province", "region", "owner")


@dataclass
class RowResult:
    """What happened to one sheet row."""

    row: int
    outcome: str
    name: str
    credit_code: str = ""
    customer_code: str = ""
    reason: str = ""


@dataclass
class ImportResult:
    """Counts and per-row results of one import."""

    file: str
    rows: list[RowResult] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    report_path: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Rows per outcome (created, merged, refused) plus the total."""
        out = {name: 0 for name in OUTCOMES}
        for row in self.rows:
            out[row.outcome] += 1
        out["total"] = len(self.rows)
        return out


@dataclass
class _Candidate:
    """A distinct customer of the file: the merged values of its rows."""

    rows: list[SheetRow]
    name: str
    credit_code: str | None
    tier: int | None
    values: dict[str, str | None]


def _parse_tier(text: str) -> int:
    value = text.strip().upper()
    if value in _TIER_LETTERS:
        return _TIER_LETTERS[value]
    if value.isdigit() and 1 <= int(value) <= 5:
        return int(value)
    raise ValueError(f"tier {text!r} is not 1-5 or A-E")


def _validate(row: SheetRow) -> tuple[str, str | None, int | None] | str:
    """(name, credit code, tier) of a row, or the reason it is refused."""
    from crm_core.credit_code import normalize_credit_code
    from crm_core.errors import InvalidCreditCode

    name = row.values.get("name", "").strip()
    if not name:
        return "name is empty"
    code = row.values.get("credit_code", "").strip() or None
    if code:
        try:
            code = normalize_credit_code(code, where="credit_code")
        except InvalidCreditCode as exc:
            return exc.message
    tier = None
    if row.values.get("tier"):
        try:
            tier = _parse_tier(row.values["tier"])
        except ValueError as exc:
            return str(exc)
    return name, code, tier


def plan(rows: list[SheetRow], results: dict[int, RowResult]) -> list[_Candidate]:
    """Refuse invalid rows (into ``results``) and fold duplicates inside the file into candidates."""
    from crm_core.customers import normalize_name

    by_key: dict[str, _Candidate] = {}
    ordered: list[_Candidate] = []
    for row in rows:
        checked = _validate(row)
        if isinstance(checked, str):
            results[row.number] = RowResult(
                row.number,
                "refused",
                row.values.get("name", ""),
                row.values.get("credit_code", ""),
                reason=checked,
            )
            continue
        name, code, tier = checked
        key = f"code:{code}" if code else f"name:{normalize_name(name)}"
        candidate = by_key.get(key)
        values = {f: (row.values.get(f) or None) for f in _FIELDS}
        if candidate is None:
            candidate = _Candidate(rows=[row], name=name, credit_code=code, tier=tier, values=values)
            by_key[key] = candidate
            ordered.append(candidate)
            continue
        # Same rule as the store's merge: keep what is known, fill the gaps, the better tier wins.
        candidate.rows.append(row)
        for f, v in values.items():
            if not candidate.values.get(f) and v:
                candidate.values[f] = v
        if tier is not None and (candidate.tier is None or tier < candidate.tier):
            candidate.tier = tier
    return ordered


def _shared_names(candidates: list[_Candidate]) -> set[str]:
    """Normalised names carried by more than one candidate (e.g. a branch, or a row without a code)."""
    from collections import Counter

    from crm_core.customers import normalize_name

    counts = Counter(normalize_name(c.name) for c in candidates)
    return {name for name, n in counts.items() if n > 1}


def _upsert(session: Session, candidate: _Candidate, source: str) -> tuple[str, str]:
    from crm_core.customers import upsert_customer

    customer, outcome = upsert_customer(
        session,
        name=candidate.name,
        credit_code=candidate.credit_code,
        tier=candidate.tier,
        source=source,
        industry=candidate.values.get("industry"),
        scale=candidate.values.get("scale"),
        province=candidate.values.get("province"),
        region=candidate.values.get("region"),
        owner=candidate.values.get("owner"),
    )
    return customer.code, outcome


def _record(candidate: _Candidate, code: str, outcome: str, results: dict[int, RowResult]) -> None:
    first = candidate.rows[0]
    results[first.number] = RowResult(
        first.number, outcome, candidate.name, candidate.credit_code or "", code
    )
    for row in candidate.rows[1:]:
        results[row.number] = RowResult(
            row.number,
            "merged",
            row.values.get("name", ""),
            candidate.credit_code or "",
            code,
            reason=f"same customer as row {first.number}",
        )


def _refuse(candidate: _Candidate, reason: str, results: dict[int, RowResult]) -> None:
    for row in candidate.rows:
        results[row.number] = RowResult(
            row.number, "refused", candidate.name, candidate.credit_code or "", reason=reason
        )


def _existing_keys(session: Session, batch: list[_Candidate]) -> tuple[set[str], set[str]]:
    """Credit codes and normalised names of ``batch`` that the store already has (a few IN queries)."""
    from crm_core.customers import normalize_name
    from crm_core.models import Customer

    codes = [c.credit_code for c in batch if c.credit_code]
    names = [normalize_name(c.name) for c in batch]
    found_codes: set[str] = set()
    found_names: set[str] = set()
    for start in range(0, len(codes), 1000):
        chunk = codes[start : start + 1000]
        found_codes.update(
            session.scalars(sa.select(Customer.credit_code).where(Customer.credit_code.in_(chunk)))
        )
    for start in range(0, len(names), 1000):
        chunk = names[start : start + 1000]
        found_names.update(
            session.scalars(sa.select(Customer.normalized_name).where(Customer.normalized_name.in_(chunk)))
        )
    return found_codes, found_names


def _reserve_codes(session: Session, count: int) -> list[str]:
    """``count`` consecutive customer codes in one statement (the same counter as ``upsert_customer``)."""
    from crm_core.customers import customer_code
    from crm_core.numbering import next_values

    return [customer_code(n) for n in next_values(session, "C", count)]


def _create(session: Session, candidate: _Candidate, code: str, source: str) -> object:
    """A new customer built by the store's own create rule (:func:`crm_core.customers.new_customer`).

    Used only for candidates the store cannot possibly match (neither their credit code nor their
    normalised name exists, and no other row of the file shares the name), so the merge rules are not
    bypassed; the store's flush-time invariants and outbox events still apply.
    """
    from crm_core.customers import new_customer

    customer = new_customer(
        code=code,
        name=candidate.name,
        credit_code=candidate.credit_code,
        tier=candidate.tier,
        source=source,
        **candidate.values,
    )
    session.add(customer)
    return customer


def _run_batch(
    engine: sa.Engine,
    batch: list[_Candidate],
    source: str,
    results: dict[int, RowResult],
    shared_names: set[str],
) -> None:
    from crm_core.customers import normalize_name
    from crm_core.db import session_scope

    done: list[tuple[_Candidate, str, str]] = []
    try:
        with session_scope(engine) as session:
            found_codes, found_names = _existing_keys(session, batch)
            slow: list[_Candidate] = []
            new: list[_Candidate] = []
            for candidate in batch:
                norm = normalize_name(candidate.name)
                if candidate.credit_code in found_codes or norm in found_names or norm in shared_names:
                    slow.append(candidate)
                else:
                    new.append(candidate)
            codes = _reserve_codes(session, len(new))
            fresh = [(c, _create(session, c, code, source)) for c, code in zip(new, codes, strict=True)]
            session.flush()  # one flush for all new customers (runs the store's invariants)
            for candidate in slow:
                code, outcome = _upsert(session, candidate, source)
                done.append((candidate, code, outcome))
            done.extend((candidate, customer.code, "created") for candidate, customer in fresh)  # type: ignore[attr-defined]
    except DomainError:
        # Rare: the store refused one customer. Re-run this batch with a savepoint per customer.
        with session_scope(engine) as session:
            for candidate in batch:
                try:
                    with session.begin_nested():
                        code, outcome = _upsert(session, candidate, source)
                except DomainError as exc:
                    _refuse(candidate, exc.message, results)
                    continue
                _record(candidate, code, outcome, results)
        return
    for candidate, code, outcome in done:
        _record(candidate, code, outcome, results)


def import_customers(
    engine: sa.Engine,
    path: Path,
    sheet: CustomerSheet,
    *,
    report_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import ``path`` (xlsx or csv laid out as ``sheet``) into the store behind ``engine``.

    ``progress(done, total)`` is called after each committed batch (the CLI draws a bar with it).
    Raises ``ConfigError`` for a file that cannot be read or lacks a name column; row problems do not
    raise, they are refused in the result.
    """
    layout, rows = read_sheet(path, sheet)
    results: dict[int, RowResult] = {}
    candidates = plan(rows, results)
    total = len(candidates)
    shared_names = _shared_names(candidates)
    for start in range(0, total, sheet.batch_size):
        _run_batch(engine, candidates[start : start + sheet.batch_size], sheet.source, results, shared_names)
        if progress is not None:
            progress(min(start + sheet.batch_size, total), total)
    result = ImportResult(
        file=str(path), rows=[results[n] for n in sorted(results)], ignored_columns=layout.ignored
    )
    if report_path is not None:
        write_report(result, report_path)
    return result


def write_report(result: ImportResult, path: Path) -> Path:
    """Write the row-level report as CSV (UTF-8 with BOM so Excel shows Chinese correctly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "outcome", "customer_code", "name", "credit_code", "reason"])
        for r in result.rows:
            writer.writerow([r.row, r.outcome, r.customer_code, r.name, r.credit_code, r.reason])
    tmp.replace(path)
    result.report_path = str(path)
    return path
