"""Date formats for English (the admin's language): 24-hour times with seconds, dates as
2026-11-20, as on the rest of the site. Django's own English formats drop the seconds, so a
17 s export showed the same start and end in the admin."""

DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
