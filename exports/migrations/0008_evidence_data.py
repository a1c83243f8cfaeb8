"""Case data's companions (who set a legal hold, when) and the audit trail's hash chain.

Events written before this migration are sealed into the chain here, oldest first (by time,
then id): from now on a change to any of them is detected. The chain cannot prove what
happened to them before this migration ran.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


SEAL_BATCH = 1000


def seal_existing_events(apps, schema_editor):
    from exports.audit_chain import GENESIS, event_hash, json_safe

    AuditEvent = apps.get_model("exports", "AuditEvent")
    AuditChainHead = apps.get_model("exports", "AuditChainHead")
    seq, prev_hash, batch = 0, GENESIS, []
    for event in AuditEvent.objects.order_by("at", "id").iterator(chunk_size=SEAL_BATCH):
        seq += 1
        event.detail = json_safe(event.detail or {})
        event.seq, event.prev_hash = seq, prev_hash
        event.hash = prev_hash = event_hash(event)
        batch.append(event)
        if len(batch) >= SEAL_BATCH:
            AuditEvent.objects.bulk_update(batch, ["detail", "seq", "prev_hash", "hash"])
            batch = []
    if batch:
        AuditEvent.objects.bulk_update(batch, ["detail", "seq", "prev_hash", "hash"])
    AuditChainHead.objects.update_or_create(
        pk=1, defaults={"seq": seq, "hash": prev_hash if seq else ""}
    )


class Migration(migrations.Migration):

    dependencies = [
        ('exports', '0007_case_data'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditChainHead',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('seq', models.BigIntegerField(default=0)),
                ('hash', models.CharField(blank=True, max_length=64)),
                ('checked_at', models.DateTimeField(blank=True, null=True)),
                ('checked_ok', models.BooleanField(null=True)),
                ('checked_events', models.BigIntegerField(default=0)),
                ('checked_message', models.TextField(blank=True)),
            ],
        ),
        migrations.AddField(
            model_name='auditevent',
            name='hash',
            field=models.CharField(default='', editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name='auditevent',
            name='prev_hash',
            field=models.CharField(default='', editable=False, max_length=64, verbose_name='previous hash'),
        ),
        migrations.AddField(
            model_name='auditevent',
            name='seq',
            field=models.BigIntegerField(editable=False, null=True, unique=True, verbose_name='chain position'),
        ),
        migrations.AddField(
            model_name='exporttask',
            name='kept_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='hold set at'),
        ),
        migrations.AddField(
            model_name='exporttask',
            name='kept_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='hold set by'),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='action',
            field=models.CharField(choices=[('create', 'Create'), ('start', 'Start'), ('finish', 'Finish'), ('fail', 'Fail'), ('download', 'Download'), ('view', 'View'), ('cancel', 'Cancel'), ('delete', 'Delete'), ('expire', 'Expire'), ('retry', 'Retry'), ('keep', 'Keep'), ('release', 'Release')], max_length=16),
        ),
        migrations.RunPython(seal_existing_events, migrations.RunPython.noop),
    ]
