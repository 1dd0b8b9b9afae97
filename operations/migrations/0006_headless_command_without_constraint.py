import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Before the command table is partitioned (commands 0007): a foreign key cannot point
    at it, since its unique key becomes (id, created_on)."""

    dependencies = [
        ("commands", "0006_operation_id_index"),
        ("operations", "0005_stop_requested"),
    ]

    operations = [
        migrations.AlterField(
            model_name="headlessoperation",
            name="command",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="commands.commandstatus",
            ),
        ),
    ]
