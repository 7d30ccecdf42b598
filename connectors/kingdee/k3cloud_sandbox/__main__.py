"""``python -m connectors.kingdee.k3cloud_sandbox --port 8090 [--state PATH] [--seed N]``."""

from __future__ import annotations

import argparse
import json
import logging

from .server import K3CloudSandbox


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m connectors.kingdee.k3cloud_sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state", default="k3cloud-sandbox.sqlite", help="SQLite state file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base-path", default="/K3Cloud/")
    parser.add_argument("--settings", default="", help="JSON object of initial knobs (see config.py)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    settings = json.loads(args.settings) if args.settings else None
    sandbox = K3CloudSandbox(
        args.state, args.seed, host=args.host, port=args.port, base_path=args.base_path, settings=settings
    )
    creds = sandbox.credentials
    print(f"K/3 Cloud sandbox on http://{args.host}:{args.port}{sandbox.app.base_path}")  # noqa: T201
    print(f"  acct_id={creds.acct_id} username={creds.username} app_id={creds.app_id}")  # noqa: T201
    print(f"  password / app_secret: GET http://{args.host}:{args.port}/__admin__/credentials")  # noqa: T201
    sandbox.serve_forever()


if __name__ == "__main__":
    main()
