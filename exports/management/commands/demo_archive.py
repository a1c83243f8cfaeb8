import signal

from django.core.management.base import BaseCommand

from exports import demo


class Command(BaseCommand):
    help = (
        "Generate the demo camera's archive (H.264 + AAC, 10 s Frigate-layout segments, about "
        "10 minutes up to now, under $PSIMEXPORT_DATA/demo/) and register it as camera 1."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--auto",
            action="store_true",
            help="what `make run` does: create the demo only if PSIMEXPORT_DEMO is on and no "
            "camera exists; refresh it if the demo camera is in use; otherwise do nothing",
        )
        parser.add_argument(
            "--follow",
            action="store_true",
            help="keep appending a segment every 10 seconds until interrupted",
        )

    def handle(self, *args, follow=False, auto=False, **options):
        if auto and not demo.demo_wanted():
            return
        camera = demo.ensure_demo_camera()
        summary = demo.refresh_demo(camera)
        self.stdout.write(f"demo camera {camera.camera_id}: {summary}")
        if follow:
            stopping = []
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stopping.append(True))
            demo.follow(camera, stop=lambda: bool(stopping))
