"""The nightly push of invoiced states: outbox -> queue -> validate -> ERP, every document exactly once.

Per run: take the outbox events since the last run into the queue (coalesced per invoice); validate
every due invoice before anything leaves (quarantine failures; block the whole run when the failing
share passes the threshold); then push in batches. Before a batch's ERP calls its items are marked
``in_flight`` and committed; the binding and the ``done`` mark are committed together after the calls.
A run that dies in between leaves ``in_flight`` items, whose bills the next run looks up by their
deterministic number before sending anything: never a second bill.

A batch is planned before it is sent (map, hash, skip the unchanged, encode the creates), its creates go
out on ``PushSettings.senders`` threads, and the outcomes are recorded in document order. Documents
failing one after another mean the ERP is down: the run stops without spending their attempts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core.db import session_scope
from crm_core.documents import InvoiceDocument, load_documents
from crm_core.models import DeliveryQueueItem, ExternalBinding, Invoice, QuarantinedRecord
from crm_core.types import SHANGHAI, TZDateTime, now_utc
from hub.errors import (
    AuthError,
    DataValidationError,
    HubError,
    InfrastructureError,
    PermanentError,
    TransientError,
)
from hub.push.lock import connection_lock
from hub.push.queue import (
    RetryPattern,
    dead_letter,
    due_count,
    due_item_ids,
    due_pages,
    enqueue_from_outbox,
    mark_in_flight,
    schedule_retry,
)
from hub.push.sink import OutboundSink
from hub.push.validation import validate_invoices
from hub.secrets import redact
from mappings.kis_outbound import OutboundMapping, payload_hash, to_outbound

PUSHABLE = ("issued", "red_letter")
# Documents in a row failing transiently (after the client's own retries) that mean the ERP is down:
# the run stops instead of spending the documents' attempts (PERF-RELIABILITY case 24).
OUTAGE_AFTER = 5
VALIDATION_ROWS = 10_000  # documents per GX validation (bounded memory, few fixed GX costs)
# Due ids read per query: the due query sorts every due item, so reading a night's ids in one go costs
# one sort instead of one per batch (memory: 8 bytes an id).
DUE_PAGE = 10_000
AUDITED_NEEDS_RED_LETTER = "already audited in the ERP: needs a red-letter document"


@dataclass
class PushResult:
    system: str
    enqueued: int = 0
    pushed: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    retry_scheduled: int = 0
    dead_lettered: int = 0
    deferred: int = 0  # edited after this run validated them: left pending for the next run
    blocked: bool = False
    failing_share: float = 0.0
    pushed_amount: Decimal = Decimal("0.00")
    quarantined_amount: Decimal = Decimal("0.00")
    erp_writes: int = 0
    plan: list[dict[str, str]] = field(default_factory=list)  # dry run: what would happen
    # The documents this run's validation read, by invoice id, kept for its send when there are at most
    # VALIDATION_ROWS of them (prepare and execute in one process: `hub push`, run_push, the Dagster push
    # step). What leaves is then exactly what was validated, read once; one edited in between is left
    # for the next run. Above VALIDATION_ROWS documents are read again at sending, unchecked.
    validated: dict[int, InvoiceDocument] = field(default_factory=dict, repr=False, compare=False)

    def as_metadata(self) -> dict[str, Any]:
        return {
            k: (str(v) if isinstance(v, Decimal) else v)
            for k, v in self.__dict__.items()
            if k not in ("plan", "validated")
        }


@dataclass(frozen=True)
class PushSettings:
    mapping: OutboundMapping = OutboundMapping()
    retry: RetryPattern = RetryPattern()
    batch_size: int = 200
    block_threshold: float = 0.2
    senders: int = 1  # concurrent creates per batch (the ERP's round trips overlap; results kept in order)


def _batches(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _today() -> date:
    return now_utc().astimezone(SHANGHAI).date()


def run_push(
    engine: sa.Engine,
    sink: OutboundSink,
    settings: PushSettings = PushSettings(),
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Prepare (enqueue + validate) then execute; see the module docstring for the guarantees."""
    result = prepare_push(engine, sink, settings, dry_run=dry_run)
    if not (dry_run or result.blocked):
        execute_push(engine, sink, settings, result, progress=progress)
    result.validated = {}  # only for this run's send
    return result


def prepare_push(
    engine: sa.Engine, sink: OutboundSink, settings: PushSettings = PushSettings(), *, dry_run: bool = False
) -> PushResult:
    """Take new outbox events into the queue and validate every due invoice before anything leaves.

    Invalid invoices are quarantined with their reasons; when their share passes the threshold the
    result is ``blocked`` and nothing is quarantined or sent (the batch is mostly bad: stop and look).
    A dry run classifies what would happen and rolls everything back.
    """
    result = PushResult(system=sink.system)
    with connection_lock(engine, f"push:{sink.system}"):
        now = now_utc()
        with session_scope(engine) as session:
            result.enqueued = enqueue_from_outbox(session, sink.system)
            if dry_run:  # classify, then roll back: the outbox and queue stay exactly as they were
                _plan(session, due_item_ids(session, sink.system, now), sink, settings, result)
                session.rollback()
                return result
            due = due_count(session, sink.system, now)
        if due:  # nothing due: no ERP call at all
            _validate(engine, now, due, sink, settings, sink.known_material_codes(), result)
    return result


def execute_push(
    engine: sa.Engine,
    sink: OutboundSink,
    settings: PushSettings,
    result: PushResult,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Send every due, validated invoice in batches (quarantined ones are no longer due)."""
    with connection_lock(engine, f"push:{sink.system}"):
        now = now_utc()
        with session_scope(engine) as session:
            ready = due_count(session, sink.system, now)
        done = 0
        try:
            with ThreadPoolExecutor(max_workers=settings.senders, thread_name_prefix="push-send") as senders:
                # Page by page in id (= outbox) order: memory stays flat however long the backlog.
                for page in due_pages(engine, sink.system, now, max(DUE_PAGE, settings.batch_size)):
                    for batch in _batches(page, settings.batch_size):
                        _push_batch(engine, batch, sink, settings, result, senders)
                        done += len(batch)
                        if progress:
                            progress(done, ready)
        finally:
            result.validated = {}  # sent or not, they are not needed any more
    return result


def _bindings(session: Session, system: str, invoice_ids: list[int]) -> dict[int, ExternalBinding]:
    """The outbound bindings of these invoices, by invoice id."""
    query = sa.select(ExternalBinding).where(
        ExternalBinding.system == system,
        ExternalBinding.kind == "outbound",
        ExternalBinding.canonical_id.in_(invoice_ids),
    )
    return {b.canonical_id: b for b in session.scalars(query)}


def _items(session: Session, item_ids: list[int]) -> list[DeliveryQueueItem]:
    return list(session.scalars(sa.select(DeliveryQueueItem).where(DeliveryQueueItem.id.in_(item_ids))))


def _validate(
    engine: sa.Engine,
    now: datetime,
    due: int,
    sink: OutboundSink,
    settings: PushSettings,
    known: set[str],
    result: PushResult,
) -> None:
    """Quarantine invalid invoices, or mark the run blocked when too many fail."""
    failures: dict[int, tuple[InvoiceDocument, list[dict[str, str]]]] = {}
    stream = f"{sink.system}.invoiced_states"
    pending: list[InvoiceDocument] = []  # read, not yet validated
    item_of: dict[int, int] = {}  # canonical id -> queue item id

    def validate_pending() -> None:
        outcome = validate_invoices(pending, known_materials=known, today=_today())
        by_id = {doc.id: doc for doc in pending}
        for doc_id, reasons in outcome.failures.items():
            failures[item_of[doc_id]] = (by_id[doc_id], reasons)
        pending.clear()
        item_of.clear()

    keep = due <= VALIDATION_ROWS  # few enough to hold for the send (PushResult.validated)
    # 500 ids per IN list: some SQLite builds allow only 999 variables.
    for page in due_pages(engine, sink.system, now, DUE_PAGE):
        for batch in _batches(page, 500):
            with session_scope(engine) as session:
                rows = session.execute(
                    sa.select(DeliveryQueueItem.canonical_id, DeliveryQueueItem.id).where(
                        DeliveryQueueItem.id.in_(batch)
                    )
                ).all()
                batch_items = {canonical_id: item_id for canonical_id, item_id in rows}
                for doc in load_documents(session, list(batch_items)).values():
                    if keep:
                        result.validated[doc.id] = doc
                    if doc.status in PUSHABLE:
                        pending.append(doc)
                        item_of[doc.id] = batch_items[doc.id]
            if len(pending) >= VALIDATION_ROWS:  # GX costs ~0.1 s per call whatever the size
                validate_pending()
    if pending:
        validate_pending()
    result.failing_share = len(failures) / due
    if result.failing_share > settings.block_threshold:
        result.blocked = True
        return
    with session_scope(engine) as session:
        for batch in _batches(list(failures), 500):
            for item in _items(session, batch):
                doc, reasons = failures[item.id]
                _quarantine(session, item, stream, doc, reasons, result)


def _quarantine(
    session: Session,
    item: DeliveryQueueItem,
    stream: str,
    doc: InvoiceDocument,
    reasons: list[dict[str, str]],
    result: PushResult,
) -> None:
    item.state = "quarantined"
    item.last_error = "; ".join(r["reason"] for r in reasons)
    session.add(QuarantinedRecord(stream=stream, canonical_id=doc.id, source_ref=doc.number, reasons=reasons))
    result.quarantined += 1
    result.quarantined_amount += doc.total_gross


# A batch's writes are one statement each, whatever its size: its rows travel as arrays (PostgreSQL) or
# one JSON text (SQLite), so no per-row parameter processing (P11). A null digest keeps the item's last
# payload hash (nothing was sent).
_DONE_PG = sa.text(
    "UPDATE delivery_queue AS q SET state = 'done', updated_at = :now, "
    "payload_hash = COALESCE(d.digest, q.payload_hash) "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:digests AS text[])) AS d(item_id, digest) "
    "WHERE q.id = d.item_id"
).bindparams(sa.bindparam("now", type_=TZDateTime()))
_DONE_SQLITE = sa.text(
    "UPDATE delivery_queue SET state = 'done', updated_at = :now, "
    "payload_hash = COALESCE(json_extract(d.value, '$[1]'), delivery_queue.payload_hash) "
    "FROM json_each(:rows) AS d WHERE delivery_queue.id = json_extract(d.value, '$[0]')"
).bindparams(sa.bindparam("now", type_=TZDateTime()))
_BIND_COLUMNS = (
    "INSERT INTO external_bindings (system, kind, canonical_id, external_id, external_bill_no, "
    "payload_hash, mapping_version, synced_at) "
)
_BIND_PG = sa.text(
    _BIND_COLUMNS + "SELECT b.system, 'outbound', b.canonical_id, b.external_id, b.bill_no, b.digest, "
    "b.version, :now FROM unnest(CAST(:systems AS text[]), CAST(:ids AS bigint[]), "
    "CAST(:external_ids AS text[]), CAST(:bills AS text[]), CAST(:digests AS text[]), "
    "CAST(:versions AS text[])) AS b(system, canonical_id, external_id, bill_no, digest, version)"
).bindparams(sa.bindparam("now", type_=TZDateTime()))
_BIND_SQLITE = sa.text(
    _BIND_COLUMNS + "SELECT json_extract(value, '$[0]'), 'outbound', json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
    "json_extract(value, '$[5]'), :now FROM json_each(:rows)"
).bindparams(sa.bindparam("now", type_=TZDateTime()))


@dataclass
class _BatchWrites:
    """What a batch's ERP calls produced, written with one statement per kind at the batch's commit.

    Per-record ORM objects cost more CPU than the rest of the hub's work per pushed record (P11); the
    rare failure paths still use the ORM item (see ``_orm_item``).
    """

    done: dict[int, str | None] = field(default_factory=dict)  # queue item id -> payload hash (None: keep)
    # (system, invoice id, external id, bill number, payload hash, mapping version) per new binding
    bindings: list[tuple[str, int, str, str, str | None, str]] = field(default_factory=list)

    def mark_done(self, item_id: int, digest: str | None) -> None:
        self.done[item_id] = digest

    def bind(
        self,
        system: str,
        doc: InvoiceDocument,
        external_id: str,
        bill_no: str,
        digest: str | None,
        version: str,
    ) -> None:
        self.bindings.append((system, doc.id, external_id, bill_no, digest, version))

    def write(self, session: Session) -> None:
        session.flush()  # ORM changes first (a deleted stale binding before its replacement)
        connection = session.connection()
        now = now_utc()
        postgres = connection.dialect.name == "postgresql"
        if self.bindings:
            if postgres:
                systems, ids, external_ids, bills, digests, versions = map(
                    list, zip(*self.bindings, strict=True)
                )
                connection.execute(
                    _BIND_PG,
                    {
                        "systems": systems,
                        "ids": ids,
                        "external_ids": external_ids,
                        "bills": bills,
                        "digests": digests,
                        "versions": versions,
                        "now": now,
                    },
                )
            else:
                connection.execute(_BIND_SQLITE, {"rows": json.dumps(self.bindings), "now": now})
        if self.done:
            if postgres:
                connection.execute(
                    _DONE_PG, {"ids": list(self.done), "digests": list(self.done.values()), "now": now}
                )
            else:
                rows = json.dumps(list(self.done.items()))
                connection.execute(_DONE_SQLITE, {"rows": rows, "now": now})


def _orm_item(session: Session, item_id: int) -> DeliveryQueueItem:
    item = session.get(DeliveryQueueItem, item_id)
    assert item is not None, item_id  # the batch's items were read in this transaction
    return item


@dataclass
class _Planned:
    """One document of a batch on its way out: what is sent, and what the send needs."""

    item_id: int
    doc: InvoiceDocument
    bill: Any
    digest: str
    binding: ExternalBinding | None
    lookup_first: bool
    prepared: Any = None  # the sink's encoded create request, built before the batch's first ERP call
    error: HubError | None = None  # a per-document failure while preparing, handled like one when sending
    created: tuple[str, bool] | None = None  # sent concurrently: (external id, created)
    unsent: bool = False  # handed to the senders, who stopped before sending it
    failure: HubError | None = None  # sent concurrently: the create failed


def _push_batch(
    engine: sa.Engine,
    batch: list[int],
    sink: OutboundSink,
    settings: PushSettings,
    result: PushResult,
    senders: ThreadPoolExecutor,
) -> None:
    with session_scope(engine) as session:
        # Items a dead run left in flight, or that failed before, may already be in the ERP.
        was_in_flight = set(
            session.scalars(
                sa.select(DeliveryQueueItem.id).where(
                    DeliveryQueueItem.id.in_(batch),
                    sa.or_(DeliveryQueueItem.state == "in_flight", DeliveryQueueItem.attempts > 0),
                )
            )
        )
        mark_in_flight(session, batch)
    with session_scope(engine) as session:
        items = session.execute(
            sa.select(DeliveryQueueItem.id, DeliveryQueueItem.canonical_id)
            .where(DeliveryQueueItem.id.in_(batch), DeliveryQueueItem.state == "in_flight")
            .order_by(DeliveryQueueItem.id)
        ).all()
        docs, changed = _documents(session, [canonical_id for _, canonical_id in items], result.validated)
        items = _defer_changed(session, items, docs, changed, result)
        bindings = _bindings(session, sink.system, list(docs))
        writes = _BatchWrites()
        planned = _plan_batch(items, docs, bindings, was_in_flight, sink, settings, writes, result)
        if settings.senders > 1:
            _send_concurrently(planned, sink, settings.senders, senders)
        outage = _take_results(session, writes, planned, sink, settings, result)
        writes.write(session)
    if outage is not None:
        raise outage  # after the commit: what landed is bound


def _documents(
    session: Session, invoice_ids: list[int], validated: dict[int, InvoiceDocument]
) -> tuple[dict[int, InvoiceDocument], set[int]]:
    """The batch's documents, and the ids of those that changed since this run validated them.

    A document kept by validation is used as it is while its ``row_hash`` (kept current by every write
    path) is unchanged: one small query instead of reading it again. A changed one is read again.
    """
    kept = [i for i in invoice_ids if i in validated]
    docs: dict[int, InvoiceDocument] = {}
    changed: set[int] = set()
    if kept:
        hashes = dict(
            session.execute(sa.select(Invoice.id, Invoice.row_hash).where(Invoice.id.in_(kept))).all()
        )
        for i in kept:
            doc = validated[i]
            if doc.row_hash is None:  # no hash to compare (a store written before hashes): read again
                continue
            if hashes.get(i) == doc.row_hash:
                docs[i] = doc
            else:
                changed.add(i)
    missing = [i for i in invoice_ids if i not in docs]
    if missing:
        docs.update(load_documents(session, missing))
    return docs, changed


def _defer_changed(
    session: Session,
    items: Sequence[Any],
    docs: dict[int, InvoiceDocument],
    changed: set[int],
    result: PushResult,
) -> Sequence[Any]:
    """Leave for the next run the documents edited since validation that would still be sent.

    What leaves must be what was validated: such an item goes back to pending (no attempt counted) and
    the next run validates the new content. One that left the pushable states (voided, back to draft)
    stays in the batch, which settles it without sending anything.
    """
    if not changed:
        return items
    later = [
        item_id
        for item_id, canonical_id in items
        if canonical_id in changed and (doc := docs.get(canonical_id)) is not None and doc.status in PUSHABLE
    ]
    if not later:
        return items
    session.execute(
        sa.update(DeliveryQueueItem)
        .where(DeliveryQueueItem.id.in_(later))
        .values(state="pending", updated_at=now_utc())
        .execution_options(synchronize_session=False)
    )
    result.deferred += len(later)
    skipped = set(later)
    return [row for row in items if row[0] not in skipped]


def _send_concurrently(
    planned: list[_Planned], sink: OutboundSink, senders: int, pool: ThreadPoolExecutor
) -> None:
    """Send the batch's plain creates on ``senders`` threads; outcomes are taken in order afterwards.

    Each thread sends its share (every n-th create, so the ERP sees the batch roughly in order) one
    after another: one hand-over per thread and batch, not per document, keeps the threads' own CPU
    cost low (P11). A broken connection or credentials stop every thread before its next send.
    """
    creates = [plan for plan in planned if plan.prepared is not None and plan.error is None]
    for plan in creates:
        plan.unsent = True
    stop = _SendersStop()
    shares = [creates[i::senders] for i in range(senders)]
    futures = [pool.submit(_send_share, share, sink, stop) for share in shares if share]
    try:
        for future in futures:
            future.result()  # an unexpected error (a bug) surfaces here
    finally:
        wait(futures)  # never leave a send running when the batch ends
    broken = next(
        (p.failure for p in creates if isinstance(p.failure, (AuthError, InfrastructureError))), None
    )
    if broken is not None:
        raise broken  # the whole run is broken; in_flight items are looked up next time


class _SendersStop:
    """Shared by a batch's senders: stop on a broken run, or when the ERP fails document after document."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._transient_streak = 0

    def outcome(self, transient: bool) -> None:
        with self._lock:
            self._transient_streak = self._transient_streak + 1 if transient else 0
            if self._transient_streak >= OUTAGE_AFTER:
                self.event.set()


def _send_share(share: list[_Planned], sink: OutboundSink, stop: _SendersStop) -> None:
    for plan in share:
        if stop.event.is_set():
            return
        plan.unsent = False
        try:
            plan.created = sink.create(plan.prepared)
        except (AuthError, InfrastructureError) as exc:
            plan.failure = exc
            stop.event.set()
            return
        except HubError as exc:  # this document's failure, handled in order by the batch loop
            plan.failure = exc
        stop.outcome(transient=isinstance(plan.failure, TransientError))


def _take_results(
    session: Session,
    writes: _BatchWrites,
    planned: list[_Planned],
    sink: OutboundSink,
    settings: PushSettings,
    result: PushResult,
) -> InfrastructureError | None:
    """Send (or take the concurrent outcome of) each plan in order and record what happened.

    Returns an error when ``OUTAGE_AFTER`` documents in a row failed transiently: the ERP is down,
    not the documents. Those and the rest of the batch stay in flight with no attempt counted (a
    three-night outage must not dead-letter the backlog); the caller commits what landed, then fails
    the run.
    """
    stream = f"{sink.system}.invoiced_states"
    streak: list[tuple[_Planned, TransientError]] = []

    def settle_streak() -> None:  # the ERP answered after them: those failures were the documents' own
        for plan, exc in streak:
            item = _orm_item(session, plan.item_id)
            if schedule_retry(item, exc, settings.retry, now_utc()):
                result.retry_scheduled += 1
            else:
                dead_letter(session, item, exc, {"invoice": plan.doc.number})
                result.dead_lettered += 1
        streak.clear()

    for plan in planned:
        if plan.unsent:
            continue  # the senders stopped before it (ERP down): in flight, looked up next run
        try:
            if plan.error is not None:
                raise plan.error
            _push_one(session, writes, plan, sink, settings, result)
        except (AuthError, InfrastructureError):
            raise  # the whole run is broken; in_flight items are looked up next time
        except TransientError as exc:
            streak.append((plan, exc))
            if len(streak) >= OUTAGE_AFTER:
                return InfrastructureError(
                    f"ERP connection {sink.system!r}: {len(streak)} documents in a row failed after "
                    f"retries (last: {redact(str(exc))}); the ERP looks unavailable, so the run stops "
                    "here without counting attempts. Unsent documents stay queued for the next run."
                )
            continue
        except DataValidationError as exc:
            reason = [{"rule": "mapping", "column": "", "reason": str(exc), "value": ""}]
            _quarantine(session, _orm_item(session, plan.item_id), stream, plan.doc, reason, result)
        except PermanentError as exc:
            dead_letter(session, _orm_item(session, plan.item_id), exc, {"invoice": plan.doc.number})
            result.dead_lettered += 1
        settle_streak()
    settle_streak()
    return None


def _plan_batch(
    items: Sequence[Any],
    docs: dict[int, InvoiceDocument],
    bindings: dict[int, ExternalBinding],
    was_in_flight: set[int],
    sink: OutboundSink,
    settings: PushSettings,
    writes: _BatchWrites,
    result: PushResult,
) -> list[_Planned]:
    """Map, hash and skip what is unchanged; prepare every plain create before the first ERP call.

    The preparing runs in one loop while the CPU caches are warm; done between the ERP's replies it
    cost about twice as much CPU (P11, bench/nightly_push.py).
    """
    version = settings.mapping.version
    planned = []
    for item_id, canonical_id in items:
        doc = docs.get(canonical_id)
        if doc is None or doc.status not in PUSHABLE:
            writes.mark_done(item_id, None)  # nothing to send (deleted, or back to draft)
            continue
        bill = to_outbound(doc, settings.mapping)
        digest = payload_hash(bill, version)
        binding = bindings.get(doc.id)
        if binding is not None and binding.payload_hash == digest:
            writes.mark_done(item_id, digest)
            result.unchanged += 1
            continue
        plan = _Planned(item_id, doc, bill, digest, binding, lookup_first=item_id in was_in_flight)
        if binding is None and not plan.lookup_first:
            try:
                sink.ensure_customer(doc.customer_code, doc.customer_name)  # once per customer and run
                plan.prepared = sink.prepare(bill)
            except (AuthError, InfrastructureError):
                raise
            except (DataValidationError, TransientError, PermanentError) as exc:
                plan.error = exc
        planned.append(plan)
    return planned


def _push_one(
    session: Session,
    writes: _BatchWrites,
    plan: _Planned,
    sink: OutboundSink,
    settings: PushSettings,
    result: PushResult,
) -> None:
    version = settings.mapping.version
    item_id, doc, bill, digest, binding = plan.item_id, plan.doc, plan.bill, plan.digest, plan.binding
    found = None
    if binding is None and plan.lookup_first:
        found = sink.find(bill.bill_no, compare_with=bill)  # an earlier run may have sent it before dying
        if found is not None and found.same_content:
            writes.bind(sink.system, doc, found.external_id, bill.bill_no, digest, version)
            result.erp_writes += sink.complete(doc, bill, found.external_id)
            writes.mark_done(item_id, digest)
            result.pushed += 1  # completed now: the bill was already there, nothing re-sent
            result.pushed_amount += doc.total_gross
            return
    elif binding is not None:  # changed since it was pushed
        found = sink.find(bill.bill_no)
        if found is None:
            # Bound but gone from the ERP (deleted behind our back): send it again under the same number.
            session.delete(binding)
    if found is not None:
        if found.audited:
            if binding is None:
                writes.bind(sink.system, doc, found.external_id, bill.bill_no, None, version)
            reason = f"{AUDITED_NEEDS_RED_LETTER} (bill {found.bill_no})"
            _quarantine(
                session,
                _orm_item(session, item_id),
                f"{sink.system}.invoiced_states",
                doc,
                [{"rule": "erp_state", "column": "", "value": found.bill_no, "reason": reason}],
                result,
            )
            return
        sink.update(found.external_id, bill)
        result.erp_writes += 1 + sink.complete(doc, bill, found.external_id)
        if binding is None:
            writes.bind(sink.system, doc, found.external_id, bill.bill_no, digest, version)
        else:
            binding.payload_hash, binding.mapping_version, binding.synced_at = digest, version, now_utc()
        writes.mark_done(item_id, digest)
        result.updated += 1
        result.pushed_amount += doc.total_gross
        return
    if plan.failure is not None:
        raise plan.failure
    if plan.created is not None:
        external_id, _created = plan.created
    else:
        if plan.prepared is None:
            sink.ensure_customer(doc.customer_code, doc.customer_name)
            plan.prepared = sink.prepare(bill)
        external_id, _created = sink.create(plan.prepared)
    result.erp_writes += 1 + sink.complete(doc, bill, external_id)
    writes.bind(sink.system, doc, external_id, bill.bill_no, digest, version)
    writes.mark_done(item_id, digest)
    result.pushed += 1
    result.pushed_amount += doc.total_gross


def _plan(
    session: Session, due: list[int], sink: OutboundSink, settings: PushSettings, result: PushResult
) -> None:
    """Dry run: classify without any ERP write (reads only the store)."""
    items = _items(session, due)
    docs = load_documents(session, [i.canonical_id for i in items])
    bindings = _bindings(session, sink.system, list(docs))
    outcome = validate_invoices(
        [d for d in docs.values() if d.status in PUSHABLE], known_materials=None, today=_today()
    )
    for doc in docs.values():
        if doc.id in outcome.failures:
            action = "blocked: " + "; ".join(r["reason"] for r in outcome.failures[doc.id])
        else:
            bill = to_outbound(doc, settings.mapping)
            binding = bindings.get(doc.id)
            digest = payload_hash(bill, settings.mapping.version)
            action = (
                "create"
                if binding is None
                else ("skip (unchanged)" if binding.payload_hash == digest else "update")
            )
        result.plan.append(
            {
                "invoice": doc.number,
                "bill_no": settings.mapping.bill_no(doc),
                "action": action,
                "amount": str(doc.total_gross),
            }
        )


def queue_summary(engine: sa.Engine, system: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(DeliveryQueueItem.state, sa.func.count())
            .where(DeliveryQueueItem.system == system)
            .group_by(DeliveryQueueItem.state)
        ).all()
    return {state: int(n) for state, n in rows}
