"""From a loaded ``hub.yaml`` to running parts: ERP sinks, push settings, schedules.

The CLI and the Dagster definitions both build their work through here, so a connection behaves the same
whichever way it is run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hub.config.models import KingdeeK3CloudTemplate, KingdeeKisTemplate
from hub.config.project import Project
from hub.errors import ConfigError
from hub.push.engine import PushSettings
from hub.push.sink import KisOutboundSink, OutboundSink
from mappings.kis_outbound import OutboundMapping
from mappings.kis_voucher import VoucherMapping

DEFAULT_PUSH_CRON = "0 2 * * *"
DEFAULT_TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class PushTarget:
    """One ERP connection with an enabled ``invoiced_states`` push stream."""

    name: str
    kind: str
    cron: str
    timezone: str
    settings: PushSettings


def push_targets(project: Project) -> list[PushTarget]:
    targets = []
    for name, template in project.connections.items():
        if not isinstance(template, KingdeeKisTemplate | KingdeeK3CloudTemplate):
            continue
        stream = template.streams.invoiced_states
        if stream is None or not stream.enabled:
            continue
        schedule = template.schedule
        targets.append(
            PushTarget(
                name=name,
                kind=template.kind,
                cron=schedule.cron if schedule else DEFAULT_PUSH_CRON,
                timezone=schedule.timezone if schedule else DEFAULT_TZ,
                settings=PushSettings(
                    mapping=OutboundMapping(
                        bill_no_pattern=stream.bill_number_pattern,
                        stock_code=stream.stock_number,
                        version=str(stream.mapping.version),
                    ),
                    batch_size=stream.batch_size,
                    senders=stream.senders,
                    block_threshold=stream.validation.blocking_threshold,
                ),
            )
        )
    return targets


def push_target(project: Project, name: str) -> PushTarget:
    for target in push_targets(project):
        if target.name == name:
            return target
    known = ", ".join(t.name for t in push_targets(project)) or "none"
    raise ConfigError(f"{project.path}: no connection {name!r} with an enabled push stream (known: {known})")


@contextmanager
def open_sink(project: Project, name: str) -> Iterator[OutboundSink]:
    """The ERP sink of connection ``name`` (secrets resolved now, from the environment)."""
    from connectors.kingdee.kis.client import KisClient
    from hub.config.kis import kis_settings

    template = project.connection(name)
    if isinstance(template, KingdeeK3CloudTemplate):
        with _k3cloud_sink(project, name, template) as sink:
            yield sink
        return
    if not isinstance(template, KingdeeKisTemplate):
        raise ConfigError(f"{project.path}: connection {name!r} is a {template.kind}, not an ERP push target")
    client = KisClient(kis_settings(name, template, where=str(project.path)))
    stream = template.streams.invoiced_states
    voucher = stream.receivable_voucher if stream is not None else None
    vouchers = (
        VoucherMapping(
            voucher.voucher_group, voucher.debit_account, voucher.credit_account, voucher.tax_account
        )
        if voucher is not None and voucher.enabled
        else None
    )
    try:
        yield KisOutboundSink(client, vouchers)
    finally:
        client.close()


@contextmanager
def _k3cloud_sink(project: Project, name: str, template: KingdeeK3CloudTemplate) -> Iterator[OutboundSink]:
    """K/3 Cloud: SAL_OUTSTOCK in the connection's organisation, from the stream's warehouse."""
    from connectors.kingdee.k3cloud.client import K3CloudClient
    from hub.config.k3cloud import k3cloud_outbound_options, k3cloud_settings
    from hub.push.k3cloud_sink import K3CloudOutboundSink

    options = k3cloud_outbound_options(name, template, where=str(project.path))
    client = K3CloudClient(k3cloud_settings(name, template, where=str(project.path)))
    try:
        yield K3CloudOutboundSink(client, options, page_size=template.connection.page_size)
    finally:
        client.logout()
