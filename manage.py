#!/usr/bin/env python
"""Django's command-line utility for psimexport."""

import os
import sys

MIGRATE_HINT = (
    "run `make run` (it sets everything up) or `python manage.py migrate`, with the same "
    "PSIMEXPORT_DATA and DATABASE_URL"
)


def database_hint(error: Exception) -> str | None:
    """What to run when a command met a database that is missing or not migrated yet; None
    for any other database error (that one keeps its traceback)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "no such table" in text or ("relation " in text and "does not exist" in text):
        return f"psimexport: no database yet ({text}): {MIGRATE_HINT}."
    if "database " in text and "does not exist" in text:
        return (
            f"psimexport: {text}: create it (e.g. `createdb NAME`), then "
            "`python manage.py migrate`."
        )
    return None


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")
    from django.core.management import execute_from_command_line
    from django.db.utils import OperationalError, ProgrammingError

    try:
        execute_from_command_line(sys.argv)
    except (OperationalError, ProgrammingError) as error:
        hint = database_hint(error)
        if hint is None:
            raise
        sys.exit(hint)


if __name__ == "__main__":
    main()
