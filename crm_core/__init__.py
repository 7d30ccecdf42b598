"""The canonical CRM store: models, migrations, invariants and the transactional outbox."""

from crm_core import invariants as _invariants  # noqa: F401  (registers the flush rules)
