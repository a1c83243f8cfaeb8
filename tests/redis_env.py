"""Pytest plugin (loaded with -p before Django starts): point the suite at its own Redis.

Tests use TEST_REDIS_URL when set, else a private embedded Redis; never the REDIS_URL of the
environment, since tests flush the database they use. Django reads REDIS_URL in settings, and
django-rq reads the queue settings at import, so this has to happen before Django is set up.
"""

import os
import tempfile
from pathlib import Path

_embedded = None


def _configure() -> None:
    global _embedded
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        from psimexport.embedded_redis import EmbeddedRedis

        _embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="psimexport-test-redis-")))
        url = _embedded.url
    os.environ["REDIS_URL"] = url
    os.environ["TEST_REDIS_URL"] = url


def pytest_unconfigure(config):
    if _embedded is not None:
        _embedded.stop()


_configure()
