"""Child processes of the bench (Envoys, the SSE server) and what is read from /proc.

Every child is started by this Python process and waited for by it; a child gets
SIGTERM if this process dies (PR_SET_PDEATHSIG), and `Children.stop_all` runs from a
`finally`, `atexit` and the SIGINT/SIGTERM handlers.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class Child:
    def __init__(self, name: str, args: list[str], log: Path, cpus: str | None, cwd: Path):
        self.name = name
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "w")
        if cpus:
            args = ["taskset", "-c", cpus, *args]
        # stdout: Envoy's stdout access log (one line per request) is not kept.
        self.proc = subprocess.Popen(
            args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log, preexec_fn=_die_with_parent
        )
        self.pid = self.proc.pid  # taskset execs the program: same pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class Children:
    """All children of the run; stops them on exit whatever happens."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.running: list[Child] = []
        atexit.register(self.stop_all)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_all()
        sys.exit(128 + signum)

    def start(self, name: str, args: list[str], log: Path, cpus: str | None = None) -> Child:
        child = Child(name, args, log, cpus, self.cwd)
        self.running.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self.running:
            self.running.remove(child)

    def stop_all(self) -> None:
        while self.running:
            self.stop(self.running.pop())


# --------------------------------------------------------------------------- ports, readiness


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Envoy does: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_port_free(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_free(port):
            return True
        time.sleep(0.1)
    return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_envoy_ready(child: Child, admin_port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited (code {child.proc.returncode}); log {child.log_path}:\n{child.log_tail()}")
        try:
            if http_get(f"http://127.0.0.1:{admin_port}/ready", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} not ready after {timeout:.0f} s; log {child.log_path}:\n{child.log_tail()}")


def wait_listening(child: Child, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited; log {child.log_path}:\n{child.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{child.name} not listening on {port} after {timeout:.0f} s")


def envoy_stats(admin_port: int, pattern: str) -> dict[str, int]:
    """Counters and gauges whose name matches `pattern` (a regex), from /stats."""
    status, body = http_get(f"http://127.0.0.1:{admin_port}/stats?filter={urllib.parse.quote(pattern)}")
    out: dict[str, int] = {}
    if status != 200:
        return out
    for line in body.decode().splitlines():
        name, _, value = line.partition(": ")
        if value.strip().lstrip("-").isdigit():
            out[name] = int(value)
    return out


# --------------------------------------------------------------------------- CPU and memory


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads, live and exited)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine spent (user + nice + system, all CPUs), from
    /proc/stat. Interrupt and softirq time (loopback networking) is left out, as it is
    not charged to any process's utime/stime either."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (values[0] + values[1] + values[2]) / CLK_TCK


def children_cpu_seconds() -> float:
    """CPU time of this process's waited-for children (the load generators) plus its own."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    s = resource.getrusage(resource.RUSAGE_SELF)
    return c.ru_utime + c.ru_stime + s.ru_utime + s.ru_stime


def memory(pid: int) -> dict[str, int]:
    """Process RSS and the wasm VMs' linear memory, in KiB.

    Envoy 1.40 has no stat for a wasm VM's memory. V8 reserves ~8 GiB of address space
    per wasm memory ('---p') and commits the linear memory just below it ('rw-p'); the
    committed mapping's size is the VM's linear memory (it only ever grows) and its
    Rss what of it is resident. Summed over all VMs (main thread + workers).
    """
    rows: list[list] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ", line)
            if m:
                rows.append([int(m.group(1), 16), int(m.group(2), 16), m.group(3), 0])
            elif line.startswith("Rss:") and rows:
                rows[-1][3] = int(line.split()[1])
    wasm_kib = wasm_rss_kib = vms = 0
    for prev, cur in zip(rows, rows[1:]):
        if cur[1] - cur[0] >= 4 << 30 and cur[2] == "---p" and prev[1] == cur[0] and prev[2] == "rw-p":
            vms += 1
            wasm_kib += (prev[1] - prev[0]) >> 10
            wasm_rss_kib += prev[3]
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
    anon = int(re.search(r"^RssAnon:\s+(\d+)", status, re.M).group(1))
    return {"rss_kib": rss, "rss_anon_kib": anon, "wasm_vms": vms, "wasm_linear_kib": wasm_kib, "wasm_rss_kib": wasm_rss_kib}
