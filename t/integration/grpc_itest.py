"""Helpers for the gRPC core integration tests: the test server process, RSS sampling, nghttp."""
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc

import health_pb2_grpc
import testsvc_pb2
import testsvc_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024

# One bound for plain and ASan builds (servers get a small ASan quarantine below).
RSS_BOUND = int(os.environ.get("GRPC_ITEST_RSS_MIB", "100")) * MIB


def build_dir():
    b = Path(os.environ.get("BUILD_DIR", str(ROOT / "build")))
    return b if b.is_absolute() else ROOT / b


def binary(name):
    p = build_dir() / "t" / "integration" / name
    if not os.access(p, os.X_OK):
        raise RuntimeError(f"{p} not built (set BUILD_DIR, run ninja)")
    return str(p)


def server_env():
    env = dict(os.environ)
    # ASan keeps freed memory in a 256 MiB quarantine by default, which would
    # read as growth in the RSS tests; 16 MiB still catches use-after-free.
    asan = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "quarantine_size_mb=16"
    # An undefined-behaviour report must fail the test, not scroll by.
    env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    return env


def proc_status(pid, key):
    """A kB line of /proc/<pid>/status in bytes, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return 0


def children_of(pid):
    """Pids whose parent is `pid` (zombies included: they are not reaped yet)."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(d))
    return kids


def pid_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for(pred, timeout, interval=0.02):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(interval)


class Server:
    """One grpc-testserver process, listening on `addrs`."""

    def __init__(self, args, addrs):
        self.argv = [binary("grpc-testserver"), *args, *addrs]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     env=server_env())
        self.pid = self.proc.pid
        self.channels = []
        self.known_children = set()
        self.expected_exit = False
        self.addresses = []
        try:
            self._read_listening(len(addrs))
        except Exception:
            self.proc.kill()
            self.proc.wait()
            raise

    def _read_listening(self, n):
        end = time.monotonic() + 30
        buf = b""
        while len(self.addresses) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"server did not report {n} listeners: {buf!r}")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"server exited ({self.proc.wait()}) before listening: {buf!r}")
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                word, _, addr = line.decode().partition(" ")
                if word != "listening" or not addr:
                    raise RuntimeError(f"unexpected server output {line!r}")
                self.addresses.append(addr)

    @property
    def unix(self):
        return next(a for a in self.addresses if a.startswith("unix:"))

    @property
    def tcp(self):
        return next(a for a in self.addresses if not a.startswith("unix:"))

    def channel(self, addr=None, options=()):
        ch = grpc.insecure_channel(addr or self.unix, options=list(options))
        self.channels.append(ch)
        return ch

    def stub(self, addr=None, channel=None):
        return testsvc_pb2_grpc.TestStub(channel or self.channel(addr))

    def health(self, addr=None):
        return health_pb2_grpc.HealthStub(self.channel(addr))

    def stats(self, channel=None):
        """Server statistics; on a throw-away channel unless one is given."""
        if channel is not None:
            return testsvc_pb2_grpc.TestStub(channel).Stats(testsvc_pb2.StatsRequest(), timeout=10)
        with grpc.insecure_channel(self.unix) as ch:
            return testsvc_pb2_grpc.TestStub(ch).Stats(testsvc_pb2.StatsRequest(), timeout=10)

    def rss(self):
        return proc_status(self.pid, "VmRSS")

    def peak_rss(self):
        return proc_status(self.pid, "VmHWM")

    def children(self):
        kids = children_of(self.pid)
        self.known_children.update(kids)
        return kids

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Wait for the process to exit; returns its exit status (None on timeout)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def crash(self):
        """SIGKILL, as a crash: no GOAWAY, the Unix socket file stays behind."""
        self.expected_exit = True
        self.children()
        self.proc.kill()
        self.proc.wait()
        self.stop()

    def stop(self):
        """Close our channels, SIGTERM, wait (SIGKILL after 20 s); returns the exit status."""
        for ch in self.channels:
            ch.close()
        self.channels = []
        self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(20) is None:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        # Children must die with their calls; never leave one behind anyway.
        for kid in self.known_children:
            try:
                with open(f"/proc/{kid}/cmdline", "rb") as f:
                    if f.read().startswith(b"sleep\0"):
                        os.kill(kid, signal.SIGKILL)
            except OSError:
                pass
        return self.proc.returncode


class RssSampler:
    """Samples a process's VmRSS in a thread until stopped; keeps max and samples."""

    def __init__(self, pid, interval=0.01):
        self.pid = pid
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = proc_status(self.pid, "VmRSS")
            if v is None:
                return
            self.samples.append((time.monotonic(), v))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak(self):
        return max(v for _, v in self.samples)


def grpc_frame(msg):
    """A gRPC length-prefixed message (uncompressed)."""
    data = msg.SerializeToString()
    return b"\0" + len(data).to_bytes(4, "big") + data


_FRAME_RE = re.compile(r"recv (\w+) frame <length=(\d+), flags=0x([0-9a-fA-F]+), stream_id=(\d+)>")
_SENT_HEADERS_RE = re.compile(r"send HEADERS frame <[^>]*stream_id=(\d+)>")
_HEADER_RE = re.compile(r"recv \(stream_id=(\d+)\) (:?[^:\s]+): (.*)$")


def nghttp(tmpdir, hostport, path, body, headers=(), timeout=20):
    """POST one gRPC request with nghttp (an independent HTTP/2 client that
    does not enforce grpc-timeout itself) and parse its -v trace.

    Returns (frames, trace): the frames received on the request's stream, as
    dicts with type, length, flags and, for HEADERS, the decoded header list;
    and nghttp's whole trace for assertion messages.
    """
    exe = shutil.which("nghttp")
    if not exe:
        raise RuntimeError("nghttp not installed (Debian package nghttp2-client)")
    body_file = Path(tmpdir) / "nghttp-body"
    body_file.write_bytes(body)
    argv = [exe, "-v", "-n", "-H", "content-type: application/grpc", "-H", "te: trailers"]
    for h in headers:
        argv += ["-H", h]
    argv += ["-d", str(body_file), f"http://{hostport}{path}"]
    out = subprocess.run(argv, capture_output=True, timeout=timeout, text=True,
                         errors="replace").stdout
    # nghttp may open idle streams for priorities first: find the request's stream.
    m = _SENT_HEADERS_RE.search(out)
    stream = m.group(1) if m else "1"
    frames, pending = [], []
    for line in out.splitlines():
        m = _HEADER_RE.search(line)
        if m and m.group(1) == stream:
            pending.append((m.group(2), m.group(3)))
            continue
        m = _FRAME_RE.search(line)
        if m and m.group(4) == stream:
            f = {"type": m.group(1), "length": int(m.group(2)), "flags": int(m.group(3), 16)}
            if f["type"] == "HEADERS":
                f["headers"], pending = pending, []
            frames.append(f)
    return frames, out


def pump_slowly(it, n, delay):
    """Read n messages from a response iterator, `delay` seconds apart."""
    got = 0
    for _ in it:
        got += 1
        if got == n:
            break
        time.sleep(delay)
    return got
