"""vehicles: what a vehicle is (kind, catalogue type, battery, connectors, version), plates unique
without case, spaces or dashes, case-insensitive idTags (case-duplicates blocked), the vehicle-type
catalogue, the registration history, and where each vehicle is (vehicle_status)

Revision ID: 0004
Revises: 0003
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

DUPLICATE_REASON = "another vehicle registered this idTag first (idTags are case-insensitive, OCPP 1.6)"

# The catalogue shipped with the registry: figures as the manufacturers published them for each
# model at its launch (battery: the capacity the manufacturer quotes; maximum AC: the on-board
# charger; maximum DC: the peak fast-charging power). Source of each line: the manufacturer's
# press kit / technical data sheet named in the last column. Admins correct and add entries with
# PUT|POST /vehicles/types.
CATALOGUE = [
    # id, make, model, battery Wh, max AC W, max DC W, connectors, source
    ("renault-zoe-r135-ze50", "Renault", "Zoe R135 Z.E. 50", 52_000, 22_000, 50_000, "type2,ccs2",
     "Renault press kit, New ZOE (2019)"),
    ("volkswagen-id3-pro", "Volkswagen", "ID.3 Pro", 58_000, 11_000, 120_000, "type2,ccs2",
     "Volkswagen ID.3 technical data (2020)"),
    ("nissan-leaf-40", "Nissan", "Leaf 40 kWh", 40_000, 6_600, 50_000, "type2,chademo",
     "Nissan press kit, New Nissan LEAF (2018)"),
    ("nissan-leaf-e-plus", "Nissan", "Leaf e+ 62 kWh", 62_000, 6_600, 100_000, "type2,chademo",
     "Nissan press kit, Nissan LEAF e+ (2019)"),
    ("bmw-i3-120ah", "BMW", "i3 120 Ah", 42_200, 11_000, 50_000, "type2,ccs2",
     "BMW Group press release, BMW i3 120 Ah (2018)"),
    ("peugeot-e208-50", "Peugeot", "e-208 50 kWh", 50_000, 7_400, 100_000, "type2,ccs2",
     "Peugeot e-208 technical specifications (2019)"),
    ("fiat-500e-42", "Fiat", "500e 42 kWh", 42_000, 11_000, 85_000, "type2,ccs2",
     "Fiat press kit, New 500 (2020)"),
]


def plate_key(plate: str) -> str:
    return "".join(ch for ch in plate.upper() if ch not in " -")


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("vehicles", sa.Column("plate_key", sa.String(40)))
    op.add_column("vehicles", sa.Column("kind", sa.String(16), nullable=False, server_default="electric"))
    op.add_column("vehicles", sa.Column("vehicle_type_id", sa.String(64)))
    op.add_column("vehicles", sa.Column("battery_wh", sa.Integer))
    op.add_column("vehicles", sa.Column("connector_types", sa.String(128), nullable=False, server_default=""))
    op.add_column("vehicles", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.add_column("vehicles", sa.Column("updated_at", sa.DateTime(timezone=True)))
    vehicles = bind.execute(sa.text("SELECT id, plate, owner_id, created_at FROM vehicles "
                                    "ORDER BY created_at, id")).all()
    keys: set[str] = set()
    for vehicle_id, plate, _owner, _created in vehicles:
        key = plate_key(plate)
        if key in keys:  # "AB-1" and "AB 1" were two plates: the later keeps a key of its own
            key = f"{key}~{vehicle_id[:8]}"
        keys.add(key)
        bind.execute(sa.text("UPDATE vehicles SET plate_key = :k WHERE id = :i"), {"k": key, "i": vehicle_id})
    op.create_index("uq_vehicles_plate_key", "vehicles", ["plate_key"], unique=True)
    op.create_index("ix_vehicles_kind", "vehicles", ["kind"])

    op.add_column("id_tags", sa.Column("id_tag_folded", sa.String(20)))
    op.add_column("id_tags", sa.Column("blocked_reason", sa.String(200)))
    tags = bind.execute(sa.text("SELECT t.id_tag, t.vehicle_id FROM id_tags t JOIN vehicles v ON v.id = t.vehicle_id "
                                "ORDER BY t.created_at, v.created_at, t.id_tag")).all()
    seen: set[str] = set()
    now = datetime.now(UTC)
    for id_tag, vehicle_id in tags:
        folded = id_tag.upper()
        if folded in seen:  # the first registered keeps it; this one is blocked, and every site learns so
            bind.execute(sa.text("UPDATE id_tags SET id_tag_folded = :f, status = 'Blocked', blocked_reason = :r "
                                 "WHERE id_tag = :t"), {"f": folded, "r": DUPLICATE_REASON, "t": id_tag})
            bind.execute(sa.text("INSERT INTO authlist_changes (id_tag, status, vehicle_id, changed_at) "
                                 "VALUES (:t, 'Blocked', :v, :at)"), {"t": id_tag, "v": vehicle_id, "at": now})
        else:
            bind.execute(sa.text("UPDATE id_tags SET id_tag_folded = :f WHERE id_tag = :t"),
                         {"f": folded, "t": id_tag})
        seen.add(folded)
    op.create_index("uq_id_tags_folded", "id_tags", ["id_tag_folded"], unique=True,
                    sqlite_where=sa.text("blocked_reason IS NULL"), postgresql_where=sa.text("blocked_reason IS NULL"))

    types = op.create_table(
        "vehicle_types",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("make", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False, server_default="electric"),
        sa.Column("battery_wh", sa.Integer),
        sa.Column("max_ac_w", sa.Integer),
        sa.Column("max_dc_w", sa.Integer),
        sa.Column("connector_types", sa.String(128), nullable=False, server_default=""),
        sa.Column("source", sa.String(300)),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.UniqueConstraint("make", "model", name="uq_vehicle_types_make_model"),
    )
    op.bulk_insert(types, [
        {"id": i, "make": make, "model": model, "kind": "electric", "battery_wh": battery, "max_ac_w": ac,
         "max_dc_w": dc, "connector_types": connectors, "source": source, "version": 1}
        for i, make, model, battery, ac, dc, connectors, source in CATALOGUE])

    history = op.create_table(
        "vehicle_registration",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("vehicle_id", sa.String(36), nullable=False, index=True),
        sa.Column("plate", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(255)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("ended_because", sa.String(32)),
    )
    op.bulk_insert(history, [{"vehicle_id": vehicle_id, "plate": plate, "owner_id": owner,
                              "started_at": created if isinstance(created, datetime) else datetime.fromisoformat(
                                  str(created)), "ended_at": None, "ended_because": None}
                             for vehicle_id, plate, owner, created in vehicles])

    op.create_table(
        "vehicle_status",
        sa.Column("vehicle_id", sa.String(36), primary_key=True),
        sa.Column("site_id", sa.String(64)),
        sa.Column("charger_id", sa.String(64)),
        sa.Column("connector_id", sa.Integer),
        sa.Column("bay_id", sa.String(64)),
        sa.Column("parked_since", sa.DateTime(timezone=True)),
        sa.Column("left_at", sa.DateTime(timezone=True)),
        sa.Column("session_id", sa.String(100)),
        sa.Column("charging", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("charging_since", sa.DateTime(timezone=True)),
        sa.Column("energy_wh", sa.Integer, nullable=False, server_default="0"),
        # filled by parking's reservation events once they exist
        sa.Column("reservation_id", sa.String(64)),
        sa.Column("reserved_site_id", sa.String(64)),
        sa.Column("reserved_bay_id", sa.String(64)),
        sa.Column("reserved_from", sa.DateTime(timezone=True)),
        sa.Column("reserved_until", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_vehicle_status_place", "vehicle_status", ["site_id", "charger_id"])
    op.create_table(
        "status_bays",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("bay_id", sa.String(64), primary_key=True),
        sa.Column("charger_id", sa.String(64)),
        sa.Column("connector_id", sa.Integer),
        sa.Column("occupied", sa.Boolean),
        sa.Column("since", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    for table in ("status_bays", "vehicle_status", "vehicle_registration", "vehicle_types"):
        op.drop_table(table)
    op.drop_index("uq_id_tags_folded", table_name="id_tags")
    op.drop_column("id_tags", "blocked_reason")
    op.drop_column("id_tags", "id_tag_folded")
    op.drop_index("ix_vehicles_kind", table_name="vehicles")
    op.drop_index("uq_vehicles_plate_key", table_name="vehicles")
    for column in ("updated_at", "version", "connector_types", "battery_wh", "vehicle_type_id", "kind", "plate_key"):
        op.drop_column("vehicles", column)
