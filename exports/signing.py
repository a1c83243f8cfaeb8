"""Signed, expiring download links: `file=<id>&expires=<unix>&signature=<hmac>`.

The signature also covers the file's generation (when the task's current file was finished),
so a link handed out for one file never opens the file a retry makes later for the same task.
"""

import time
from urllib.parse import urlencode

from django.utils.crypto import constant_time_compare, salted_hmac

_SALT = "psimexport.download-link"


def file_generation(task) -> str:
    """What changes with every file a task gets: the moment its run finished."""
    return task.finished_at.isoformat() if task.finished_at else ""


def signature(task_id, expires: int, generation: str = "", part: int = 1) -> str:
    message = f"{task_id}:{int(expires)}:{generation}"
    if part != 1:  # part 1 is the task's file: its link is the one PSIM clients always had
        message += f":part{part}"
    return salted_hmac(_SALT, message, algorithm="sha256").hexdigest()


def signed_query(task, expires: int, part: int = 1) -> str:
    digest = signature(task.id, expires, file_generation(task), part)
    query = {"file": str(task.id), "expires": int(expires), "signature": digest}
    if part != 1:
        query = {"file": str(task.id), "part": part, "expires": int(expires), "signature": digest}
    return urlencode(query)


def link_is_valid(task, expires, given_signature, now: float | None = None, part: int = 1) -> bool:
    """True when the signature matches this task's current file (part) and expiry, and the
    link has not expired."""
    try:
        expires = int(expires)
    except (TypeError, ValueError):
        return False
    if not isinstance(given_signature, str) or expires < (now or time.time()):
        return False
    expected = signature(task.id, expires, file_generation(task), part)
    return constant_time_compare(expected, given_signature)
