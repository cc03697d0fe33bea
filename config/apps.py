from django.contrib.admin.apps import AdminConfig


class SignetAdminConfig(AdminConfig):
    """``django.contrib.admin`` with ``config.admin_site.SignetAdminSite`` as ``admin.site``."""

    default_site = "config.admin_site.SignetAdminSite"
