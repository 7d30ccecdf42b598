"""Is there a complete file waiting on an SFTP drop? (for the sensor that starts a pull when one lands)

Processed files are moved to ``archive/`` or ``failed/`` on the server, so every complete file still in
the drop is new work.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from connectors.filedrop import SftpDropClient
from connectors.filedrop.sftp import RemoteFile
from hub.config.models import ErpSftpCsvTemplate
from hub.inventory.sources import InventorySource, sftp_settings


def complete_files(source: InventorySource, *, where: str = "hub.yaml") -> list[RemoteFile]:
    """Complete files on the drop of ``source`` (empty for non-SFTP sources); nothing is downloaded."""
    template = source.template
    if not isinstance(template, ErpSftpCsvTemplate) or template.streams.inventory is None:
        return []
    with tempfile.TemporaryDirectory() as scratch:
        settings = sftp_settings(
            source.name, template, template.streams.inventory, local_dir=Path(scratch), where=where
        )
        with SftpDropClient(settings) as client:
            return client.list_complete_files()
