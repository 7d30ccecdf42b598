"""List paging under both page-count spellings, and code -> internal id resolution through the cache."""

from __future__ import annotations

import pytest

from connectors.kingdee.kis import KisClient
from connectors.kingdee.kis_sandbox import SandboxAdmin
from hub.errors import PermanentError

from .conftest import ClientFactory

EXTRA_CUSTOMERS = [{"number": f"C1{n:02d}", "name": f"测试客户{n}"} for n in range(21)]  # 4 seeded + 21 = 25


@pytest.mark.parametrize(
    ("page_count_key", "has_next"),
    [("TotalPages", True), ("TotalPages", False), ("TotalPage", False), ("TotalPage", True)],
)
def test_paging_reaches_the_last_page_and_stops(
    make_client: ClientFactory, admin: SandboxAdmin, page_count_key: str, has_next: bool
) -> None:
    admin.seed({"customers": EXTRA_CUSTOMERS})
    admin.set_faults(page_count_key=page_count_key, emit_has_next_page=has_next)
    client = make_client("koas", page_size=5)
    numbers = [c.number for c in client.list_customers()]
    assert len(numbers) == 25 == len(set(numbers))
    assert {"C001", "C004", "C100", "C120"} <= set(numbers)
    # 25 rows at 5 a page: exactly 5 calls; reading past the last page would make it 6.
    assert admin.stats()["route:app006992/customer/list"] == 5


def test_inventory_pages_are_all_read(make_client: ClientFactory, admin: SandboxAdmin) -> None:
    admin.seed(
        {
            "inventory": [
                {"material": "M-BRKT-L01", "stock": "WH02", "batch": f"B{n}", "qty": n} for n in range(9)
            ]
        }
    )
    rows = list(make_client("open_platform", page_size=4).iter_inventory())
    assert len(rows) == 14
    by_key = {(r.material_number, r.stock_number, r.batch_no): r.base_qty for r in rows}
    assert by_key[("M-BOLT-M8", "WH02", "B2025-01")] == 800
    assert by_key[("M-BRKT-L01", "WH02", "B8")] == 8


def test_codes_resolve_to_the_sandbox_internal_ids(client: KisClient, admin: SandboxAdmin) -> None:
    ids = admin.seed({"customers": [{"number": "C009", "name": "杭州新客户"}]})["customer"]
    assert client.resolve_customer("C009") == ids["C009"]
    material = client.resolve_material("M-BRKT-U02")
    stock = client.resolve_stock("WH02")
    assert len({material, stock, ids["C009"]}) == 3  # one id space: ids never collide across kinds
    calls = admin.stats()["calls"]
    assert client.resolve_material("M-BRKT-U02") == material
    assert admin.stats()["calls"] == calls  # served from the cache
    assert [m.number for m in client.get_materials([material])] == ["M-BRKT-U02"]


def test_unknown_code_is_a_permanent_error_naming_it(client: KisClient) -> None:
    with pytest.raises(PermanentError) as caught:
        client.resolve_material("M-NOPE-404")
    assert "M-NOPE-404" in str(caught.value) and client.settings.name in str(caught.value)


def test_created_customer_resolves_without_waiting_for_a_reload(client: KisClient) -> None:
    assert client.resolve_customer("C001")  # cache loaded
    new_id = client.create_customer("C777", "常州新建客户有限公司")
    assert client.resolve_customer("C777") == new_id
    assert client.create_customer("C777", "常州新建客户有限公司") == new_id  # existing code -> existing id


def test_batch_detail_is_chunked(make_client: ClientFactory, admin: SandboxAdmin) -> None:
    ids = admin.seed(
        {"materials": [{"number": f"M-X{n:02d}", "name": "螺母", "unit": "PCS"} for n in range(25)]}
    )
    client = make_client("koas")
    found = client.get_materials(sorted(ids["material"].values()))
    assert sorted(m.number for m in found) == sorted(ids["material"])
    assert admin.stats()["route:app006992/material/getlistdetails"] == 2  # <= 20 ids per call
