"""A local Kingdee KIS cloud gateway (ERP-APIS §5.2) for IT to try templates and for the tests.

Real HTTP on loopback, state in its own SQLite file, seeded base data, both auth flows with signature and
timestamp checks, KIS bill rules, and fault injection settable at start and through ``/__admin__/``.
"""

from connectors.kingdee.kis_sandbox.faults import FaultConfig
from connectors.kingdee.kis_sandbox.seed import DEFAULT_SEED, SandboxCredentials
from connectors.kingdee.kis_sandbox.server import KisSandbox, SandboxAdmin

__all__ = ["DEFAULT_SEED", "FaultConfig", "KisSandbox", "SandboxAdmin", "SandboxCredentials"]
