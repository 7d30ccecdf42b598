"""A local Kingdee K/3 Cloud (云星空) WebAPI sandbox (ERP-APIS §5.1): real HTTP, SQLite state, faults.

Use it as ``hub sandbox k3cloud --port N``, ``python -m connectors.kingdee.k3cloud_sandbox`` or in-process::

    sandbox = K3CloudSandbox("state.sqlite", seed=7)
    base_url = sandbox.start()      # http://127.0.0.1:<port>/K3Cloud/
    ...
    sandbox.stop()

Admin endpoints (loopback, unauthenticated): ``GET/PUT /__admin__/faults``, ``GET /__admin__/ledger``,
``POST /__admin__/seed``, ``POST /__admin__/recycle``, ``POST /__admin__/reset``, ``POST /__admin__/clock``,
``GET /__admin__/stats``, ``GET /__admin__/credentials``.
"""

from .app import SandboxApp
from .seed import Credentials, credentials_for
from .server import K3CloudSandbox

__all__ = ["Credentials", "K3CloudSandbox", "SandboxApp", "credentials_for"]
