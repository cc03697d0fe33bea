"""API tokens: stored as hashes (django-rest-knox), expiring, revocable, audited.

Above ``accounts`` and ``audit`` (it records to the audit log), below the domain apps,
which never import it: they only name its authentication class in the settings.
"""
