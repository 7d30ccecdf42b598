"""initial canonical store

Revision ID: 0001
Revises:
Create Date: 2026-11-29 22:47:10.621846
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("normalized_name", sa.String(length=200), nullable=False),
        sa.Column("credit_code", sa.String(length=18), nullable=True),
        sa.Column("industry", sa.String(length=64), nullable=True),
        sa.Column("scale", sa.String(length=32), nullable=True),
        sa.Column("province", sa.String(length=32), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=True),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merged_into_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'inactive', 'merged')", name=op.f("ck_customers_status_known")
        ),
        sa.CheckConstraint("tier BETWEEN 1 AND 5", name=op.f("ck_customers_tier_range")),
        sa.ForeignKeyConstraint(
            ["merged_into_id"], ["customers.id"], name=op.f("fk_customers_merged_into_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("code", name=op.f("uq_customers_code")),
        sa.UniqueConstraint("credit_code", name=op.f("uq_customers_credit_code")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_normalized_name", ["normalized_name"], unique=False)

    op.create_table(
        "delivery_promises",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("line_kind", sa.String(length=8), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("material_code", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("ready_date", sa.Date(), nullable=False),
        sa.Column("promised_date", sa.Date(), nullable=False),
        sa.Column("first_part_quantity", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("first_part_date", sa.Date(), nullable=True),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "line_kind IN ('order', 'quote')", name=op.f("ck_delivery_promises_line_kind_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_promises")),
        sa.UniqueConstraint("line_kind", "line_id", name=op.f("uq_delivery_promises_line_kind_line_id")),
    )
    op.create_table(
        "delivery_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("canonical_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.BigInteger(), nullable=True),
        sa.Column("payload_hash", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'in_flight', 'retry', 'done', 'dead', 'quarantined', 'discarded')",
            name=op.f("ck_delivery_queue_state_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_queue")),
        sa.UniqueConstraint(
            "system", "kind", "canonical_id", name=op.f("uq_delivery_queue_system_kind_canonical_id")
        ),
    )
    with op.batch_alter_table("delivery_queue", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_queue_due", ["system", "state", "next_attempt_at"], unique=False)

    op.create_table(
        "external_bindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("canonical_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("external_bill_no", sa.String(length=64), nullable=True),
        sa.Column("payload_hash", sa.String(length=64), nullable=True),
        sa.Column("mapping_version", sa.String(length=32), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_bindings")),
        sa.UniqueConstraint(
            "system", "kind", "canonical_id", name=op.f("uq_external_bindings_system_kind_canonical_id")
        ),
        sa.UniqueConstraint(
            "system",
            "kind",
            "external_bill_no",
            name=op.f("uq_external_bindings_system_kind_external_bill_no"),
        ),
        sa.UniqueConstraint(
            "system", "kind", "external_id", name=op.f("uq_external_bindings_system_kind_external_id")
        ),
    )
    op.create_table(
        "inventory_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("rejected_count", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=500), nullable=True),
        sa.Column("checksum", sa.String(length=64), nullable=True),
        sa.Column("refused_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('loading', 'in_force', 'superseded', 'refused')",
            name=op.f("ck_inventory_snapshots_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_snapshots")),
    )
    with op.batch_alter_table("inventory_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inventory_snapshots_source"), ["source"], unique=False)

    op.create_table(
        "number_sequences",
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", "year", name=op.f("pk_number_sequences")),
    )
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("topic", sa.String(length=48), nullable=False),
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
    )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_events_created_at"), ["created_at"], unique=False)
        batch_op.create_index("ix_outbox_events_topic_id", ["topic", "id"], unique=False)

    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.String(length=200), nullable=True),
        sa.Column("erp_material_code", sa.String(length=64), nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        sa.Column("safety_stock", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("default_tax_rate", sa.Numeric(precision=5, scale=4), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("lead_time_days >= 0", name=op.f("ck_products_lead_time_non_negative")),
        sa.CheckConstraint("safety_stock >= 0", name=op.f("ck_products_safety_stock_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("erp_material_code", name=op.f("uq_products_erp_material_code")),
        sa.UniqueConstraint("sku", name=op.f("uq_products_sku")),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=128), nullable=False),
        sa.Column("canonical_id", sa.Integer(), nullable=True),
        sa.Column("source_ref", sa.String(length=500), nullable=True),
        sa.Column(
            "reasons",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_quarantine_stream_open", ["stream", "resolved_at"], unique=False)

    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )
    op.create_table(
        "sync_cursors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=True),
        sa.Column("value_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_cursors")),
        sa.UniqueConstraint("name", name=op.f("uq_sync_cursors_name")),
    )
    op.create_table(
        "sync_locks",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sync_locks")),
    )
    op.create_table(
        "warehouses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("erp_stock_code", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warehouses")),
        sa.UniqueConstraint("code", name=op.f("uq_warehouses_code")),
        sa.UniqueConstraint("erp_stock_code", name=op.f("uq_warehouses_erp_stock_code")),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=64), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("wechat", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=128), nullable=True),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_contacts_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("queue_item_id", sa.Integer(), nullable=True),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("canonical_id", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(length=64), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column(
            "context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["queue_item_id"],
            ["delivery_queue.id"],
            name=op.f("fk_dead_letters_queue_item_id_delivery_queue"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_table(
        "incoming_supply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("material_code", sa.String(length=64), nullable=False),
        sa.Column("warehouse_code", sa.String(length=32), nullable=True),
        sa.Column("quantity", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("eta", sa.Date(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["inventory_snapshots.id"],
            name=op.f("fk_incoming_supply_snapshot_id_inventory_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incoming_supply")),
    )
    with op.batch_alter_table("incoming_supply", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incoming_supply_material_code"), ["material_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_incoming_supply_source"), ["source"], unique=False)

    op.create_table(
        "inventory_positions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("material_code", sa.String(length=64), nullable=False),
        sa.Column("warehouse_code", sa.String(length=32), nullable=False),
        sa.Column("lot", sa.String(length=64), nullable=False),
        sa.Column("on_hand", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("reserved", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["inventory_snapshots.id"],
            name=op.f("fk_inventory_positions_snapshot_id_inventory_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_positions")),
        sa.UniqueConstraint(
            "snapshot_id",
            "material_code",
            "warehouse_code",
            "lot",
            name=op.f("uq_inventory_positions_snapshot_id_material_code_warehouse_code_lot"),
        ),
    )
    op.create_table(
        "opportunities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=8), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("expected_close", sa.Date(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lost_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "stage IN ('线索', '接触', '需求确认', '方案提交', '谈判', '成交', '输单')",
            name=op.f("ck_opportunities_stage_known"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_opportunities_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opportunities")),
        sa.UniqueConstraint("number", name=op.f("uq_opportunities_number")),
    )
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_opportunities_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "processed_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["inventory_snapshots.id"],
            name=op.f("fk_processed_files_snapshot_id_inventory_snapshots"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processed_files")),
        sa.UniqueConstraint("source", "path", "sha256", name=op.f("uq_processed_files_source_path_sha256")),
    )
    op.create_table(
        "reconciliation_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("canonical_id", sa.Integer(), nullable=True),
        sa.Column("canonical_number", sa.String(length=32), nullable=True),
        sa.Column("bill_no", sa.String(length=64), nullable=True),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("canonical_amount", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("erp_amount", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("canonical_tax", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("erp_tax", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('matched', 'missing_in_erp', 'amount_mismatch', 'duplicated_in_erp', 'unexpected_in_erp', 'pending', 'dead_lettered')",
            name=op.f("ck_reconciliation_results_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_results_run_id_reconciliation_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_results")),
    )
    with op.batch_alter_table("reconciliation_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reconciliation_results_run_id"), ["run_id"], unique=False)

    op.create_table(
        "interactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("opportunity_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "kind IN ('visit', 'call', 'wechat', 'email', 'meeting', 'feedback')",
            name=op.f("ck_interactions_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_interactions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["opportunity_id"],
            ["opportunities.id"],
            name=op.f("fk_interactions_opportunity_id_opportunities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interactions")),
    )
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_interactions_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_interactions_opportunity_id"), ["opportunity_id"], unique=False)

    op.create_table(
        "opportunity_stage_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("opportunity_id", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(length=8), nullable=True),
        sa.Column("to_stage", sa.String(length=8), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["opportunity_id"],
            ["opportunities.id"],
            name=op.f("fk_opportunity_stage_history_opportunity_id_opportunities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opportunity_stage_history")),
    )
    with op.batch_alter_table("opportunity_stage_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_opportunity_stage_history_opportunity_id"), ["opportunity_id"], unique=False
        )

    op.create_table(
        "quotes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("opportunity_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_quotes_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["opportunity_id"], ["opportunities.id"], name=op.f("fk_quotes_opportunity_id_opportunities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quotes")),
        sa.UniqueConstraint("number", name=op.f("uq_quotes_number")),
    )
    with op.batch_alter_table("quotes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quotes_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_quotes_opportunity_id"), ["opportunity_id"], unique=False)

    op.create_table(
        "quote_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("quote_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("quote_date", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total_net", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("total_tax", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'sent', 'accepted', 'rejected', 'superseded')",
            name=op.f("ck_quote_versions_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["quote_id"], ["quotes.id"], name=op.f("fk_quote_versions_quote_id_quotes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quote_versions")),
        sa.UniqueConstraint("quote_id", "version", name=op.f("uq_quote_versions_quote_id_version")),
    )
    with op.batch_alter_table("quote_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quote_versions_quote_id"), ["quote_id"], unique=False)

    op.create_table(
        "quote_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("quote_version_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("tax_rate", sa.Numeric(precision=5, scale=4), nullable=False),
        sa.Column("net_amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("tax_amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("requested_date", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_quote_lines_product_id_products")
        ),
        sa.ForeignKeyConstraint(
            ["quote_version_id"],
            ["quote_versions.id"],
            name=op.f("fk_quote_lines_quote_version_id_quote_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quote_lines")),
        sa.UniqueConstraint(
            "quote_version_id", "line_no", name=op.f("uq_quote_lines_quote_version_id_line_no")
        ),
    )
    with op.batch_alter_table("quote_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quote_lines_product_id"), ["product_id"], unique=False)

    op.create_table(
        "sales_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("opportunity_id", sa.Integer(), nullable=True),
        sa.Column("quote_version_id", sa.Integer(), nullable=True),
        sa.Column("order_date", sa.Date(), nullable=False),
        sa.Column("requested_date", sa.Date(), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("total_net", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("total_tax", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'partially_delivered', 'delivered', 'invoiced', 'cancelled')",
            name=op.f("ck_sales_orders_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_sales_orders_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["opportunity_id"],
            ["opportunities.id"],
            name=op.f("fk_sales_orders_opportunity_id_opportunities"),
        ),
        sa.ForeignKeyConstraint(
            ["quote_version_id"],
            ["quote_versions.id"],
            name=op.f("fk_sales_orders_quote_version_id_quote_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales_orders")),
        sa.UniqueConstraint("number", name=op.f("uq_sales_orders_number")),
    )
    with op.batch_alter_table("sales_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sales_orders_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("invoice_number", sa.String(length=32), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("invoice_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("total_net", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("total_tax", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("total_gross", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("red_letter_of_id", sa.Integer(), nullable=True),
        sa.Column("row_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "invoice_type IN ('vat_special', 'vat_normal')", name=op.f("ck_invoices_type_known")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'issued', 'red_letter', 'voided')", name=op.f("ck_invoices_status_known")
        ),
        sa.CheckConstraint(
            "abs(total_gross - total_net - total_tax) < 0.005", name=op.f("ck_invoices_gross_is_net_plus_tax")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_invoices_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["sales_orders.id"], name=op.f("fk_invoices_order_id_sales_orders")
        ),
        sa.ForeignKeyConstraint(
            ["red_letter_of_id"], ["invoices.id"], name=op.f("fk_invoices_red_letter_of_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("invoice_number", name=op.f("uq_invoices_invoice_number")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invoices_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_invoices_order_id"), ["order_id"], unique=False)
        batch_op.create_index("ix_invoices_status_issue_date", ["status", "issue_date"], unique=False)

    op.create_table(
        "sales_order_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("delivered_quantity", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("tax_rate", sa.Numeric(precision=5, scale=4), nullable=False),
        sa.Column("net_amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("tax_amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("requested_date", sa.Date(), nullable=True),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_sales_order_lines_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["sales_orders.id"],
            name=op.f("fk_sales_order_lines_order_id_sales_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_sales_order_lines_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales_order_lines")),
        sa.UniqueConstraint("order_id", "line_no", name=op.f("uq_sales_order_lines_order_id_line_no")),
    )
    with op.batch_alter_table("sales_order_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sales_order_lines_product_id"), ["product_id"], unique=False)

    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("order_line_id", sa.Integer(), nullable=True),
        sa.Column("quantity", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("tax_rate", sa.Numeric(precision=5, scale=4), nullable=False),
        sa.Column("net_amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("tax_amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_invoice_lines_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_line_id"],
            ["sales_order_lines.id"],
            name=op.f("fk_invoice_lines_order_line_id_sales_order_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_invoice_lines_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
        sa.UniqueConstraint("invoice_id", "line_no", name=op.f("uq_invoice_lines_invoice_id_line_no")),
    )
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invoice_lines_product_id"), ["product_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_lines_product_id"))

    op.drop_table("invoice_lines")
    with op.batch_alter_table("sales_order_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sales_order_lines_product_id"))

    op.drop_table("sales_order_lines")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_status_issue_date")
        batch_op.drop_index(batch_op.f("ix_invoices_order_id"))
        batch_op.drop_index(batch_op.f("ix_invoices_customer_id"))

    op.drop_table("invoices")
    with op.batch_alter_table("sales_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sales_orders_customer_id"))

    op.drop_table("sales_orders")
    with op.batch_alter_table("quote_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quote_lines_product_id"))

    op.drop_table("quote_lines")
    with op.batch_alter_table("quote_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quote_versions_quote_id"))

    op.drop_table("quote_versions")
    with op.batch_alter_table("quotes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quotes_opportunity_id"))
        batch_op.drop_index(batch_op.f("ix_quotes_customer_id"))

    op.drop_table("quotes")
    with op.batch_alter_table("opportunity_stage_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_opportunity_stage_history_opportunity_id"))

    op.drop_table("opportunity_stage_history")
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_interactions_opportunity_id"))
        batch_op.drop_index(batch_op.f("ix_interactions_customer_id"))

    op.drop_table("interactions")
    with op.batch_alter_table("reconciliation_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliation_results_run_id"))

    op.drop_table("reconciliation_results")
    op.drop_table("processed_files")
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_opportunities_customer_id"))

    op.drop_table("opportunities")
    op.drop_table("inventory_positions")
    with op.batch_alter_table("incoming_supply", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incoming_supply_source"))
        batch_op.drop_index(batch_op.f("ix_incoming_supply_material_code"))

    op.drop_table("incoming_supply")
    op.drop_table("dead_letters")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_customer_id"))

    op.drop_table("contacts")
    op.drop_table("warehouses")
    op.drop_table("sync_locks")
    op.drop_table("sync_cursors")
    op.drop_table("reconciliation_runs")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_stream_open")

    op.drop_table("quarantine")
    op.drop_table("products")
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_events_topic_id")
        batch_op.drop_index(batch_op.f("ix_outbox_events_created_at"))

    op.drop_table("outbox_events")
    op.drop_table("number_sequences")
    with op.batch_alter_table("inventory_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inventory_snapshots_source"))

    op.drop_table("inventory_snapshots")
    op.drop_table("external_bindings")
    with op.batch_alter_table("delivery_queue", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_queue_due")

    op.drop_table("delivery_queue")
    op.drop_table("delivery_promises")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_normalized_name")

    op.drop_table("customers")
