"""Date formats of every page (``FORMAT_MODULE_PATH``): one unambiguous format instead of
English's "Nov. 30, 2026, 3:30 p.m." next to the ISO dates Signet writes itself."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
