"""B.4 case 14: paging faults against the KIS sandbox.

5xx answers on list pages (the sandbox's seeded ``p_5xx``, business calls only) under both page-count
spellings, with and without ``HasNextPage``: every page is read successfully exactly once and the rows
are exact. The sandbox has no knob for "503 on page N" (its 5xx decision is a seeded hash of the
request), so the test asserts that 5xx really hit list pages and that successful calls == pages.
"""

from __future__ import annotations

import pytest

from connectors.kingdee.kis_sandbox import SandboxAdmin
from tests.connectors.kis.conftest import (  # noqa: F401 - fixtures
    ClientFactory,
    admin,
    make_client,
    make_settings,
    sandbox,
)

EXTRA = [{"number": f"C1{n:02d}", "name": f"测试客户{n}"} for n in range(31)]  # 4 seeded + 31 = 35
ROUTE = "route:app006992/customer/list"
PAGES = 7  # 35 rows at 5 a page


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
