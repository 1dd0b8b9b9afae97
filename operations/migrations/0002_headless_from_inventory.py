"""Headless operations come from the inventory app, whose migration 0008 renamed their table
to ``operations_headlessoperation``: this takes the model into the state only."""

import django.core.validators
import django.db.models.deletion
import operations.models.headless
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('commands', '0004_no_fk_constraints'),
        ('inventory', '0008_headless_moves_to_operations'),
        ('operations', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='HeadlessOperation',
                    fields=[
                        ('id', models.CharField(default=operations.models.headless.new_headless_id, editable=False, max_length=40, primary_key=True, serialize=False)),
                        ('operation_type', models.CharField(max_length=64, validators=[django.core.validators.RegexValidator('^[A-Za-z0-9_.\\-]{1,64}$', "must be 1 to 64 letters, digits, '_', '-' or '.' (for example 'firmware_update')")])),
                        ('scheduled_at', models.DateTimeField()),
                        ('parameters', models.JSONField(blank=True, default=dict)),
                        ('priority', models.PositiveSmallIntegerField(choices=[(0, 'low'), (1, 'normal'), (2, 'high'), (3, 'critical')], default=1)),
                        ('status', models.CharField(choices=[('scheduled', 'Scheduled'), ('pending', 'Pending'), ('running', 'Running'), ('completed', 'Completed'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='scheduled', max_length=16)),
                        ('reason', models.TextField(blank=True)),
                        ('attempts', models.PositiveSmallIntegerField(default=0)),
                        ('claimed_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('created_by', models.CharField(blank=True, max_length=200)),
                        ('command', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='commands.commandstatus')),
                        ('device', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='headless_operations', to='inventory.device')),
                        ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='inventory.tenant')),
                    ],
                    options={
                        'verbose_name': 'headless operation',
                        'ordering': ['-created_at', 'id'],
                    },
                ),
                migrations.CreateModel(
                    name='UpcomingHeadlessRun',
                    fields=[
                    ],
                    options={
                        'verbose_name': 'upcoming headless run',
                        'ordering': ['scheduled_at', 'id'],
                        'proxy': True,
                        'indexes': [],
                        'constraints': [],
                    },
                    bases=('operations.headlessoperation',),
                ),
                migrations.AddIndex(
                    model_name='headlessoperation',
                    index=models.Index(fields=['tenant', '-created_at'], name='headless_tenant_created'),
                ),
                migrations.AddIndex(
                    model_name='headlessoperation',
                    index=models.Index(condition=models.Q(('status', 'scheduled')), fields=['scheduled_at'], name='headless_due'),
                ),
                migrations.AddIndex(
                    model_name='headlessoperation',
                    index=models.Index(condition=models.Q(('status__in', ['pending', 'running'])), fields=['command'], name='headless_active'),
                ),
            ],
        ),
    ]
