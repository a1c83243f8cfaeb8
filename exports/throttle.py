"""Limits on failed sign-ins: per user name and per address, checked before any password hash.

Every way in counts: the login page, the admin's login, HTTP Basic and API tokens. A failure
adds one to two counters (the user name tried, the caller's address) in a fixed one-minute
window; once either holds PSIMEXPORT_LOGIN_FAILURES_PER_MINUTE, further attempts for that
name or from that address are refused with 429 and Retry-After without checking the password,
so a flood of wrong passwords costs a Redis round trip each instead of a PBKDF2 hash.
Credentials that are already known good (a valid token, a cached Basic credential) are never
refused, so a flood from a shared address does not lock out working clients.

The counters live in Redis, shared by every web process. When Redis cannot be reached the
limiter counts the failures of the last minute kept in the database instead (every counted
failure is written there for the admin anyway), so the limit still holds across all web
processes, and it tries Redis again after a few seconds: a Redis outage neither opens the
door nor locks everybody out. Should the database fail too, this process counts on its own.
"""

import hashlib
import logging
import threading
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
REDIS_RETRY_SECONDS = 5
KEY_PREFIX = "psimexport:loginfail:"


class Throttled(Exception):
    """Too many failed sign-ins for this user name or from this address (429)."""

    def __init__(self, retry_after: int):
        super().__init__(
            f"too many failed sign-ins; try again in {retry_after} s"
        )
        self.retry_after = retry_after


def _keys(username: str | None, address: str | None) -> list[str]:
    keys = []
    if username:
        digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        keys.append(f"{KEY_PREFIX}user:{digest}")
    if address:
        keys.append(f"{KEY_PREFIX}addr:{address}")
    return keys


class _DatabaseCounters:
    """The fallback while Redis is unreachable: the failures of the last minute (a sliding
    window) as kept in LoginFailure, shared by every process."""

    def waits(self, username, address, limit) -> list[int]:
        """Seconds until each of the user name and address that reached the limit may try
        again: until the limit-th newest failure leaves the window."""
        waits = []
        for recent in self._recent(username, address):
            oldest_counted = recent.order_by("-at").values_list("at", flat=True)[limit - 1 : limit]
            for at in oldest_counted:
                left = at.timestamp() + WINDOW_SECONDS - timezone.now().timestamp()
                waits.append(max(1, int(left) + 1))
        return waits

    def counts(self, username, address) -> list[int]:
        return [recent.count() for recent in self._recent(username, address)]

    def _recent(self, username, address):
        from exports.models import LoginFailure

        since = timezone.now() - timedelta(seconds=WINDOW_SECONDS)
        recent = LoginFailure.objects.filter(at__gt=since)
        if username:
            yield recent.filter(username=username[:150])
        if address:
            yield recent.filter(remote_addr=address)


class _LocalCounters:
    """The last fallback (Redis and the database unreachable): fixed windows, in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}

    def counts(self, keys):
        now = time.monotonic()
        with self._lock:
            return [self._live(key, now) for key in keys]

    def add(self, keys):
        now = time.monotonic()
        with self._lock:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            result = []
            for key in keys:
                count, ends = self._live(key, now)
                if count == 0:
                    ends = now + WINDOW_SECONDS
                self._counts[key] = (count + 1, ends)
                result.append((count + 1, ends - now))
            return result

    def _live(self, key, now):
        count, ends = self._counts.get(key, (0, now))
        return (count, ends) if ends > now else (0, now)

    def clear(self):
        with self._lock:
            self._counts.clear()


class LoginLimiter:
    def __init__(self):
        self.shared = _DatabaseCounters()
        self.local = _LocalCounters()
        self._clients: dict[str, redis.Redis] = {}
        self._redis_down_until = 0.0

    @property
    def limit(self) -> int:
        return settings.PSIMEXPORT_LOGIN_FAILURES_PER_MINUTE

    def retry_after(self, username: str | None, address: str | None) -> int | None:
        """Seconds until this user name and address may try again, or None if they may now."""
        keys = _keys(username, address)
        if not keys:
            return None
        client = self._redis()
        if client is not None:
            try:
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.get(key)
                    pipe.ttl(key)
                replies = pipe.execute()
                waits = [
                    max(1, int(ttl if ttl and ttl > 0 else WINDOW_SECONDS))
                    for count, ttl in zip(replies[::2], replies[1::2], strict=True)
                    if count is not None and int(count) >= self.limit
                ]
                return max(waits) if waits else None
            except redis.RedisError as error:
                self._redis_failed(error)
        try:
            waits = self.shared.waits(username, address, self.limit)
            return max(waits) if waits else None
        except DatabaseError as error:
            log.warning("login limits: database unreachable too (%s); counting here", error)
        now = time.monotonic()
        waits = [
            max(1, int(ends - now) + 1)
            for count, ends in self.local.counts(keys)
            if count >= self.limit
        ]
        return max(waits) if waits else None

    def add_failure(self, username: str | None, address: str | None) -> bool:
        """Count one failure; True when it reached the limit (the moment worth auditing)."""
        keys = _keys(username, address)
        if not keys:
            return False
        client = self._redis()
        if client is not None:
            try:
                pipe = client.pipeline(transaction=True)
                for key in keys:
                    pipe.set(key, 0, ex=WINDOW_SECONDS, nx=True)
                    pipe.incr(key)
                counts = pipe.execute()[1::2]
                return any(int(count) == self.limit for count in counts)
            except redis.RedisError as error:
                self._redis_failed(error)
        try:  # this failure's row is written next (record_failure)
            return any(count + 1 == self.limit for count in self.shared.counts(username, address))
        except DatabaseError:
            return any(count == self.limit for count, _ in self.local.add(keys))

    def _redis(self):
        if time.monotonic() < self._redis_down_until:
            return None
        url = settings.REDIS_URL
        client = self._clients.get(url)
        if client is None:
            # Short timeouts: a Redis that hangs must not hold a login for long.
            client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._clients = {url: client}
        return client

    def _redis_failed(self, error) -> None:
        if time.monotonic() >= self._redis_down_until:
            log.warning("login limits: Redis unreachable (%s); counting in the database", error)
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS


limiter = LoginLimiter()


def check(username: str | None, address: str | None) -> None:
    """Raise Throttled when this user name or address has failed too often this minute."""
    wait = limiter.retry_after(username, address)
    if wait is not None:
        raise Throttled(wait)


def record_failure(username: str | None, address: str | None, kind: str) -> None:
    """Count a failed sign-in and keep it in the admin's list of failed sign-ins."""
    from exports.models import LoginFailure

    reached = limiter.add_failure(username, address)
    if reached:
        log.warning(
            "login limits: %s failures in a minute for user %r or address %s; refusing more",
            limiter.limit, (username or "")[:150], address,
        )
    LoginFailure.objects.create(
        username=(username or "")[:150], remote_addr=address, kind=kind, limit_reached=reached
    )
