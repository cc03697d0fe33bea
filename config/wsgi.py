import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# The apps' duties of a serving process (a signing worker's heartbeat and its recovery of
# a dead worker's rows) start here, not on import of the apps: migrate and the other
# commands import them too.
for hook in settings.SERVING_STARTED_HOOKS:
    import_string(hook)()
