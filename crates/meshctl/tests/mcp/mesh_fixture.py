"""Shared fixture of the `meshctl mcp` and `meshctl gateway` suites.

The suites run against the live services `cargo xtask test` starts (a real
`mesh-relay` and a real `meshctl serve --echo` agent) and start real
`meshctl` processes of their own. They learn where everything is from the
environment:

  MESHCTL               the meshctl binary to test
  MESH_TEST_RELAY_URL   ws://127.0.0.1:PORT/v1/ws
  MESH_TEST_HTTP_URL    http://127.0.0.1:PORT
  MESH_TEST_ECHO_AGENT  the echo agent's did:key (serves echo and echo.stream)
  MESH_TEST_AGENT_LOG   the echo agent's log (one line per request it served)

Every wait is bounded; every process started here is stopped at the end of
its test, pass or fail.
"""

from __future__ import annotations

import faulthandler
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest
from pathlib import Path

import anyio

MESHCTL = os.environ["MESHCTL"]
RELAY = os.environ["MESH_TEST_RELAY_URL"]
HTTP_URL = os.environ["MESH_TEST_HTTP_URL"]
ECHO = os.environ["MESH_TEST_ECHO_AGENT"]
AGENT_LOG = os.environ["MESH_TEST_AGENT_LOG"]

ROOT = Path(__file__).resolve().parents[4]
HERE = Path(__file__).resolve().parent

#: Longest wait for one step (a process to print a line, a call to finish).
STEP_TIMEOUT = 30.0
#: Longest one test may take before the watchdog dumps every stack and exits.
TEST_WATCHDOG = 180.0
#: The MCP server re-reads the registry this often (meshctl's REFRESH_INTERVAL).
REFRESH_SECONDS = 5.0

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def short_id(did: str) -> str:
    """The 12-hex-digit short id of an ed25519 did:key (first 6 key bytes)."""
    assert did.startswith("did:key:z"), did
    n = 0
    for ch in did[len("did:key:z"):]:
        n = n * 58 + _B58.index(ch)
    raw = n.to_bytes(34, "big")
    assert raw[:2] == b"\xed\x01", "not an ed25519 did:key"
    return raw[2:8].hex()


class Process:
    """A long-running meshctl; its stderr goes to a log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None):
        self.args = args
        self.log = log
        self._log_file = open(log, "w")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env=env,
            text=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(self, pattern: str, timeout: float = STEP_TIMEOUT) -> re.Match[str]:
        """Waits until the log matches `pattern`; fails if the process exits."""
        with anyio.fail_after(timeout):
            while True:
                found = re.search(pattern, self.text(), re.MULTILINE)
                if found:
                    return found
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"{self.args[5:]} exited ({self.proc.returncode}) before printing "
                        f"{pattern!r}:\n{self.text()}"
                    )
                await anyio.sleep(0.05)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log_file.close()
        return self.proc.returncode

    def kill(self) -> None:
        """Stops at once, without a goodbye (as a crash would)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Mesh:
    """Identities and meshctl processes of one test, in a temporary directory."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="meshctl-py-"))
        self.processes: list[Process] = []
        self._n = 0

    def identity(self, name: str) -> Path:
        return self.dir / "keys" / name

    def new_identity(self, prefix: str = "agent") -> tuple[str, str]:
        """Creates a fresh identity; returns (name, did)."""
        self._n += 1
        name = f"{prefix}{self._n}"
        out = self.run(name, "keygen")
        did = out.stdout.splitlines()[0].strip()
        assert did.startswith("did:key:"), out
        return name, did

    def args(self, name: str, *args: str) -> list[str]:
        return [MESHCTL, "--relay", RELAY, "--identity", str(self.identity(name)), *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("MESH_RELAY", "MESH_IDENTITY", "MESH_TIMEOUT_MS", "MESH_MCP_TOKEN", "MESH_GATEWAY_TOKEN"):
            env.pop(key, None)
        env["XDG_CONFIG_HOME"] = str(self.dir / "config")
        return env

    def run(self, name: str, *args: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(name, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            stdin=subprocess.DEVNULL,
        )

    async def run_async(self, name: str, *args: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """`run` without blocking the event loop (the MCP session keeps going)."""
        return await anyio.to_thread.run_sync(lambda: self.run(name, *args, timeout=timeout))

    def spawn(self, name: str, *args: str) -> Process:
        self._n += 1
        log = self.dir / f"{name}-{args[0]}-{self._n}.log"
        p = Process(self.args(name, *args), log, env=self.env())
        self.processes.append(p)
        return p

    async def echo_agent(self, *, allow: str = "*", label: str = "py agent") -> tuple[Process, str]:
        """Starts another `meshctl serve --echo --publish-card`; returns it and its did."""
        name, did = self.new_identity("echo")
        p = self.spawn(name, "serve", "--echo", "--allow", allow, "--publish-card", "--name", label)
        await p.wait_for(r"^serving ")
        return p, did

    def close(self) -> None:
        for p in self.processes:
            try:
                p.stop()
            except Exception:  # a failing test must still free the rest
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


async def agent_log_match(pattern: str, timeout: float = STEP_TIMEOUT) -> re.Match[str]:
    """Waits until the live echo agent's log matches `pattern`."""
    with anyio.fail_after(timeout):
        while True:
            found = re.search(pattern, Path(AGENT_LOG).read_text(errors="replace"), re.MULTILINE)
            if found:
                return found
            await anyio.sleep(0.05)


class MeshTestCase(unittest.IsolatedAsyncioTestCase):
    """A test with its own `Mesh`, and a watchdog: no test can hang the run."""

    async def asyncSetUp(self) -> None:
        faulthandler.dump_traceback_later(TEST_WATCHDOG, exit=True)
        self.mesh = Mesh()

    async def asyncTearDown(self) -> None:
        self.mesh.close()
        faulthandler.cancel_dump_traceback_later()

