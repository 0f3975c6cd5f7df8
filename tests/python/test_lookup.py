"""A Python client generated with grpcio-tools from proto/ calls a live phonecheck server.

    PHONECHECK_BIN=target/debug/phonecheck python3 -m pytest tests/python
"""
import importlib.resources
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

import grpc
import pytest
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOS = [
    "phonecheck/v1/number.proto",
    "phonecheck/v1/report.proto",
    "phonecheck/v1/phone_check_service.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "google/type/money.proto",
]


@pytest.fixture(scope="module")
def stubs():
    out = tempfile.mkdtemp(prefix="phonecheck-py-")
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{ROOT / 'third_party' / 'googleapis'}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *PROTOS,
    ]
    assert protoc.main(args) == 0, "protoc failed"
    sys.path.insert(0, out)
    from google.rpc import error_details_pb2, status_pb2
    from phonecheck.v1 import phone_check_service_pb2 as service
    from phonecheck.v1 import phone_check_service_pb2_grpc as service_grpc
    from phonecheck.v1 import report_pb2 as report

    return service, service_grpc, report, status_pb2, error_details_pb2


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = os.environ.get("PHONECHECK_BIN", str(ROOT / "target" / "debug" / "phonecheck"))
    # Its own data directory: answers paid by an earlier run must not turn into cache hits here.
    env = dict(os.environ, PHONECHECK__STORAGE__DATA_DIR=str(tmp_path_factory.mktemp("data")))
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    # The server binds, then prints its address, then serves: no waiting needed.
    line = proc.stdout.readline()
    assert line.startswith("phonecheck listening on "), line
    address = line.split()[-1]
    yield address
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_lookup_with_line_status(stubs, server):
    service, service_grpc, report, _, _ = stubs
    with grpc.insecure_channel(server) as channel:
        client = service_grpc.PhoneCheckServiceStub(channel)
        response = client.LookupNumber(
            service.LookupNumberRequest(number="+86 138-0013-8000", checks=[report.CHECK_LINE_STATUS]),
            timeout=10,
        )
    info = response.report.info
    assert info.e164 == "+8613800138000"
    assert info.carrier.name == "China Mobile"
    assert info.location.city == "北京"
    assert response.report.sandbox
    assert response.report.line_status.status != report.LINE_STATUS_UNSPECIFIED
    (outcome,) = response.report.outcomes
    assert outcome.provider == "thinksms" and outcome.billable


def test_magic_suffix_selects_the_status(stubs, server):
    service, service_grpc, report, _, _ = stubs
    with grpc.insecure_channel(server) as channel:
        client = service_grpc.PhoneCheckServiceStub(channel)
        response = client.LookupNumber(
            service.LookupNumberRequest(number="13800000002", checks=[report.CHECK_LINE_STATUS]),
            timeout=10,
        )
    assert response.report.line_status.status == report.LINE_STATUS_EMPTY


def test_invalid_number_has_a_bad_request_detail(stubs, server):
    service, service_grpc, _, status_pb2, error_details_pb2 = stubs
    with grpc.insecure_channel(server) as channel:
        client = service_grpc.PhoneCheckServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            client.LookupNumber(service.LookupNumberRequest(number="call me maybe"), timeout=10)
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = dict(error.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "number"
