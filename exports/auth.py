"""Who is calling the JSON API: Token, HTTP Basic, the page session, or (opt-in) anonymous.

Basic auth checks a Django password, which is slow by design (PBKDF2), so a verified
credential is remembered for a short while in this process. The cache key is an HMAC of the
username and password under the SECRET_KEY (the password itself is never stored), and an
entry only counts while the user's stored password hash is unchanged, so a password change
or deactivation takes effect at once.
"""

import base64
import binascii
import hmac
import ipaddress
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone

from exports import throttle
from exports.models import ApiToken
from exports.tasks import ApiAnonymousUser

CHALLENGE = 'Basic realm="psimexport", Token realm="psimexport"'
BASIC_CACHE_SECONDS = 60
BASIC_CACHE_SIZE = 1024
TOKEN_TOUCH_INTERVAL = timedelta(minutes=5)


class AuthenticationFailed(Exception):
    """No or bad credentials (401)."""


class CsrfFailed(Exception):
    """A session-authenticated unsafe request without a valid CSRF token (403)."""


class _BasicCache:
    def __init__(self):
        self._entries: dict[bytes, tuple[int, str, float]] = {}
        self._lock = threading.Lock()
        self._verifying: dict[bytes, threading.Lock] = {}

    def lock_for(self, key: bytes) -> threading.Lock:
        with self._lock:
            if len(self._verifying) > BASIC_CACHE_SIZE:
                self._verifying = {k: v for k, v in self._verifying.items() if v.locked()}
            return self._verifying.setdefault(key, threading.Lock())

    @staticmethod
    def key(username: str, password: str) -> bytes:
        secret = settings.SECRET_KEY.encode()
        return hmac.new(secret, f"{username}\0{password}".encode(), "sha256").digest()

    def get(self, key: bytes):
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[2] < time.monotonic():
            return None
        return entry[0], entry[1]

    def put(self, key: bytes, user) -> None:
        with self._lock:
            if len(self._entries) >= BASIC_CACHE_SIZE:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[2] >= now}
                if len(self._entries) >= BASIC_CACHE_SIZE:
                    self._entries.clear()
            self._entries[key] = (user.pk, user.password, time.monotonic() + BASIC_CACHE_SECONDS)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


basic_cache = _BasicCache()


def authenticate_api_request(request):
    """The calling user. Raises AuthenticationFailed (401), throttle.Throttled (429: too many
    failed attempts) or CsrfFailed (403)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, credentials = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme in ("token", "bearer"):
            return _token_user(request, credentials.strip())
        if scheme == "basic":
            return _basic_user(request, credentials.strip())
        raise AuthenticationFailed(
            f"unsupported Authorization scheme {scheme[:20]!r}; use Token or Basic"
        )
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active:
        _enforce_csrf(request)
        return user
    if settings.PSIMEXPORT_ALLOW_ANONYMOUS:
        return ApiAnonymousUser()
    raise AuthenticationFailed(
        "authentication required: send 'Authorization: Token <key>' or HTTP Basic credentials"
    )


def _token_user(request, key: str):
    # A valid token is never refused; only guesses count against the caller's address.
    token = next(iter(ApiToken.objects.for_key(key)[:1]), None) if 0 < len(key) <= 200 else None
    if token is None:
        address = client_addr(request)
        throttle.check(None, address)
        throttle.record_failure(None, address, "token")
        raise AuthenticationFailed("invalid API token")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def _basic_user(request, credentials: str):
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationFailed("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username or "\x00" in decoded:
        raise AuthenticationFailed("malformed Basic credentials")
    key = basic_cache.key(username, password)
    user = _cached_basic_user(key)
    if user is not None:
        return user
    # Not known good: refused without hashing when this name or address failed too often.
    address = client_addr(request)
    throttle.check(username, address)
    # One slow password check per credential at a time: a client firing many requests at
    # once with a new credential must not hash it in every thread.
    with basic_cache.lock_for(key):
        user = _cached_basic_user(key)
        if user is not None:
            return user
        throttle.check(username, address)  # failures counted while this thread waited
        request.login_kind = "basic"  # for the failure count (user_login_failed)
        user = authenticate(request, username=username, password=password)
        if user is None or not user.is_active:
            raise AuthenticationFailed("invalid username or password")
        basic_cache.put(key, user)
    return user


def _cached_basic_user(key: bytes):
    """The user of a recently verified credential, while their password hash is unchanged."""
    cached = basic_cache.get(key)
    if cached is None:
        return None
    user = get_user_model().objects.filter(pk=cached[0], is_active=True).first()
    return user if user is not None and user.password == cached[1] else None


def _enforce_csrf(request) -> None:
    if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        return
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(request)
    if check.process_view(request, None, (), {}) is not None:
        raise CsrfFailed("CSRF check failed: send the X-CSRFToken header with the session")


def client_addr(request) -> str | None:
    """The caller's address for the audit trail and the login limits.

    Behind a trusted proxy (PSIMEXPORT_TRUST_PROXY) it is the rightmost X-Forwarded-For entry:
    the one that proxy appended. Entries to its left come from the client and can say anything.
    Whatever is used must parse as an IP address (the database column is an inet on
    PostgreSQL); otherwise the peer's address is used.
    """
    if settings.PSIMEXPORT_TRUST_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            address = _ip_or_none(forwarded.rsplit(",", 1)[-1])
            if address is not None:
                return address
    return _ip_or_none(request.META.get("REMOTE_ADDR", ""))


def _ip_or_none(text: str) -> str | None:
    text = text.strip()
    if not text or len(text) > 45:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
