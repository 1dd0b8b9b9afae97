"""``last_seen`` is written by each web process itself now (inventory/presence.py): the
periodic task that flushed a Redis hash of sightings is gone, and so is its beat entry, which
django-celery-beat's database scheduler would otherwise keep sending to no task."""

from django.db import migrations


def drop_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task="commands.tasks.flush_last_seen").delete()


class Migration(migrations.Migration):

    dependencies = [
        ("inventory", "0008_headless_moves_to_operations"),
        ("django_celery_beat", "0001_initial"),
    ]

    operations = [migrations.RunPython(drop_schedule, migrations.RunPython.noop)]
