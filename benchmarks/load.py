"""Serving an app in a process of its own and driving it with wrk (benchmarks.run, .paired)."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.scenarios import Request

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).parent / "wrk" / "requests.lua"


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def processes(self) -> list[int]:
        """The serving process and its descendants (with `--workers`, uvicorn's workers)."""
        pids = [self.process.pid]
        for pid in pids:  # grows as it goes: children, then theirs
            with contextlib.suppress(OSError):
                pids += map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
        return pids

    def _read_each(self, name: str) -> Iterator[str]:
        """`/proc/<pid>/<name>` of each serving process, but those that have exited."""
        for pid in self.processes():
            try:
                text = Path(f"/proc/{pid}/{name}").read_text()
            except OSError:
                continue
            yield text

    def cpu_seconds(self) -> float:
        """User + system CPU time the serving processes have used so far."""
        ticks = 0
        for stat in self._read_each("stat"):
            fields = stat.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        """The high-water mark of resident memory (VmHWM) of the largest serving process:
        the one worker, or the largest of `--workers`."""
        kilobytes = (
            int(line.split()[1])
            for status in self._read_each("status")
            for line in status.splitlines()
            if line.startswith("VmHWM")
        )
        return max(kilobytes, default=0) / 1024


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # server CPU time per request, steadier than req/s on a busy machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    name: str, command: list[str], env: dict[str, str], log: Path, *, cwd: Path = ROOT
) -> Iterator[Server]:
    port = _free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=out, cwd=cwd
        )
    server = Server(name, process, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{server.url}/healthz").status_code in (200, 404):
                    break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not start; see {log}") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(10)


def wrk(
    server: Server,
    requests: Sequence[Request],
    *,
    token: str,
    connections: int,
    seconds: float,
    accept: str | None = None,
) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as listing:
        listing.writelines("\t".join(request).rstrip("\t") + "\n" for request in requests)
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_REQUESTS": listing.name}
    if accept:
        env["BENCH_ACCEPT"] = accept
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s",
        "-s", str(LUA), server.url,
    ]  # fmt: skip
    cpu_before = server.cpu_seconds()
    try:
        output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(listing.name)
    summary = json.loads(output.strip().splitlines()[-1])
    return Result(
        requests_per_second=summary["requests"] / (summary["duration_us"] / 1e6),
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        errors=summary["errors"] + summary["non_2xx_3xx"],
        cpu_us=(server.cpu_seconds() - cpu_before) / max(summary["requests"], 1) * 1e6,
    )


def uvicorn_command(app: str) -> list[str]:
    """A bare app served as the service is: one process, uvloop, httptools."""
    return [
        sys.executable, "-m", "uvicorn", app, "--port", "{port}", "--loop", "uvloop",
        "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
