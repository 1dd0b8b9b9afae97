# A key belongs to the principal that sent it (CONTRACT §11, issue 23 item 5): the key's
# identity becomes (tenant, principal, key), so another API key or device of the tenant never
# gets a kept answer, which may hold a secret shown once.
#
# Rows written before this migration name no principal: nobody could be given their answers.
# They are emptied first (TRUNCATE is instant whatever the table holds, and leaves the new
# unique index nothing to build on): a retry that spans the upgrade runs anew, as after the
# TTL. A claim still held by a process of the old release loses its row, so that request keeps
# nothing and is rolled back (409): its work is never committed under a key nobody owns. The
# reverse empties the table too, so the old (tenant, key) constraint can be built again.

from django.db import migrations, models

TRUNCATE = "TRUNCATE TABLE idempotency_idempotentrequest"


class Migration(migrations.Migration):

    dependencies = [
        ('idempotency', '0001_initial'),
    ]

    operations = [
        migrations.RunSQL(TRUNCATE, reverse_sql=migrations.RunSQL.noop),
        migrations.RemoveConstraint(
            model_name='idempotentrequest',
            name='idempotency_idempotentrequest_unique_tenant_key',
        ),
        migrations.AddField(
            model_name='idempotentrequest',
            name='principal',
            field=models.CharField(default='', max_length=200),
            preserve_default=False,
        ),
        migrations.AddConstraint(
            model_name='idempotentrequest',
            constraint=models.UniqueConstraint(fields=('tenant_id', 'principal', 'key'), name='idempotency_idempotentrequest_unique_tenant_principal_key'),
        ),
        migrations.RunSQL(migrations.RunSQL.noop, reverse_sql=TRUNCATE),
    ]
