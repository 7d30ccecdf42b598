"""One nightly push in its own process, so its peak memory can be measured alone (B.4 case 24).

``python -m tests.faults.backlog_worker STORE_URL BATCH_SIZE`` with the ERP's URL and credentials in the
environment (``KIS_WORKER``, JSON: ``base_url``, ``client_id``, ``client_secret``, ``auth_code``,
``account_number``). Runs the nightly push once (``prepare_push`` then ``execute_push``, which is what
:func:`hub.push.engine.run_push` does) and prints one JSON line:

- ``outcome``: ``ok``, or the type of the :class:`hub.errors.HubError` that ended the run, and ``error``;
- ``result``: the push result's counts (``PushResult.as_metadata``; empty when the run failed);
- ``wall_s``, ``cpu_s`` (this thread's CPU around the run; ``prepare_cpu_s`` / ``prepare_http_cpu_s``:
  the enqueue + validate part of it), ``http_cpu_s`` / ``http_wall_s`` (CPU and wall
  time spent inside ``requests``, as in ``bench/nightly_push.py``: what remains is the hub's own CPU),
  ``erp_calls``;
- ``rss_before_kb`` (resident set before the run), ``vm_hwm_kb`` (peak resident set of this process,
  from ``/proc/self/status``).

Exit code 0 when the run finished, 3 when it failed with a hub error (the outage nights).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import crm_core  # noqa: F401  (registers the models)
import hub.push.engine as engine_module
from connectors.kingdee.kis import KisClient, KisSettings
from crm_core.db import make_engine
from hub.errors import HubError
from hub.push import queue
from hub.push.engine import execute_push, prepare_push
from hub.push.sink import KisOutboundSink
from tests.push.conftest import FAST_RETRY, SETTINGS


def status_kb(field: str) -> int:
    """A ``kB`` figure of ``/proc/self/status`` (``VmHWM``, ``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/self/status")


class HttpMeter:
    """Counts ERP calls and the CPU and wall time spent inside ``requests`` (instrumentation only)."""

    def __init__(self, client: KisClient) -> None:
        self.calls, self.cpu, self.wall = 0, 0.0, 0.0
        original = client.transport.http

        def http(*args: Any, **kwargs: Any) -> Any:
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.calls += 1
                self.cpu += time.thread_time() - cpu0
                self.wall += time.perf_counter() - wall0

        client.transport.http = http  # type: ignore[method-assign]  # same behaviour, timed


def main(argv: list[str]) -> int:
    url, batch = argv[0], int(argv[1])
    conf: dict[str, Any] = json.loads(os.environ["KIS_WORKER"])
    if window := os.environ.get("BACKLOG_WINDOW"):  # smaller reads, so a small backlog spans many
        queue.ENQUEUE_WINDOW = engine_module.VALIDATION_ROWS = int(window)
    engine = make_engine(url)
    client = KisClient(
        KisSettings(
            name="erp", auth_flow="koas", retry=FAST_RETRY, connect_timeout=2.0, read_timeout=30.0, **conf
        )
    )
    meter = HttpMeter(client)
    report: dict[str, Any] = {"outcome": "ok", "error": "", "result": {}, "rss_before_kb": status_kb("VmRSS")}
    sink, settings = KisOutboundSink(client), replace(SETTINGS, batch_size=batch)
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    prepare_cpu = prepare_http_cpu = 0.0
    try:  # run_push = prepare_push + execute_push, timed apart as in bench/nightly_push.py
        result = prepare_push(engine, sink, settings)
        prepare_cpu, prepare_http_cpu = time.thread_time() - cpu0, meter.cpu
        if not result.blocked:
            execute_push(engine, sink, settings, result)
        report["result"] = result.as_metadata()
    except HubError as exc:
        report["outcome"], report["error"] = type(exc).__name__, str(exc)[:300]
    report.update(
        wall_s=time.perf_counter() - wall0,
        cpu_s=time.thread_time() - cpu0,
        prepare_cpu_s=prepare_cpu,
        prepare_http_cpu_s=prepare_http_cpu,
        http_cpu_s=meter.cpu,
        http_wall_s=meter.wall,
        erp_calls=meter.calls,
        vm_hwm_kb=status_kb("VmHWM"),
    )
    client.close()
    engine.dispose()
    print(json.dumps(report), flush=True)
    return 0 if report["outcome"] == "ok" else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
