"""The vendor's own Python SDK (alibabacloud-dytnsapi20200217, pinned in .ci/run) is the client
of phonecheck's Aliyun simulator: what the SDK signs and sends, the simulator must accept, and
what the simulator answers, the SDK must read.

    PHONECHECK_BIN=target/debug/phonecheck python3 -m pytest tests/python/test_aliyun_sdk.py
"""
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import urllib.request

import pytest
from alibabacloud_dytnsapi20200217 import models
from alibabacloud_dytnsapi20200217.client import Client
from alibabacloud_tea_openapi import utils_models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException
from darabonba.runtime import RuntimeOptions

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The sandbox account (src/sim/mod.rs, SANDBOX_ALIYUN_*): it opens only the simulator.
ACCESS_KEY_ID = "LTAI5tSandboxAliyunAccessKey"
ACCESS_KEY_SECRET = "sandbox-aliyun-access-key-secret"
AUTH_CODE = "sandbox-aliyun-auth-code"


@pytest.fixture(scope="module")
def sim():
    binary = os.environ.get("PHONECHECK_BIN", str(ROOT / "target" / "debug" / "phonecheck"))
    proc = subprocess.Popen(
        [binary, "sim", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    # The simulator binds, then prints its address, then serves: no waiting needed.
    line = proc.stdout.readline()
    assert line.startswith("phonecheck sim listening on http://"), line
    yield line.split()[-1]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def client(base_url, secret=ACCESS_KEY_SECRET):
    # The endpoint override points the SDK at the loopback simulator, over plain HTTP.
    config = open_api_models.Config(
        access_key_id=ACCESS_KEY_ID,
        access_key_secret=secret,
        endpoint=base_url.removeprefix("http://"),
        protocol="http",
        read_timeout=10000,
        connect_timeout=5000,
    )
    return Client(config)


def status_of(base_url, number, mask="NORMAL", secret=ACCESS_KEY_SECRET):
    request = models.PhoneNumberStatusForPublicRequest(
        auth_code=AUTH_CODE, input_number=number, mask=mask
    )
    # No SDK retries: each call is exactly one request (and one nonce).
    runtime = RuntimeOptions(autoretry=False)
    return client(base_url, secret).phone_number_status_for_public_with_options(request, runtime)


def stats(base_url):
    with urllib.request.urlopen(f"{base_url}/_sim/stats", timeout=10) as response:
        return json.load(response)["aliyun"]


def test_the_sdk_gets_ok_and_a_status(sim):
    before = stats(sim)
    response = status_of(sim, "13800000102")
    assert response.status_code == 200
    body = response.body
    assert body.code == "OK"
    assert body.data.status == "SHUTDOWN"
    assert body.data.carrier == "CMCC"
    assert len(body.request_id) == 36
    after = stats(sim)
    assert after["calls"] == before["calls"] + 1
    assert after["billable"] == before["billable"] + 1


def test_a_ported_number_names_its_current_carrier(sim):
    body = status_of(sim, "13800000108").body
    assert (body.code, body.data.status, body.data.carrier) == ("OK", "NORMAL", "CUCC")


def test_unknown_is_not_billed(sim):
    before = stats(sim)
    body = status_of(sim, "13800000107").body
    assert (body.code, body.data.status) == ("OK", "UNKNOWN")
    assert stats(sim)["billable"] == before["billable"]


@pytest.mark.parametrize(
    "mask,digest",
    [("MD5", hashlib.md5), ("SHA256", hashlib.sha256), ("SM3", None)],
)
def test_hash_masks(sim, mask, digest):
    if digest is None:
        # hashlib has SM3 only with some OpenSSL builds; the SDK ships its own.
        from alibabacloud_tea_openapi.sm3 import hash_sm3

        hashed = hash_sm3(b"13800000101").hex()
    else:
        hashed = digest(b"13800000101").hexdigest()
    body = status_of(sim, hashed, mask=mask).body
    assert body.code == "OK"
    assert body.data.status in {
        "NORMAL",
        "SHUTDOWN",
        "POWER_OFF",
        "NOT_EXIST",
        "SUSPECTED_POWER_OFF",
        "BUSY",
        "UNKNOWN",
    }


def test_a_wrong_secret_is_signature_does_not_match(sim):
    before = stats(sim)
    with pytest.raises(ClientException) as refused:
        status_of(sim, "13800000101", secret="not-the-secret")
    assert refused.value.code == "SignatureDoesNotMatch"
    assert refused.value.status_code == 400
    assert stats(sim)["billable"] == before["billable"]


RUNTIME = RuntimeOptions(autoretry=False)


def online_time(base_url, number, secret=ACCESS_KEY_SECRET):
    request = models.DescribePhoneNumberOnlineTimeRequest(
        auth_code=AUTH_CODE, input_number=number, mask="NORMAL"
    )
    return client(base_url, secret).describe_phone_number_online_time_with_options(
        request, RUNTIME
    )


def twice_tel(base_url, number, start_time="2021-03-04 05:06:07", secret=ACCESS_KEY_SECRET):
    request = models.DescribePhoneTwiceTelVerifyRequest(
        auth_code=AUTH_CODE, input_number=number, mask="NORMAL", start_time=start_time
    )
    return client(base_url, secret).describe_phone_twice_tel_verify_with_options(
        request, RUNTIME
    )


def operator_attribute(base_url, number, secret=ACCESS_KEY_SECRET):
    request = models.DescribePhoneNumberOperatorAttributeRequest(
        auth_code=AUTH_CODE, input_number=number, mask="NORMAL"
    )
    return client(base_url, secret).describe_phone_number_operator_attribute_with_options(
        request, RUNTIME
    )


def test_online_time_buckets_as_the_sdk_reads_them(sim):
    before = stats(sim)
    body = online_time(sim, "13800000205").body
    assert body.code == "OK"
    assert body.data.verify_result == "3"
    assert isinstance(body.data.verify_result, str)
    assert body.data.carrier_code == "CMCC"
    # -1 (no record) is answered, not billed.
    assert online_time(sim, "13800000201").body.data.verify_result == "-1"
    after = stats(sim)
    assert after["calls"] - before["calls"] == 2
    assert after["billable"] - before["billable"] == 1


def test_twice_tel_verify_needs_a_start_time_and_reads_recycled(sim):
    body = twice_tel(sim, "13800000302").body
    assert body.code == "OK"
    assert body.data.verify_result == "1"
    assert body.data.carrier == "CMCC"
    assert twice_tel(sim, "13800000301").body.data.verify_result == "0"
    bad = twice_tel(sim, "13800000303", start_time="yesterday").body
    assert bad.code == "InvalidParameter"


def test_operator_attribute_names_a_ported_number_and_an_mvno(sim):
    body = operator_attribute(sim, "13800000402").body
    assert body.code == "OK"
    data = body.data
    assert (data.basic_carrier, data.carrier, data.is_number_portability) == (
        "中国移动",
        "中国联通",
        True,
    )
    assert isinstance(data.number_segment, int)
    assert data.province is not None and data.city is not None
    mvno = operator_attribute(sim, "13800000403").body.data
    assert mvno.carrier == "中国移动虚拟运营商" and mvno.is_number_portability is False


def test_the_same_number_twice_within_the_window_is_frequency_limited(sim):
    assert operator_attribute(sim, "13912345678").body.code == "OK"
    again = operator_attribute(sim, "13912345678").body
    assert again.code == "RequestFrequencyLimit"
    # Another action for the same number is counted apart.
    assert online_time(sim, "13912345678").body.code == "OK"


@pytest.mark.parametrize("call", [online_time, twice_tel, operator_attribute])
def test_each_action_refuses_a_wrong_secret(sim, call):
    with pytest.raises(ClientException) as refused:
        call(sim, "13800000401", secret="not-the-secret")
    assert refused.value.code == "SignatureDoesNotMatch"
