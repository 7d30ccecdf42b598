"""Start the sandbox in the foreground (shared by ``hub sandbox kis`` and ``python -m``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from connectors.kingdee.kis_sandbox.faults import FaultConfig
from connectors.kingdee.kis_sandbox.seed import SandboxCredentials
from connectors.kingdee.kis_sandbox.server import KisSandbox

DEFAULT_STATE = ".hub/kis_sandbox.sqlite"


def parse_throttle(text: str | None) -> dict[str, Any]:
    """``RATE[:BURST[:MODE]]`` (e.g. ``5:2:http429``) -> fault settings; empty/0 = off."""
    if not text:
        return {}
    parts = text.split(":")
    try:
        out: dict[str, Any] = {"throttle_rate": float(parts[0])}
        if len(parts) > 1 and parts[1]:
            out["throttle_burst"] = int(parts[1])
    except ValueError:
        raise ValueError(f"--throttle {text!r}: expected RATE[:BURST[:MODE]], e.g. 5:2:http429") from None
    if len(parts) > 2 and parts[2]:
        out["throttle_mode"] = parts[2]
    return out


def build_faults(
    *,
    seed: int,
    fault_5xx: float,
    latency_ms: float,
    throttle: str | None,
    drop: float,
    lost_reply: float,
    token_ttl_scale: float,
    page_count_key: str = "TotalPages",
    refuse_duplicates: bool = True,
) -> FaultConfig:
    """A validated :class:`FaultConfig` from command-line values."""
    config = FaultConfig(
        seed=seed,
        p_5xx=fault_5xx,
        latency_ms=latency_ms,
        p_drop=drop,
        p_lost_reply=lost_reply,
        token_ttl_scale=token_ttl_scale,
        page_count_key=page_count_key,  # type: ignore[arg-type]
        refuse_duplicate_bill_no=refuse_duplicates,
        **parse_throttle(throttle),
    )
    config.validate()
    return config


def banner(sandbox: KisSandbox, state: Path, certfile: Path | None = None) -> str:
    """What IT needs to point a ``kingdee_kis`` template at the sandbox."""
    c = sandbox.credentials
    f = sandbox.faults.config
    tls = (
        [f"  tls:    certificate {certfile}; a client must trust its CA (ca_bundle=<that CA's PEM>)"]
        if sandbox.tls
        else []
    )
    return "\n".join(
        [
            f"KIS sandbox listening on {sandbox.base_url}  (state: {state})",
            *tls,
            f"  admin:  {sandbox.base_url}/__admin__/ (faults ledger stats seed audit/<fid> invoice reset)",
            f"  faults: seed={f.seed} 5xx={f.p_5xx} latency_ms={f.latency_ms} throttle={f.throttle_rate}/s "
            f"drop={f.p_drop} lost_reply={f.p_lost_reply} token_ttl_scale={f.token_ttl_scale}",
            "  credentials it accepts (sandbox only; set with flags or KIS_SANDBOX_* env vars):",
            f"    base_url={sandbox.base_url}",
            f"    client_id={c.client_id}  client_secret={c.client_secret}",
            f"    koas:          auth_code={c.auth_code}  account_number={c.account_number}",
            f"    open_platform: outer_instance_id={c.outer_instance_id}  app_key={c.app_key}",
            f"                   app_secret={c.app_secret}",
        ]
    )


def serve(
    *,
    host: str,
    port: int,
    state: Path,
    faults: FaultConfig,
    credentials: SandboxCredentials,
    echo: Callable[[str], None] = print,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> None:
    """Run until Ctrl-C (HTTPS when ``certfile`` is given; a bad certificate/key raises ValueError)."""
    sandbox = KisSandbox(
        state,
        host=host,
        port=port,
        faults=faults,
        credentials=credentials,
        certfile=certfile,
        keyfile=keyfile,
    )
    echo(banner(sandbox, state, certfile))
    try:
        sandbox.serve_forever()
    except KeyboardInterrupt:
        echo("KIS sandbox stopped.")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m connectors.kingdee.kis_sandbox --port N ...``"""
    p = argparse.ArgumentParser(prog="python -m connectors.kingdee.kis_sandbox", description=__doc__)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--state", type=Path, default=Path(DEFAULT_STATE))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--token-ttl-scale", type=float, default=1.0)
    p.add_argument("--fault-5xx", type=float, default=0.0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--throttle", default=None, help="RATE[:BURST[:MODE]] requests/s, MODE http429|errcode")
    p.add_argument("--drop", type=float, default=0.0, help="probability of dropping a connection")
    p.add_argument(
        "--lost-reply", type=float, default=0.0, help="probability a committed write loses its reply"
    )
    p.add_argument("--page-count-key", choices=["TotalPages", "TotalPage"], default="TotalPages")
    p.add_argument("--allow-duplicate-bill-no", action="store_true")
    p.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate (chain): serve HTTPS")
    p.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
    for name in (
        "client-id",
        "client-secret",
        "auth-code",
        "account-number",
        "app-key",
        "app-secret",
        "outer-instance-id",
    ):
        p.add_argument(f"--{name}", default=None)
    args = p.parse_args(argv)
    try:
        faults = build_faults(
            seed=args.seed,
            fault_5xx=args.fault_5xx,
            latency_ms=args.latency_ms,
            throttle=args.throttle,
            drop=args.drop,
            lost_reply=args.lost_reply,
            token_ttl_scale=args.token_ttl_scale,
            page_count_key=args.page_count_key,
            refuse_duplicates=not args.allow_duplicate_bill_no,
        )
    except ValueError as exc:
        p.error(str(exc))
    if args.tls_key and not args.tls_cert:
        p.error("--tls-key needs --tls-cert")
    credentials = SandboxCredentials.from_env(
        client_id=args.client_id,
        client_secret=args.client_secret,
        auth_code=args.auth_code,
        account_number=args.account_number,
        app_key=args.app_key,
        app_secret=args.app_secret,
        outer_instance_id=args.outer_instance_id,
    )
    try:
        serve(
            host=args.host,
            port=args.port,
            state=args.state,
            faults=faults,
            credentials=credentials,
            echo=lambda s: print(s, flush=True),
            certfile=args.tls_cert,
            keyfile=args.tls_key,
        )
    except ValueError as exc:  # an unreadable TLS certificate or key
        p.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
