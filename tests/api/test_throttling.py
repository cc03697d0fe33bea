"""Rate limits on sign, bulk-sign and verify (DRF ScopedRateThrottle, rates from env)."""

from __future__ import annotations

import base64
import json

from signing.models import Signature
from tests.api.conftest import auth
from tests.factories import make_key
from tests.support.settings_process import print_setting


def _post(client, url: str, token: str, body: dict | None = None):
    return client.post(
        url, data=json.dumps(body or {}), content_type="application/json", **auth(token)
    )


def _assert_throttled(response) -> None:
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "RequestLimitExceeded"
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"code", "message", "fields", "details"}
    assert int(response["Retry-After"]) > 0


def test_the_verify_endpoint_answers_429_after_its_rate(client, admin_token, set_throttle_rates):
    set_throttle_rates({"verify": "2/min"})
    for _ in range(2):
        response = _post(client, "/api/v1/signing/verify/", admin_token, {"image": "bad"})
        assert response.status_code == 400
    _assert_throttled(_post(client, "/api/v1/signing/verify/", admin_token, {"image": "bad"}))


def test_the_sign_endpoints_share_the_sign_rate_and_sign_nothing_when_throttled(
    client, admin_token, seeded, set_throttle_rates
):
    set_throttle_rates({"sign": "2/min"})
    tag = seeded["tag"]
    body = {"instance": "fuzz", "namespace": "team", "repository": "app", "tag": "nope"}
    assert _post(client, "/api/v1/signing/sign/", admin_token, body).status_code == 404
    before = Signature.objects.count()
    assert _post(client, "/api/v1/signing/sign/", admin_token, body).status_code == 404
    _assert_throttled(_post(client, f"/api/v1/registry/tags/{tag.pk}/sign/", admin_token))
    assert Signature.objects.count() == before


def test_policy_resign_and_retry_are_limited_by_the_bulk_sign_rate(
    client, admin_token, seeded, set_throttle_rates
):
    set_throttle_rates({"bulk-sign": "1/min"})
    policy = seeded["policy"]
    response = _post(client, f"/api/v1/signing/policies/{policy.pk}/resign/", admin_token)
    assert response.status_code == 200
    _assert_throttled(_post(client, f"/api/v1/signing/policies/{policy.pk}/retry/", admin_token))


def test_kms_sign_and_verify_are_limited(client, admin_token, set_throttle_rates):
    key = make_key("throttled")
    set_throttle_rates({"kms-sign": "1/min", "verify": "1/min"})
    message = base64.b64encode(b"hello").decode()
    url = f"/api/v1/kms/keys/{key.key_id}/"
    signed = _post(
        client, url + "sign/", admin_token, {"message": message, "algorithm": "RSA_PKCS1_SHA_256"}
    )
    assert signed.status_code == 200
    _assert_throttled(
        _post(
            client,
            url + "sign/",
            admin_token,
            {"message": message, "algorithm": "RSA_PKCS1_SHA_256"},
        )
    )
    verify = {
        "message": message,
        "signature": signed.json()["signature"],
        "algorithm": "RSA_PKCS1_SHA_256",
    }
    assert _post(client, url + "verify/", admin_token, verify).json() == {"signature_valid": True}
    _assert_throttled(_post(client, url + "verify/", admin_token, verify))
    # Other actions of the same view are not limited.
    for _ in range(3):
        assert client.get(url, **auth(admin_token)).status_code == 200


def test_each_user_has_its_own_counter(client, admin_token, viewer_token, set_throttle_rates):
    set_throttle_rates({"verify": "1/min"})
    assert _post(client, "/api/v1/signing/verify/", admin_token, {"image": "x"}).status_code == 400
    _assert_throttled(_post(client, "/api/v1/signing/verify/", admin_token, {"image": "x"}))
    assert _post(client, "/api/v1/signing/verify/", viewer_token, {"image": "x"}).status_code == 400


def _settings_in_subprocess(**env: str):
    return print_setting("settings.THROTTLE_RATES", **env)


def test_the_rates_come_from_the_environment():
    result = _settings_in_subprocess(SIGNET_THROTTLE_SIGN="7/hour", SIGNET_THROTTLE_VERIFY="off")
    assert result.returncode == 0, result.stderr
    assert "'sign': '7/hour'" in result.stdout
    assert "'verify': None" in result.stdout
    assert "'bulk-sign': '30/min'" in result.stdout


def test_a_malformed_rate_stops_the_process_naming_the_variable():
    result = _settings_in_subprocess(SIGNET_THROTTLE_VERIFY="lots")
    assert result.returncode != 0
    assert "SIGNET_THROTTLE_VERIFY is malformed" in result.stderr
