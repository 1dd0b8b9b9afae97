# The console's device search by id prefix (issue 26). Built concurrently: a fleet of a million
# devices keeps answering while it is made.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("inventory", "0013_device_changes"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="device",
            index=models.Index(
                fields=["device_id"], name="inventory_device_id_prefix", opclasses=["varchar_pattern_ops"]
            ),
        ),
    ]
