"""``change_xid`` on devices and group memberships: the watermark of device changes
(``inventory.changes``). Plain SQL: Django never reads or writes the column, PostgreSQL fills
it (a default on insert, a trigger on update of the columns a device query selects), so no
code path that writes devices (the API, the bulk COPY, the admin, a raw UPDATE) can forget it.

Existing rows get 0 (a constant default is stored in the catalogue, no table rewrite); new
rows the inserting transaction's id.
"""

from django.db import migrations

TRACKED = ("tenant_id", "device_id", "name", "serial", "model", "os", "os_version", "state", "timezone", "tags")
CURRENT_XID = "(pg_current_xact_id()::text::bigint)"
CHANGED = " OR ".join(f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column in TRACKED)

FORWARD = f"""
ALTER TABLE inventory_device ADD COLUMN change_xid bigint NOT NULL DEFAULT 0;
ALTER TABLE inventory_device ALTER COLUMN change_xid SET DEFAULT {CURRENT_XID};
ALTER TABLE inventory_device_groups ADD COLUMN change_xid bigint NOT NULL DEFAULT 0;
ALTER TABLE inventory_device_groups ALTER COLUMN change_xid SET DEFAULT {CURRENT_XID};
CREATE INDEX inventory_device_change ON inventory_device (change_xid);
CREATE INDEX inventory_device_groups_change ON inventory_device_groups (change_xid);
CREATE FUNCTION inventory_device_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_xid := {CURRENT_XID};
    RETURN NEW;
END $$;
CREATE TRIGGER inventory_device_changed BEFORE UPDATE OF {", ".join(TRACKED)} ON inventory_device
    FOR EACH ROW WHEN ({CHANGED}) EXECUTE FUNCTION inventory_device_changed();
"""

BACKWARD = """
DROP TRIGGER inventory_device_changed ON inventory_device;
DROP FUNCTION inventory_device_changed();
ALTER TABLE inventory_device_groups DROP COLUMN change_xid;
ALTER TABLE inventory_device DROP COLUMN change_xid;
"""


class Migration(migrations.Migration):
    dependencies = [("inventory", "0012_devices_off_pseudo_zones")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
