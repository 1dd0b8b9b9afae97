"""Headless operations move to the operations app (they run through commands, a floor above
inventory). The table is renamed, not copied: rows, indexes and constraints stay as they are;
``operations.0002_headless_from_inventory`` takes the model into its state."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0007_device_tenant_without_constraint'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterModelTable(name='headlessoperation', table='operations_headlessoperation'),
            ],
            state_operations=[
                migrations.DeleteModel(name='UpcomingHeadlessRun'),
                migrations.DeleteModel(name='HeadlessOperation'),
            ],
        ),
    ]
