"""Integration tests of lib/grpc (libuv + nghttp2): grpc-testserver driven by Python grpcio,
by nghttp (wire format) and by our own C client (grpc-testclient)."""
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import grpc
import pytest

import health_pb2
from grpc_itest import (MIB, RSS_BOUND, RssSampler, binary, grpc_frame, nghttp, pid_exists,
                        pump_slowly, server_env, wait_for)
import testsvc_pb2 as pb

UNICODE_MSG = 'pr\u00e9condition \u00e9chou\u00e9e: 100% \u2713 "quoted"\r\nsecond line \U0001F600'


def child_pid(call):
    md = dict(call.initial_metadata())
    return int(md["x-child-pid"])


# --- the four kinds of call -------------------------------------------------------------

@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_unary_echo(server, transport):
    stub = server.stub(server.unix if transport == "unix" else server.tcp)
    payload = bytes(range(256)) * 10
    assert stub.Unary(pb.UnaryRequest(payload=payload), timeout=10).payload == payload
    r = stub.Unary(pb.UnaryRequest(response_size=3 * MIB + 7), timeout=10)
    assert len(r.payload) == 3 * MIB + 7
    assert r.payload[:26] == b"abcdefghijklmnopqrstuvwxyz"


def test_server_stream(server):
    stub = server.stub()
    chunks = list(stub.ServerStream(pb.StreamRequest(chunks=50, chunk_size=100_000), timeout=20))
    assert len(chunks) == 50
    assert all(len(c.data) == 100_000 for c in chunks)
    assert chunks[0].data[:5] == b"abcde"
    # An empty stream still ends with OK.
    assert list(stub.ServerStream(pb.StreamRequest(chunks=0, chunk_size=10), timeout=10)) == []


def test_client_stream(server):
    stub = server.stub()
    sizes = [0, 1, 1000, 70_000, 1_000_000, 5]
    r = stub.ClientStream(iter(pb.Chunk(data=b"x" * n) for n in sizes), timeout=20)
    assert (r.total_bytes, r.messages) == (sum(sizes), len(sizes))
    r = stub.ClientStream(iter([]), timeout=10)
    assert (r.total_bytes, r.messages) == (0, 0)


def test_bidi_ping_pong_then_burst(server):
    stub = server.stub()
    q = queue.Queue()

    def requests():
        while True:
            m = q.get()
            if m is None:
                return
            yield m

    responses = stub.Bidi(requests(), timeout=30)
    # Each reply arrives before the next request is sent: a real full-duplex stream.
    for i in range(20):
        q.put(pb.Chunk(data=f"ping {i}".encode()))
        assert next(responses).data == f"ping {i}".encode()
    burst = [pb.Chunk(data=bytes([i % 256]) * (i * 997)) for i in range(200)]
    for m in burst:
        q.put(m)
    q.put(None)
    echoed = list(responses)
    assert [m.data for m in echoed] == [m.data for m in burst]
    assert responses.code() == grpc.StatusCode.OK


# --- metadata, statuses, wire format -----------------------------------------------------

def test_metadata_roundtrip(server):
    stub = server.stub()
    binval = b"\x00\x01\xff\xfe binary\n\x00"
    md = [("x-plain", "some value"), ("x-data-bin", binval), ("x-other", "two words")]
    resp, call = stub.Unary.with_call(pb.UnaryRequest(payload=b"p", echo_metadata=True),
                                      metadata=md, timeout=10)
    assert resp.payload == b"p"
    for got in (call.initial_metadata(), call.trailing_metadata()):
        got = dict(got)
        assert got.get("x-plain") == "some value"
        assert got.get("x-other") == "two words"
        assert got.get("x-data-bin") == binval
    # Without the flag the server echoes nothing.
    _, call = stub.Unary.with_call(pb.UnaryRequest(), metadata=md, timeout=10)
    assert "x-plain" not in dict(call.initial_metadata())
    assert "x-plain" not in dict(call.trailing_metadata())


@pytest.mark.parametrize("messages_first", [0, 2])
def test_error_status_with_message_and_trailers(server, messages_first):
    stub = server.stub()
    binval = b"\x80\x00\xff"
    req = pb.FailRequest(code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message=UNICODE_MSG,
                         messages_first=messages_first,
                         trailers=[pb.Header(key="x-error-detail", value=b"why it failed"),
                                   pb.Header(key="x-error-bin", value=binval)])
    call = stub.Fail(req, timeout=10)
    got = []
    with pytest.raises(grpc.RpcError) as ei:
        for m in call:
            got.append(m)
    e = ei.value
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == UNICODE_MSG
    tmd = dict(e.trailing_metadata())
    assert tmd.get("x-error-detail") == "why it failed"
    assert tmd.get("x-error-bin") == binval
    assert len(got) == messages_first


@pytest.mark.parametrize("code", list(grpc.StatusCode)[1:])
def test_every_status_code(server, code):
    stub = server.stub()
    with pytest.raises(grpc.RpcError) as ei:
        list(stub.Fail(pb.FailRequest(code=code.value[0], message=f"code {code.name}"), timeout=10))
    assert ei.value.code() == code
    assert ei.value.details() == f"code {code.name}"


def _by_type(frames, t):
    return [f for f in frames if f["type"] == t]


def test_trailers_only_error_on_the_wire(server, tmpdir_short):
    req = pb.FailRequest(code=5, message=UNICODE_MSG)
    frames, trace = nghttp(tmpdir_short, server.tcp, "/testsvc.Test/Fail", grpc_frame(req))
    heads = _by_type(frames, "HEADERS")
    assert len(heads) == 1, trace
    assert heads[0]["flags"] & 0x1, "the only HEADERS frame must end the stream\n" + trace
    assert not _by_type(frames, "DATA"), trace
    h = dict(heads[0]["headers"])
    assert h.get(":status") == "200", trace
    assert h.get("content-type", "").startswith("application/grpc"), trace
    assert h.get("grpc-status") == "5", trace
    wire = h.get("grpc-message", "")
    # Percent-encoded: printable ASCII only on the wire, and it decodes back.
    assert wire and all(0x20 <= ord(c) <= 0x7e for c in wire), trace
    assert urllib.parse.unquote_to_bytes(wire) == UNICODE_MSG.encode(), trace


def test_error_after_messages_on_the_wire(server, tmpdir_short):
    req = pb.FailRequest(code=10, message="aborted", messages_first=1)
    frames, trace = nghttp(tmpdir_short, server.tcp, "/testsvc.Test/Fail", grpc_frame(req))
    kinds = [f["type"] for f in frames if f["type"] in ("HEADERS", "DATA")]
    assert kinds[0] == "HEADERS" and kinds[-1] == "HEADERS" and "DATA" in kinds, trace
    heads = _by_type(frames, "HEADERS")
    assert len(heads) == 2, trace
    assert not heads[0]["flags"] & 0x1 and heads[1]["flags"] & 0x1, trace
    assert dict(heads[0]["headers"]).get(":status") == "200", trace
    trailers = dict(heads[1]["headers"])
    assert trailers.get("grpc-status") == "10", trace
    assert trailers.get("grpc-message") == "aborted", trace


@pytest.mark.parametrize("path", ["/testsvc.Test/NoSuchMethod", "/no.such.Service/Method"])
def test_unknown_method_unimplemented(server, path):
    ch = server.channel()
    with pytest.raises(grpc.RpcError) as ei:
        ch.unary_unary(path)(b"", timeout=10)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # The connection is still good.
    assert server.stub(channel=ch).Unary(pb.UnaryRequest(payload=b"ok"), timeout=10).payload == b"ok"


def test_health(server):
    h = server.health()
    r = h.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert r.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as ei:
        h.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    # Watch sends the current status at once and stays open.
    watch = h.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


# --- deadlines and cancellation: the call's child process must die with it -------------

def test_deadline_client_side(server):
    stub = server.stub()
    t0 = time.monotonic()
    call = stub.Sleep(pb.SleepRequest(), timeout=0.3)
    pid = child_pid(call)
    assert pid in server.children()
    with pytest.raises(grpc.RpcError) as ei:
        list(call)
    took = time.monotonic() - t0
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.25 <= took < 3, took
    assert wait_for(lambda: not pid_exists(pid), 5), f"child {pid} survived its call"
    st = wait_for(lambda: (s := server.stats()).children == 0 and s.active_calls == 1 and s, 5)
    assert st, server.stats()
    # grpcio cancels at its own deadline, which races the server's timer.
    assert st.cancelled_calls + st.deadline_calls == 1, st


def test_deadline_server_side(server, tmpdir_short):
    # nghttp sends grpc-timeout but never cancels: only the server's timer ends the call.
    t0 = time.monotonic()
    result = {}

    def run():
        result["frames"], result["trace"] = nghttp(
            tmpdir_short, server.tcp, "/testsvc.Test/Sleep", grpc_frame(pb.SleepRequest()),
            headers=["grpc-timeout: 400m"])

    t = threading.Thread(target=run)
    t.start()
    kids = wait_for(server.children, 5)
    t.join(20)
    took = time.monotonic() - t0
    assert not t.is_alive()
    assert len(kids) == 1, "Sleep did not spawn its child"
    assert 0.35 <= took < 5, took
    frames, trace = result["frames"], result["trace"]
    ends = [f for f in frames if (f["type"] == "HEADERS" and f["flags"] & 1) or f["type"] == "RST_STREAM"]
    assert ends, "the stream never ended\n" + trace
    last_headers = _by_type(frames, "HEADERS")
    if ends[0]["type"] == "HEADERS":
        assert dict(last_headers[-1]["headers"]).get("grpc-status") == "4", trace
    assert wait_for(lambda: not pid_exists(kids[0]), 5), f"child {kids[0]} survived the deadline"
    st = wait_for(lambda: (s := server.stats()).children == 0 and s.deadline_calls == 1 and s, 5)
    assert st, server.stats()
    assert st.cancelled_calls == 0 and st.active_calls == 1, st


def test_cancellation(server):
    stub = server.stub()
    call = stub.Sleep(pb.SleepRequest(), timeout=30)
    pid = child_pid(call)
    assert pid in server.children()
    st = server.stats()
    assert st.children == 1 and st.active_calls == 2, st
    assert call.cancel()
    with pytest.raises(grpc.RpcError) as ei:
        list(call)
    assert ei.value.code() == grpc.StatusCode.CANCELLED
    assert wait_for(lambda: not pid_exists(pid), 5), f"child {pid} survived the cancellation"
    st = wait_for(lambda: (s := server.stats()).cancelled_calls == 1 and s.children == 0 and s, 5)
    assert st, server.stats()
    assert st.deadline_calls == 0 and st.active_calls == 1, st


def test_connection_loss_cancels_call(server):
    ch = server.channel()
    call = server.stub(channel=ch).Sleep(pb.SleepRequest(), timeout=30)
    pid = child_pid(call)
    ch.close()
    assert wait_for(lambda: not pid_exists(pid), 5), f"child {pid} survived its connection"
    st = wait_for(lambda: (s := server.stats()).children == 0 and s.active_calls == 1 and s, 5)
    assert st, server.stats()


# --- limits -----------------------------------------------------------------------------

def test_max_recv_message_size(start_server):
    s = start_server("--max-recv-msg", "1024")
    stub = s.stub()
    assert stub.Unary(pb.UnaryRequest(payload=b"x" * 900), timeout=10).payload == b"x" * 900
    with pytest.raises(grpc.RpcError) as ei:
        stub.Unary(pb.UnaryRequest(payload=b"x" * 2000), timeout=10)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as ei:
        stub.ClientStream(iter([pb.Chunk(data=b"y" * 10), pb.Chunk(data=b"y" * 5000)]), timeout=10)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Replies are not limited by the server's receive limit, and the server lives on.
    assert len(stub.Unary(pb.UnaryRequest(response_size=100_000), timeout=10).payload) == 100_000


# --- memory stays flat whatever the stream size -----------------------------------------

def _report(name, sampler, s):
    print(f"{name}: peak sampled VmRSS {sampler.peak / MIB:.1f} MiB, VmHWM {s.peak_rss() / MIB:.1f} MiB, "
          f"{len(sampler.samples)} samples, bound {RSS_BOUND / MIB:.0f} MiB")


def test_server_stream_1gib_rss(server):
    stub = server.stub()
    total = n = 0
    with RssSampler(server.pid) as sampler:
        for c in stub.ServerStream(pb.StreamRequest(chunks=1024, chunk_size=MIB), timeout=120):
            total += len(c.data)
            n += 1
    _report("server stream 1 GiB", sampler, server)
    assert (n, total) == (1024, 1024 * MIB)
    assert sampler.peak < RSS_BOUND
    assert server.peak_rss() < RSS_BOUND


def test_client_stream_1gib_rss(server):
    stub = server.stub()
    chunk = pb.Chunk(data=b"c" * MIB)
    with RssSampler(server.pid) as sampler:
        r = stub.ClientStream(iter([chunk] * 1024), timeout=120)
    _report("client stream 1 GiB", sampler, server)
    assert (r.total_bytes, r.messages) == (1024 * MIB, 1024)
    assert sampler.peak < RSS_BOUND
    assert server.peak_rss() < RSS_BOUND


def test_slow_reader_keeps_server_flat(server):
    stub = server.stub()
    # Effectively endless: without backpressure the server would queue it all.
    it = stub.ServerStream(pb.StreamRequest(chunks=1 << 20, chunk_size=MIB), timeout=60)
    assert pump_slowly(it, 5, 0.05) == 5   # warm up: windows filled, queue at its cap
    with RssSampler(server.pid, 0.02) as sampler:
        got = pump_slowly(it, 60, 0.05)
    it.cancel()
    first, peak = sampler.samples[0][1], sampler.peak
    print(f"slow reader: VmRSS {first / MIB:.1f} -> peak {peak / MIB:.1f} MiB over {got} slow reads")
    assert got == 60
    assert peak < RSS_BOUND
    assert peak - first < 32 * MIB, "server memory grows while the client reads slowly"
    st = wait_for(lambda: (s := server.stats()).cancelled_calls == 1 and s, 5)
    assert st, server.stats()


def test_paused_recv_bounds_buffered_input(start_server):
    s = start_server()
    stub = s.stub()
    sent = []

    def requests():
        # The first message makes the server stop reading for 2 s while we push on.
        yield pb.Chunk(data=b"p" * 10, pause_ms=2000)
        sent.append(time.monotonic())
        for _ in range(512):
            yield pb.Chunk(data=b"d" * MIB)

    t0 = time.monotonic()
    with RssSampler(s.pid, 0.02) as sampler:
        r = stub.ClientStream(requests(), timeout=120)
    took = time.monotonic() - t0
    during = [v for t, v in sampler.samples if t - t0 < 1.9]
    print(f"paused recv: VmRSS during the pause {min(during) / MIB:.1f}-{max(during) / MIB:.1f} MiB, "
          f"peak {sampler.peak / MIB:.1f} MiB, took {took:.1f} s")
    assert (r.total_bytes, r.messages) == (512 * MIB + 10, 513)
    assert took >= 2.0, "the server did not pause"
    assert max(during) - min(during) < 16 * MIB, "input buffered while paused"
    assert sampler.peak < RSS_BOUND


def test_bidi_backpressure_when_client_does_not_read(server):
    stub = server.stub()
    sent = [0]

    def requests():
        for _ in range(256):
            sent[0] += 1
            yield pb.Chunk(data=b"e" * MIB)

    responses = stub.Bidi(requests(), timeout=120)
    base = server.rss()
    # Not reading for a while: the server's echoes back up, so it must stop
    # reading (and the client stop sending) instead of queueing 256 MiB.
    with RssSampler(server.pid, 0.02) as sampler:
        time.sleep(1.5)
    stalled_at = sent[0]
    got = sum(len(m.data) for m in responses)
    print(f"bidi stall: client got {stalled_at} messages out, server VmRSS {base / MIB:.1f} -> "
          f"{sampler.peak / MIB:.1f} MiB")
    assert got == 256 * MIB
    assert stalled_at < 128, "nothing held the client back while nobody read the echoes"
    assert sampler.peak - base < 32 * MIB


def test_pause_recv_every_message(start_server):
    s = start_server("--pause-recv")
    stub = s.stub()
    sizes = [(i * 7919) % 300_000 for i in range(300)]
    r = stub.ClientStream(iter(pb.Chunk(data=b"z" * n) for n in sizes), timeout=60)
    assert (r.total_bytes, r.messages) == (sum(sizes), len(sizes))


# --- many calls, many listeners ----------------------------------------------------------

def test_1000_concurrent_calls_one_connection(server):
    ch = server.channel(server.tcp)
    stub = server.stub(channel=ch)
    futs = [stub.Unary.future(pb.UnaryRequest(payload=f"call {i}".encode(), delay_ms=2500), timeout=60)
            for i in range(1000)]
    st = wait_for(lambda: (s := server.stats(ch)).active_calls >= 1001 and s, 20, 0.05)
    assert st, f"never saw 1000 calls in flight at once: {server.stats(ch)}"
    assert st.connections == 1, st
    assert st.tcp_peers_seen == 1, st
    for i, f in enumerate(futs):
        assert f.result().payload == f"call {i}".encode()
    st = server.stats(ch)
    assert st.active_calls == 1 and st.connections == 1 and st.tcp_peers_seen == 1, st


def test_oversized_headers_reset_only_their_stream(server):
    ch = server.channel()
    stub = server.stub(channel=ch)
    other = stub.Unary.future(pb.UnaryRequest(payload=b"bystander", delay_ms=500), timeout=10)
    # 100 KB of metadata in fields nghttp2 accepts, over the server's 64 KiB header limit.
    md = [(f"x-big-{i}", "v" * 5000) for i in range(20)]
    with pytest.raises(grpc.RpcError) as ei:
        stub.Unary(pb.UnaryRequest(payload=b"a"), metadata=md, timeout=10)
    assert ei.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED), ei.value
    assert other.result().payload == b"bystander"
    st = server.stats(ch)
    assert st.connections == 1 and st.active_calls == 1, st


def test_several_listeners(start_server, tmpdir_short):
    s = start_server(addrs=[f"unix:{tmpdir_short}/a.sock", "tcp://127.0.0.1:0", "127.0.0.1:0",
                            f"unix://{tmpdir_short}/b.sock"])
    assert len(s.addresses) == 4
    assert s.addresses[0] == f"unix:{tmpdir_short}/a.sock"
    assert s.addresses[3] == f"unix:{tmpdir_short}/b.sock"
    ports = [int(a.rsplit(":", 1)[1]) for a in s.addresses[1:3]]
    assert all(p > 0 for p in ports) and ports[0] != ports[1]
    for a in s.addresses:
        assert s.stub(a).Unary(pb.UnaryRequest(payload=a.encode()), timeout=10).payload == a.encode()
        r = s.health(a).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert r.status == health_pb2.HealthCheckResponse.SERVING


def test_stale_unix_socket_is_replaced(start_server, tmpdir_short):
    path = tmpdir_short / "stale.sock"
    sk = socket.socket(socket.AF_UNIX)
    sk.bind(str(path))
    sk.close()   # leaves the file behind, as a crashed server does
    s = start_server(addrs=[f"unix:{path}"])
    assert s.stub().Unary(pb.UnaryRequest(payload=b"hi"), timeout=10).payload == b"hi"


# --- graceful shutdown ------------------------------------------------------------------

def _connect_refused(addr):
    if addr.startswith("unix:"):
        sk = socket.socket(socket.AF_UNIX)
        target = addr[len("unix:"):]
    else:
        sk = socket.socket()
        host, port = addr.rsplit(":", 1)
        target = (host, int(port))
    try:
        sk.connect(target)
        return False
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except ConnectionResetError:
        # the connection sat in the backlog of a listener closing just then:
        # not an answer either way, so the caller asks again
        return False
    finally:
        sk.close()


def test_graceful_shutdown(start_server):
    s = start_server("--grace-ms", "10000")
    stub = s.stub(s.tcp)
    fut = stub.Unary.future(pb.UnaryRequest(payload=b"in flight", delay_ms=1500), timeout=30)
    assert wait_for(lambda: s.stats().active_calls == 2, 5), "call never reached the server"
    s.signal(signal.SIGTERM)
    assert wait_for(lambda: _connect_refused(s.tcp) and _connect_refused(s.unix), 3), \
        "new connections still accepted after SIGTERM"
    assert fut.result().payload == b"in flight"
    done = time.monotonic()
    rc = s.wait(5)
    assert rc == 0, f"exit status {rc} (None: still running 5 s after its last call ended)"
    assert time.monotonic() - done < 3, "server waited out the grace period with nothing in flight"


def test_shutdown_cancels_calls_after_grace(start_server):
    s = start_server("--grace-ms", "500")
    call = s.stub().Sleep(pb.SleepRequest(), timeout=30)
    pid = child_pid(call)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    with pytest.raises(grpc.RpcError) as ei:
        list(call)
    assert ei.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), ei.value
    assert s.wait(10) == 0
    assert 0.4 <= time.monotonic() - t0 < 5
    assert not pid_exists(pid), f"child {pid} outlived the server"


# --- our C client against our server -----------------------------------------------------

C_SCENARIOS = ["unary", "metadata", "serverstream", "clientstream", "bidi", "errors", "deadline",
               "cancel", "concurrent", "unimplemented", "toolarge", "health"]


def _run_client(addr, *scenarios, timeout=120):
    p = subprocess.run([binary("grpc-testclient"), addr, *scenarios], capture_output=True,
                       text=True, timeout=timeout, env=server_env())
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("scenario", C_SCENARIOS)
def test_c_client(server, scenario):
    rc, out, err = _run_client(server.unix, scenario)
    assert out.strip() == f"ok {scenario}" and rc == 0, out + err


def test_c_client_over_tcp(server):
    rc, out, err = _run_client(server.tcp, "unary", "metadata", "bidi", "errors", "toolarge")
    assert rc == 0 and out.count("ok ") == 5, out + err


def test_c_client_reconnect(start_server, tmpdir_short):
    addr = f"unix:{tmpdir_short}/re.sock"
    s1 = start_server(addrs=[addr])
    p = subprocess.Popen([binary("grpc-testclient"), addr, "reconnect"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server_env())
    try:
        line = p.stdout.readline()
        assert line.strip() == "restart-server", line + p.stderr.read()
        # A crash, not a shutdown: the call in flight must end UNAVAILABLE; the
        # socket file stays behind for the new server to replace.
        s1.crash()
        start_server(addrs=[addr])
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and out.strip() == "ok reconnect", out + err


def test_c_client_goaway(start_server):
    s = start_server("--grace-ms", "10000")
    p = subprocess.Popen([binary("grpc-testclient"), s.unix, "goaway"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=server_env())
    try:
        line = p.stdout.readline()
        assert line.strip() == "shutdown-server", line + p.stderr.read()
        s.signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and out.strip() == "ok goaway", out + err
    assert s.wait(10) == 0
