"""Signed, expiring download links: `file=<id>&expires=<unix>&signature=<hmac>`."""

import time
from urllib.parse import urlencode

from django.utils.crypto import constant_time_compare, salted_hmac

_SALT = "psimexport.download-link"


def signature(task_id, expires: int) -> str:
    return salted_hmac(_SALT, f"{task_id}:{int(expires)}", algorithm="sha256").hexdigest()


def signed_query(task_id, expires: int) -> str:
    return urlencode(
        {"file": str(task_id), "expires": int(expires), "signature": signature(task_id, expires)}
    )


def link_is_valid(task_id, expires, given_signature, now: float | None = None) -> bool:
    """True when the signature matches this task and expiry and the link has not expired."""
    try:
        expires = int(expires)
    except (TypeError, ValueError):
        return False
    if not isinstance(given_signature, str) or expires < (now or time.time()):
        return False
    return constant_time_compare(signature(task_id, expires), given_signature)
