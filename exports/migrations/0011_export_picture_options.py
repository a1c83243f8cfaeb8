from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("exports", "0010_export_parts"),
    ]

    operations = [
        migrations.AddField(
            model_name="exporttask",
            name="overlay",
            field=models.BooleanField(default=False, help_text="Camera name and time drawn in."),
        ),
        migrations.AddField(
            model_name="exporttask",
            name="overlay_position",
            field=models.CharField(blank=True, default="top-left", max_length=12),
        ),
        migrations.AddField(
            model_name="exporttask",
            name="overlay_zone",
            field=models.CharField(
                blank=True, default="camera", help_text="camera: the camera's zone; utc", max_length=8
            ),
        ),
        migrations.AddField(
            model_name="exporttask",
            name="overlay_ms",
            field=models.BooleanField(default=False, verbose_name="overlay milliseconds"),
        ),
        migrations.AddField(
            model_name="exporttask",
            name="speed",
            field=models.PositiveSmallIntegerField(
                blank=True, help_text="Timelapse: N times faster (2-1000); empty: real time.", null=True
            ),
        ),
    ]
