# Built concurrently: a fleet of a million devices keeps answering while it is made.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('inventory', '0008_headless_moves_to_operations'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='device',
            index=models.Index(fields=['tenant', 'id'], name='inventory_device_tenant_id'),
        ),
    ]
