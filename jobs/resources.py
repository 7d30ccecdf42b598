"""The Dagster resource every asset uses: where the store and the project config are."""

import dagster as dg
import sqlalchemy as sa

from crm_core.db import database_url, make_engine
from hub.config.project import Project, load_project


class HubResource(dg.ConfigurableResource):  # type: ignore[misc]
    """Store URL and ``hub.yaml`` path. Empty values fall back to ``HUB_DATABASE_URL``/``HUB_HOME`` and
    ``HUB_CONFIG``, read when a run starts (never at import, so no secret is baked into definitions)."""

    database_url: str = ""
    config_path: str = ""

    def engine(self) -> sa.Engine:
        return make_engine(self.database_url or database_url())

    def project(self) -> Project:
        return load_project(self.config_path or None)


def latest_metadata(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> dict[str, object]:
    """Plain values of the metadata of ``key``'s latest materialization (empty when there is none)."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}
