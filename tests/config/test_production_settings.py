"""Production settings: HTTPS-only cookies by default, TLS-proxy settings from the
environment, and a production example environment that ``check --deploy`` accepts."""

from __future__ import annotations

import pytest

from tests.config.support import (
    load_settings,
    minimal_production_env,
    production_example_env,
    run,
    settings_error,
)

COOKIES = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")


def test_check_deploy_reports_nothing_for_the_production_example_environment():
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_example_env()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    assert "WARNING" not in result.stderr


def test_the_production_example_refuses_to_start_until_its_secrets_are_filled_in():
    env = production_example_env()
    del env["SECRET_KEY"]
    assert "SECRET_KEY" in settings_error(env)


def test_cookies_are_https_only_by_default_with_debug_off():
    values = load_settings(minimal_production_env(), *COOKIES)
    assert values == {"SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True}


def test_a_plain_http_loopback_setup_may_turn_secure_cookies_off():
    env = minimal_production_env(SESSION_COOKIE_SECURE="0", CSRF_COOKIE_SECURE="0")
    assert load_settings(env, *COOKIES) == {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
    }


def test_development_mode_keeps_plain_http_cookies():
    env = {"DEBUG": "1", "SIGNET_ENV_FILE": "/nonexistent"}
    assert load_settings(env, *COOKIES) == {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
    }


def test_tls_proxy_redirect_and_hsts_settings_come_from_the_environment():
    names = (
        "SECURE_PROXY_SSL_HEADER",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
    )
    assert load_settings(minimal_production_env(), *names) == {
        "SECURE_PROXY_SSL_HEADER": None,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
    }
    env = minimal_production_env(
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto,https",
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
    )
    assert load_settings(env, *names) == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto"),
        ("SECURE_PROXY_SSL_HEADER", "X Forwarded Proto,https"),
        ("SECURE_HSTS_SECONDS", "a year"),
        ("SECURE_HSTS_SECONDS", "-1"),
        ("SESSION_COOKIE_SECURE", "maybe"),
    ],
)
def test_a_malformed_https_setting_stops_the_process_naming_it(name, value):
    assert name in settings_error(minimal_production_env(**{name: value}))
