"""The example clients in examples/, run against a live server (sandbox)."""
import os
import pathlib
import signal
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = os.environ.get("PHONECHECK_BIN", str(ROOT / "target" / "debug" / "phonecheck"))
    env = dict(os.environ, PHONECHECK__STORAGE__DATA_DIR=str(tmp_path_factory.mktemp("data")))
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    assert line.startswith("phonecheck listening on "), line
    yield line.split()[-1]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_python_example(server):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python" / "phonecheck_client.py"), "--server", server, "--count", "3000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bulk: 3000 answered" in done.stdout, done.stdout
    assert "INVALID_ARGUMENT on field number" in done.stdout, done.stdout


def test_node_example(server):
    done = subprocess.run(
        ["node", str(ROOT / "examples" / "node" / "client.js"), server, "3000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bulk: 3000 answered" in done.stdout, done.stdout
    assert "INVALID_ARGUMENT on field number" in done.stdout, done.stdout
