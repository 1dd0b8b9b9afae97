# Built concurrently: devices keep reporting into a table of millions of rows while it is made.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('commands', '0005_rollouts'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='commandstatus',
            index=models.Index(fields=['operation', 'id'], include=('tenant',), name='commands_operation_id'),
        ),
    ]
