"""A push run in its own process that SIGKILLs itself at a chosen point (B.4 case 6).

``python -m tests.faults.push_worker STORE_URL KIND K`` with the sandbox's URL and credentials in the
environment (``KIS_WORKER``, JSON). KIND says where the process dies, K at which occurrence:

- ``ack``: right after the K-th bill create was acknowledged by the ERP, before the store records it;
- ``send``: right before the K-th bill create is sent (items are marked in flight);
- ``commit``: inside the K-th store transaction, as its commit starts (nothing of it is durable).

The kill is a real ``SIGKILL`` of this process: no ``finally``, no atexit, no flush.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from connectors.kingdee.kis import KisClient, KisSettings
from connectors.kingdee.kis.client import PreparedOutbound
from connectors.kingdee.kis.records import OutboundBill
from crm_core.db import make_engine
from hub.push.engine import run_push
from hub.push.sink import KisOutboundSink
from tests.push.conftest import FAST_RETRY, SETTINGS

BATCH = 5  # small batches: many commits, many points to die at


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DyingSink(KisOutboundSink):
    """The real sink; only dies at the K-th create (before sending or after the acknowledgement)."""

    def __init__(self, client: KisClient, kind: str, k: int) -> None:
        super().__init__(client)
        self.kind, self.k, self.creates = kind, k, 0

    def create(self, bill: OutboundBill | PreparedOutbound) -> tuple[str, bool]:
        self.creates += 1
        if self.kind == "send" and self.creates == self.k:
            _die()
        out = super().create(bill)
        if self.kind == "ack" and self.creates == self.k:
            _die()
        return out


def main(argv: list[str]) -> int:
    """Run one push; exit 0 when it finished without reaching the kill point."""
    url, kind, k = argv[0], argv[1], int(argv[2])
    conf: dict[str, Any] = json.loads(os.environ["KIS_WORKER"])
    engine = make_engine(url)
    if kind == "commit":
        commits = {"n": 0}

        def on_commit(_conn: sa.Connection) -> None:
            commits["n"] += 1
            if commits["n"] == k:
                _die()

        sa.event.listen(engine, "commit", on_commit)
    client = KisClient(KisSettings(name="erp", auth_flow="koas", retry=FAST_RETRY, **conf))
    run_push(engine, DyingSink(client, kind, k), replace(SETTINGS, batch_size=BATCH))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
