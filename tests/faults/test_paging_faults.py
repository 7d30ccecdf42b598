"""B.4 case 14: paging faults against the KIS sandbox.

* Seeded 5xx on list pages (``p_5xx``, business calls only) under both page-count spellings, with and
  without ``HasNextPage``: every page is read successfully exactly once and the rows are exact.
* ``fail_page``: page 7 of 20 answers 503 twice: retried, every row once, list calls = 20 + 2.
* ``shift_on_page``: a row inserted at / deleted from the head of the list right after page 7 was served
  shifts every later page by one row. Plain offset paging then reads a row twice or misses one (proved
  first, so the client tests cannot pass vacuously); the client (kis/paging.py) dedupes by key and
  re-reads from page 1, so it ends with every row once and the count the source reports.

KIS offers page numbers only (no cursor parameter is evidenced), so "cursor pages, not offsets" is met by
verifying offset pages, not by cursor paging.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connectors.kingdee.kis import KisClient
from connectors.kingdee.kis.paging import MAX_PASSES, PagedRead
from connectors.kingdee.kis_sandbox import FaultConfig, KisSandbox, SandboxAdmin
from hub.errors import TransientError
from tests.connectors.kis.conftest import (  # noqa: F401 - fixtures
    ClientFactory,
    SettingsFactory,
    admin,
    make_client,
    make_settings,
    sandbox,
)

EXTRA = [{"number": f"C1{n:02d}", "name": f"测试客户{n}"} for n in range(31)]  # 4 seeded + 31 = 35
ROUTE = "route:app006992/customer/list"
PAGES = 7  # 35 rows at 5 a page

# The matrix's shape: 20 pages of 5 (4 seeded customers + 96).
TWENTY_PAGES = [{"number": f"C2{n:02d}", "name": f"分页客户{n}"} for n in range(96)]
SIZE = 5


@pytest.mark.parametrize(
    ("page_count_key", "has_next"), [("TotalPages", True), ("TotalPage", False), ("TotalPage", True)]
)
def test_case14_5xx_on_list_pages_every_page_read_once_rows_exact(
    make_client: ClientFactory,  # noqa: F811
    admin: SandboxAdmin,  # noqa: F811
    page_count_key: str,
    has_next: bool,
) -> None:
    admin.seed({"customers": EXTRA})
    admin.set_faults(
        seed=11, p_5xx=0.5, fault_scope="business", page_count_key=page_count_key, emit_has_next_page=has_next
    )
    numbers = [c.number for c in make_client("koas", page_size=5).list_customers()]
    assert len(numbers) == 35 == len(set(numbers))
    stats = admin.stats()
    assert stats.get("5xx", 0) >= 2, stats  # the faults really hit list pages
    # Every call of the list route either failed with a 5xx or read one page: pages read exactly once.
    assert stats[ROUTE] - stats["5xx"] == PAGES, stats


# --- helpers ----------------------------------------------------------------------------------------
def list_page(client: KisClient, page: int) -> dict:
    """One raw page of Customer/List (the client's own retrying call)."""
    body = {"CurrentPage": page, "ItemsOfPage": SIZE}
    return client._call(client.settings.base_data_app, "Customer/List", body) or {}


def naive_ids(client: KisClient) -> list[int]:
    """Plain offset paging (pages 1..TotalPages, no dedupe, no re-read): what case 14 guards against."""
    ids: list[int] = []
    page = 1
    while True:
        data = list_page(client, page)
        ids += [int(r["FItemID"]) for r in data["List"]]
        if page >= int(data["TotalPages"]):
            return ids
        page += 1


def truth(client: KisClient) -> tuple[set[int], int]:
    """The list as it stands (read with no knob armed) and the total the source reports."""
    ids = naive_ids(client)
    assert len(ids) == len(set(ids))
    return set(ids), int(list_page(client, 1)["TotalItems"])


# --- fail_page ----------------------------------------------------------------------------------------
def test_case14_page_7_of_20_answers_503_twice_retried_every_row_once(
    make_client: ClientFactory,  # noqa: F811
    admin: SandboxAdmin,  # noqa: F811
) -> None:
    admin.seed({"customers": TWENTY_PAGES})
    admin.set_faults(fail_page={"op": "customer/list", "page": 7, "times": 2, "status": 503})
    client = make_client("koas", page_size=SIZE)
    ids = [c.item_id for c in client.list_customers()]
    assert len(ids) == 100 == len(set(ids))
    stats = admin.stats()
    assert stats["fail_page"] == 2 and stats["5xx"] == 2, stats
    assert stats[ROUTE] == 20 + 2, stats  # 20 pages + 2 retries of page 7, nothing re-read
    assert client.stats["retries"] == 2
    assert "paging_restarts" not in client.stats
    assert set(ids) == truth(client)[0]


def test_fail_page_is_settable_at_start_and_counted_per_page(
    tmp_path: Path,
    make_settings: SettingsFactory,  # noqa: F811
) -> None:
    config = FaultConfig(fail_page={"op": "APP006992/Customer/List", "page": 1, "times": 3, "status": 502})
    with KisSandbox(tmp_path / "started.sqlite", faults=config) as box:
        box_admin = SandboxAdmin(box.base_url)
        assert box_admin.faults()["fail_page"]["times"] == 3
        with KisClient(dataclasses.replace(make_settings("koas"), base_url=box.base_url)) as client:
            assert len(list(client.list_customers())) == 4
            assert box_admin.stats()["fail_page"] == 3
            box_admin.set_faults(fail_page={"op": "customer/list", "page": 1})  # set again: counts again
            assert len(list(client.list_customers())) == 4
            stats = box_admin.stats()
            assert stats["fail_page"] == 4 and stats[ROUTE] == (3 + 1) + (1 + 1), stats


@pytest.mark.parametrize(
    "bad",
    [
        {"fail_page": {"op": "customer/list", "page": 0}},
        {"fail_page": {"op": "customer/create", "page": 1}},
        {"fail_page": {"op": "customer/list", "page": 1, "status": 404}},
        {"shift_on_page": {"op": "salesdelivery/list", "page": 1, "action": "insert"}},
        {"shift_on_page": {"op": "customer/list", "page": 1, "action": "move"}},
        {"shift_on_page": {"op": "customer/list", "page": 1, "action": "insert", "when": "now"}},
    ],
)
def test_paging_knobs_refuse_bad_settings(admin: SandboxAdmin, bad: dict) -> None:  # noqa: F811
    with pytest.raises(RuntimeError, match="HTTP 400"):
        admin.set_faults(**bad)
    assert admin.faults()["fail_page"] == {} and admin.faults()["shift_on_page"] == {}


# --- shift_on_page ------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["insert", "delete"])
def test_shift_knob_breaks_plain_offset_paging(
    make_client: ClientFactory,  # noqa: F811
    admin: SandboxAdmin,  # noqa: F811
    action: str,
) -> None:
    admin.seed({"customers": TWENTY_PAGES})
    client = make_client("koas", page_size=SIZE)
    before, _ = truth(client)
    admin.set_faults(shift_on_page={"op": "customer/list", "page": 7, "action": action})
    ids = naive_ids(client)
    after, total = truth(client)
    assert admin.stats()[f"shift:{action}"] == 1
    if action == "insert":
        assert total == 101 and len(ids) == 101
        assert len(set(ids)) == 100  # one row read twice (the last row of page 7) ...
        assert after - set(ids) == after - before  # ... and the new head row never seen
    else:
        assert total == 99 and len(ids) == 99 == len(set(ids))  # the count even looks right, but
        assert len(after - set(ids)) == 1  # one surviving row was skipped (the first of page 8)


def test_case14_item_inserted_before_cursor_mid_read_no_duplicate_count_is_new_total(
    make_client: ClientFactory,  # noqa: F811
    admin: SandboxAdmin,  # noqa: F811
) -> None:
    admin.seed({"customers": TWENTY_PAGES})
    admin.set_faults(shift_on_page={"op": "customer/list", "page": 7, "action": "insert"})
    client = make_client("koas", page_size=SIZE)
    ids = [c.item_id for c in client.list_customers()]
    assert admin.stats()["shift:insert"] == 1
    after, total = truth(client)
    assert len(ids) == len(set(ids)) == total == 101
    assert set(ids) == after
    assert client.stats["paging_duplicates"] == 1 and client.stats["paging_restarts"] == 1
    # Pass 1 stops at page 8 (the size changed), pass 2 reads all 21 pages; then 2 reads of truth().
    assert admin.stats()[ROUTE] == 8 + 21 + 21 + 1


def test_case14_item_deleted_mid_read_nothing_skipped(
    make_client: ClientFactory,  # noqa: F811
    admin: SandboxAdmin,  # noqa: F811
) -> None:
    admin.seed({"customers": TWENTY_PAGES})
    client = make_client("koas", page_size=SIZE)
    before, _ = truth(client)
    admin.set_faults(shift_on_page={"op": "customer/list", "page": 7, "action": "delete"})
    read = PagedRead(
        lambda body: client._call(client.settings.base_data_app, "Customer/List", body),
        op="app006992/Customer/List",
        page_size=SIZE,
        connection=client.settings.name,
        on_event=client._bump,
    )
    ids = [int(r["FItemID"]) for r in read]
    after, total = truth(client)
    deleted = before - after
    assert len(deleted) == 1 and total == 99
    assert after <= set(ids)  # nothing skipped
    assert len(ids) == len(set(ids)) == 100  # no duplicate; the deleted row was read before it went
    assert read.vanished == deleted and read.total == total == len(ids) - len(read.vanished)
    assert read.passes == 2 and client.stats["paging_vanished"] == 1


def test_case14_503_twice_and_an_insert_on_page_7_of_20(
    make_client: ClientFactory,  # noqa: F811
    admin: SandboxAdmin,  # noqa: F811
) -> None:
    """The matrix row in one read: page 7 fails twice, then (served) an item shifts into two pages."""
    admin.seed({"customers": TWENTY_PAGES})
    admin.set_faults(
        fail_page={"op": "customer/list", "page": 7, "times": 2},
        shift_on_page={"op": "customer/list", "page": 7, "action": "insert"},
    )
    client = make_client("koas", page_size=SIZE)
    ids = [c.item_id for c in client.list_customers()]
    stats = admin.stats()
    assert stats["fail_page"] == 2 and stats["shift:insert"] == 1
    assert stats[ROUTE] == 8 + 2 + 21  # pass 1 to page 8, 2 retries of page 7, pass 2 in full
    assert client.stats["retries"] == 2
    after, total = truth(client)
    assert len(ids) == len(set(ids)) == total == 101 and set(ids) == after


def test_list_that_keeps_changing_fails_transient_naming_the_op(
    make_client: ClientFactory,  # noqa: F811
    admin: SandboxAdmin,  # noqa: F811
) -> None:
    admin.seed({"customers": TWENTY_PAGES})
    admin.set_faults(shift_on_page={"op": "customer/list", "page": 2, "action": "insert", "times": 99})
    client = make_client("koas", page_size=SIZE)
    seen: list[int] = []
    with pytest.raises(TransientError, match=r"Customer/List kept changing") as caught:
        seen.extend(c.item_id for c in client.list_customers())
    assert caught.value.context["passes"] == MAX_PASSES
    assert admin.stats()["shift:insert"] == MAX_PASSES  # each pass met a new change at page 2
    assert len(seen) == len(set(seen))  # what was delivered before giving up is still unique
