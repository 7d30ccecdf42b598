"""Start ``hub ui`` (``dagster dev``: webserver + daemon + code server) as a real process group and talk
to it over GraphQL. Shared by the UI test and the PostgreSQL instance test.

The command runs in its own session with SIGINT/SIGTERM reset to their defaults (some CI runners start
children with them ignored, DAGSTER-GX §4.2). :meth:`DagsterDev.stop` sends SIGINT to the whole group,
then SIGKILL if Dagster has not shut down within 30 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

HUB = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hub"
LOCATION = "jobs.definitions"
LOAD_DEADLINE_S = 180.0  # a loaded 2-core machine: code server import + webserver start

WORKSPACE = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidStepError { invalidStepKey } ... on RunConfigValidationInvalid { errors { message } } } }"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


@dataclass
class DagsterDev:
    """A running ``hub ui`` process group."""

    process: subprocess.Popen[bytes]
    base: str
    log: Path

    @classmethod
    def start(cls, home: Path, env: dict[str, str], log: Path) -> DagsterDev:
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(HUB), "ui", "--port", str(port), "--host", "127.0.0.1", "--home", str(home)],
                cwd=home.parent,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_default_signals,
            )
        return cls(process, f"http://127.0.0.1:{port}", log)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(
            f"{self.base}/graphql", json={"query": query, "variables": variables or {}}, timeout=(5, 60)
        )
        response.raise_for_status()
        body = response.json()
        if "errors" in body:
            raise AssertionError(json.dumps(body["errors"], ensure_ascii=False))
        return dict(body["data"])

    def wait_loaded(self) -> list[dict[str, Any]]:
        """Poll ``workspaceOrError`` until every location is LOADED; returns the entries."""
        deadline = time.monotonic() + LOAD_DEADLINE_S
        entries: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"hub ui exited with {self.process.returncode}:\n{self.tail()}")
            try:
                entries = self.graphql(WORKSPACE)["workspaceOrError"].get("locationEntries", [])
            except (requests.RequestException, ValueError):
                entries = []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return entries
            time.sleep(1)
        raise AssertionError(f"code location not loaded in {LOAD_DEADLINE_S:.0f} s: {entries}\n{self.tail()}")

    def launch(self, job: str) -> str:
        """Submit a run of ``job`` (through the queued run coordinator); returns its run id."""
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "jobName": job,
            },
            "runConfigData": {},
        }
        result = self.graphql(LAUNCH, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise AssertionError(f"launchRun failed: {result}")
        return str(result["run"]["runId"])

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):  # children may outlive a stuck parent: clear the group
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
