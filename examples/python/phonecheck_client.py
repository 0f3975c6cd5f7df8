#!/usr/bin/env python3
"""A small phonecheck client in Python: one lookup, a streamed bulk check, and a rich error.

    pip install grpcio grpcio-tools
    python3 examples/python/phonecheck_client.py --server 127.0.0.1:50051 --count 3000

Stubs are generated from ../../proto with grpcio-tools on first run (into examples/python/gen).
"""
import argparse
import importlib.resources
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GEN = HERE / "gen"
PROTOS = [
    "phonecheck/v1/number.proto",
    "phonecheck/v1/report.proto",
    "phonecheck/v1/phone_check_service.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "google/type/money.proto",
]


def generate_stubs():
    """Generates the Python stubs from the contract itself, again whenever it changed."""
    from grpc_tools import protoc

    marker = GEN / "phonecheck" / "v1" / "phone_check_service_pb2_grpc.py"
    sources = [ROOT / "proto" / p for p in PROTOS if p.startswith("phonecheck/")]
    if marker.exists() and all(s.stat().st_mtime <= marker.stat().st_mtime for s in sources):
        return  # generated from the contract as it is now
    GEN.mkdir(exist_ok=True)
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    code = protoc.main([
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{ROOT / 'third_party' / 'googleapis'}",
        f"-I{well_known}",
        f"--python_out={GEN}",
        f"--grpc_python_out={GEN}",
        *PROTOS,
    ])
    if code != 0:
        sys.exit("protoc failed")


generate_stubs()
sys.path.insert(0, str(GEN))

import grpc  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from phonecheck.v1 import phone_check_service_pb2 as api  # noqa: E402
from phonecheck.v1 import phone_check_service_pb2_grpc as api_grpc  # noqa: E402
from phonecheck.v1 import report_pb2 as report  # noqa: E402


def lookup(stub):
    request = api.LookupNumberRequest(number="+86 138-0013-8000", checks=[report.CHECK_LINE_STATUS])
    response = stub.LookupNumber(request, timeout=10)
    info = response.report.info
    status = report.LineStatus.Name(response.report.line_status.status)
    print(f"lookup: {info.e164} {info.carrier.name} {info.location.province}{info.location.city} {status}")
    return response


def bulk(stub, count):
    """Streams `count` numbers. The request generator is pulled by gRPC only as fast as the server
    reads (HTTP/2 flow control), so a list of any length never sits in memory at once."""

    def items():
        for i in range(count):
            yield api.CheckNumbersRequest(
                request_id=str(i),
                number=f"139{i:08d}",
                checks=[report.CHECK_LINE_STATUS],
            )

    seen = set()
    summary = None
    for message in stub.CheckNumbers(items(), timeout=300):
        if message.HasField("result"):
            seen.add(message.result.request_id)
        else:
            summary = message.summary
    print(f"bulk: {len(seen)} answered, {summary.reports} reports, {summary.errors} errors, "
          f"{summary.billable_calls} billable")
    return seen, summary


def rich_error(stub):
    """A number that is not a number: INVALID_ARGUMENT with a google.rpc.BadRequest detail."""
    try:
        stub.LookupNumber(api.LookupNumberRequest(number="call me"), timeout=10)
    except grpc.RpcError as error:
        details = dict(error.trailing_metadata()).get("grpc-status-details-bin")
        status = status_pb2.Status.FromString(details)
        bad_request = error_details_pb2.BadRequest()
        for detail in status.details:
            if detail.Unpack(bad_request):
                violation = bad_request.field_violations[0]
                print(f"error: {error.code().name} on field {violation.field}: {violation.description}")
                return error.code(), violation.field
    raise AssertionError("expected INVALID_ARGUMENT")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    with grpc.insecure_channel(args.server) as channel:
        stub = api_grpc.PhoneCheckServiceStub(channel)
        lookup(stub)
        seen, summary = bulk(stub, args.count)
        code, field = rich_error(stub)
    ok = len(seen) == args.count and summary.items_received == args.count
    ok = ok and code == grpc.StatusCode.INVALID_ARGUMENT and field == "number"
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
