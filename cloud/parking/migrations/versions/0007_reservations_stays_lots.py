"""parking: reservations, stays (parking_history), lot configuration, the vehicle projection; slot ids and
service state on bays; a per-site reservation counter (the serialising lock and OCPP reservationId)

Revision ID: 0007
Revises: 0006

``bays`` is the table of slots (kept, with a ``slot_id`` added and filled for existing rows). On
PostgreSQL an exclusion constraint (btree_gist) refuses two holding reservations of one bay whose
windows overlap, beside the per-site lock the use case takes.
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

SLOT_NAMESPACE = uuid.UUID("6f1d3b52-5c0e-4a55-9d59-6a0b1a8e2f14")


def slot_id_of(site_id: str, bay_id: str) -> str:
    return str(uuid.uuid5(SLOT_NAMESPACE, f"{site_id}\x1f{bay_id}"))


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("bays") as batch:
        batch.add_column(sa.Column("slot_id", sa.String(36)))
        batch.add_column(sa.Column("out_of_service", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("service_reason", sa.String(200)))
        batch.add_column(sa.Column("service_changed_at", sa.DateTime(timezone=True)))
    rows = bind.execute(sa.text("SELECT site_id, bay_id FROM bays")).fetchall()
    for site_id, bay_id in rows:
        bind.execute(sa.text("UPDATE bays SET slot_id = :slot WHERE site_id = :site AND bay_id = :bay"),
                     {"slot": slot_id_of(site_id, bay_id), "site": site_id, "bay": bay_id})
    op.create_index("ix_bays_slot_id", "bays", ["slot_id"], unique=True)
    # bay usage in the glossary's words (MQTT contract 1.1): the old idle is blocked, the old overstay idle
    bind.execute(sa.text("UPDATE bays SET usage = CASE usage WHEN 'idle' THEN 'blocked' WHEN 'overstay' THEN 'idle' "
                         "ELSE usage END WHERE usage IN ('idle', 'overstay')"))
    with op.batch_alter_table("parking_sites") as batch:
        batch.add_column(sa.Column("reservation_seq", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("status_version", sa.BigInteger, nullable=False, server_default="0"))

    op.create_table(
        "parking_reservations",
        sa.Column("reservation_id", sa.String(36), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("bay_id", sa.String(64), nullable=False),
        sa.Column("slot_id", sa.String(36), nullable=False),
        sa.Column("bay_type", sa.String(16), nullable=False),
        sa.Column("vehicle_id", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("charger_id", sa.String(64)),
        sa.Column("connector_id", sa.Integer),
        sa.Column("ocpp_reservation_id", sa.Integer),
        sa.Column("id_tag", sa.String(20)),
        sa.Column("charger_status", sa.String(32)),
        sa.Column("charger_detail", sa.String(500)),
        sa.Column("reserve_command_id", sa.String(36)),
        sa.Column("reserve_sent_at", sa.DateTime(timezone=True)),
        sa.Column("cancel_wanted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("cancel_command_id", sa.String(36)),
        sa.Column("cancel_sent_at", sa.DateTime(timezone=True)),
        sa.Column("cancel_status", sa.String(32)),
        sa.Column("fulfilled_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("stay_id", sa.String(36)),
        sa.CheckConstraint("ends_at > starts_at", name="ck_parking_reservations_window"),
    )
    op.create_index("ix_parking_reservations_bay", "parking_reservations", ["site_id", "bay_id", "starts_at"])
    op.create_index("ix_parking_reservations_vehicle", "parking_reservations", ["vehicle_id", "starts_at"])
    op.create_index("ix_parking_reservations_status", "parking_reservations", ["status", "starts_at"])
    if bind.dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE parking_reservations ADD CONSTRAINT ex_parking_reservations_overlap EXCLUDE USING gist "
            "(site_id WITH =, bay_id WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&) "
            "WHERE (status IN ('reserved', 'fulfilled'))")

    op.create_table(
        "parking_history",
        sa.Column("stay_id", sa.String(36), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("bay_id", sa.String(64), nullable=False),
        sa.Column("slot_id", sa.String(36), nullable=False),
        sa.Column("bay_type", sa.String(16), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("departed_at", sa.DateTime(timezone=True)),
        sa.Column("reservation_id", sa.String(36)),
        sa.Column("vehicle_id", sa.String(64)),
        sa.Column("owner_id", sa.String(64)),
        sa.Column("charger_id", sa.String(64)),
        sa.Column("connector_id", sa.Integer),
        sa.Column("limit_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("limit_kind", sa.String(16), nullable=False),
        sa.Column("overstay_at", sa.DateTime(timezone=True)),
        sa.Column("overstay_minutes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("session_ids", sa.JSON, nullable=False),
        sa.Column("sensor_known", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("closed_by", sa.String(16)),
    )
    op.create_index("ix_parking_history_bay", "parking_history", ["site_id", "bay_id", "departed_at"])
    op.create_index("ix_parking_history_vehicle", "parking_history", ["vehicle_id", "arrived_at"])

    op.create_table(
        "lot_configuration",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(120)),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("opening_hours", sa.JSON),
        sa.Column("reservable_types", sa.JSON, nullable=False),
        sa.Column("max_reservation_minutes", sa.Integer, nullable=False),
        sa.Column("booking_horizon_days", sa.Integer, nullable=False),
        sa.Column("arrival_grace_minutes", sa.Integer, nullable=False),
        sa.Column("max_stay_minutes", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "parking_vehicles",
        sa.Column("vehicle_id", sa.String(64), primary_key=True),
        sa.Column("owner_id", sa.String(64)),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("id_tag", sa.String(20)),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("parking_vehicles")
    op.drop_table("lot_configuration")
    op.drop_table("parking_history")
    op.drop_table("parking_reservations")
    with op.batch_alter_table("parking_sites") as batch:
        batch.drop_column("reservation_seq")
        batch.drop_column("status_version")
    op.drop_index("ix_bays_slot_id", "bays")
    with op.batch_alter_table("bays") as batch:
        batch.drop_column("service_changed_at")
        batch.drop_column("service_reason")
        batch.drop_column("out_of_service")
        batch.drop_column("slot_id")
