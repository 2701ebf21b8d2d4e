"""A client for Gitaly's sidechannel, written from the protocol facts alone
(docs/technical/sidechannel.md, docs/technical/yamux.md), apart from our C
code, so that a bug shared by our client and server cannot hide.

    conn = BackchannelConn("unix:/path/to/gitaly.sock")   # or "127.0.0.1:port"
    stub = node.stub("SSHService", target=conn.target)     # grpcio over yamux stream 1
    with conn.sidechannel(handler) as md:                   # handler(sc) runs on the stream
        stub.SSHUploadPackWithSidechannel(req, metadata=md)

The connection: connect, write b"backchannel", run a yamux client session.
grpcio cannot run over a yamux stream, so a private Unix socket stands in:
grpcio connects to it and its bytes are pumped through the first stream the
client opens. Streams the server opens start with b"sidechannel" and the
8-byte big-endian id the call carried in "gitaly-sidechannel-id"; the client
answers b"ok". Then it writes its data as pkt-lines and ends it with a flush
("0000"); what the server writes back is raw, up to the server's FIN.
"""
import os
import socket
import struct
import tempfile
import threading
import time

VERSION = 0
T_DATA, T_WINDOW, T_PING, T_GOAWAY = 0, 1, 2, 3
F_SYN, F_ACK, F_FIN, F_RST = 1, 2, 4, 8
INITIAL_WINDOW = 256 * 1024
MAX_FRAME = 16 * 1024
MAX_PKT = 65520


class StreamReset(Exception):
    pass


class Stream:
    def __init__(self, session, sid):
        self.session = session
        self.id = sid
        self.cond = threading.Condition(session.lock)
        self.recv = bytearray()
        self.recv_window = INITIAL_WINDOW   # what the peer may still send us
        self.send_window = INITIAL_WINDOW   # what we may still send
        self.fin_in = False                 # the peer's FIN arrived
        self.fin_out = False
        self.reset = False

    # --- reading ---
    def read(self, n=65536, timeout=60):
        """Bytes as they come; b"" at the peer's FIN. Raises StreamReset."""
        deadline = time.time() + timeout
        with self.cond:
            while not self.recv and not self.fin_in and not self.reset:
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError("yamux read timed out")
                self.cond.wait(left)
            data = bytes(self.recv[:n])
            del self.recv[:n]
            self.recv_window += len(data)
            grant = data and not self.fin_in and not self.reset
            if not data and self.reset:
                raise StreamReset("stream %d reset" % self.id)
        if grant:
            # hand back what was consumed: the peer may send that much more
            self.session._send(T_WINDOW, 0, self.id, len(data))
        return data

    def read_exactly(self, n, timeout=60):
        out = b""
        while len(out) < n:
            d = self.read(n - len(out), timeout)
            if not d:
                raise EOFError("EOF after %d of %d bytes" % (len(out), n))
            out += d
        return out

    def read_all(self, timeout=120):
        out = bytearray()
        while True:
            d = self.read(1 << 20, timeout)
            if not d:
                return bytes(out)
            out += d

    # --- writing ---
    def write(self, data):
        data = memoryview(bytes(data))
        while len(data):
            with self.cond:
                while self.send_window == 0 and not self.reset and not self.session.dead:
                    self.cond.wait(1)
                if self.reset or self.session.dead:
                    raise StreamReset("stream %d reset" % self.id)
                if self.fin_out:
                    raise BrokenPipeError("write after close")
                n = min(len(data), self.send_window, MAX_FRAME)
                self.send_window -= n
            self.session._send(T_DATA, 0, self.id, n, bytes(data[:n]))
            data = data[n:]

    def close_write(self):
        """Half close: FIN."""
        with self.cond:
            if self.fin_out or self.reset:
                return
            self.fin_out = True
        self.session._send(T_WINDOW, F_FIN, self.id, 0)

    def abort(self):
        """RST."""
        with self.cond:
            if self.reset:
                return
            self.reset = True
            self.cond.notify_all()
        self.session._send(T_WINDOW, F_RST, self.id, 0)


class Session:
    """A yamux client session (odd stream ids) on a connected socket."""

    def __init__(self, sock, on_accept):
        self.sock = sock
        self.on_accept = on_accept
        self.lock = threading.Lock()
        self.wlock = threading.Lock()
        self.streams = {}
        self.next_id = 1
        self.dead = False
        self.goaway = None
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()

    def _send(self, typ, flags, sid, length, payload=b""):
        hdr = struct.pack(">BBHII", VERSION, typ, flags, sid, length)
        with self.wlock:
            try:
                self.sock.sendall(hdr + payload)
            except OSError:
                self._die()

    def open(self):
        with self.lock:
            sid = self.next_id
            self.next_id += 2
            st = Stream(self, sid)
            self.streams[sid] = st
        self._send(T_WINDOW, F_SYN, sid, 0)
        return st

    def _recv_exactly(self, n):
        buf = bytearray()
        while len(buf) < n:
            d = self.sock.recv(n - len(buf))
            if not d:
                raise EOFError
            buf += d
        return bytes(buf)

    def _die(self):
        with self.lock:
            self.dead = True
            for st in self.streams.values():
                if not st.fin_in:
                    st.reset = True
                st.cond.notify_all()

    def close(self):
        try:
            self._send(T_GOAWAY, 0, 0, 0)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._die()

    def _read_loop(self):
        try:
            while True:
                ver, typ, flags, sid, length = struct.unpack(">BBHII", self._recv_exactly(12))
                if ver != VERSION:
                    raise ValueError("bad yamux version %d" % ver)
                payload = self._recv_exactly(length) if typ == T_DATA and length else b""
                if typ == T_PING:
                    if flags & F_SYN:
                        self._send(T_PING, F_ACK, 0, length)
                    continue
                if typ == T_GOAWAY:
                    self.goaway = length
                    continue
                self._stream_frame(typ, flags, sid, length, payload)
        except (OSError, EOFError, ValueError):
            pass
        self._die()

    def _stream_frame(self, typ, flags, sid, length, payload):
        accepted = None
        with self.lock:
            st = self.streams.get(sid)
            if flags & F_SYN:
                if st is not None or sid % 2 == 1:
                    raise ValueError("bad SYN for %d" % sid)
                st = Stream(self, sid)
                self.streams[sid] = st
                accepted = st
            if st is None:
                return
            if typ == T_WINDOW:
                st.send_window += length
            elif typ == T_DATA:
                if len(payload) > st.recv_window:
                    raise ValueError("peer overran the window")
                st.recv_window -= len(payload)
                st.recv += payload
            if flags & F_FIN:
                st.fin_in = True
            if flags & F_RST:
                st.reset = True
            st.cond.notify_all()
        if accepted is not None:
            self._send(T_WINDOW, F_ACK, sid, 0)
            threading.Thread(target=self.on_accept, args=(accepted,), daemon=True).start()


class Sidechannel:
    """The client's end of one sidechannel: pkt-line framed writes, a flush
    to finish, raw reads."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, data):
        for i in range(0, len(data), MAX_PKT - 4):
            chunk = data[i:i + MAX_PKT - 4]
            self.stream.write(b"%04x" % (len(chunk) + 4) + chunk)

    def write_raw(self, data):
        self.stream.write(data)

    def close_write(self):
        self.stream.write(b"0000")

    def read(self, n=65536, timeout=60):
        return self.stream.read(n, timeout)

    def read_all(self, timeout=120):
        return self.stream.read_all(timeout)


class _Waiter:
    def __init__(self, conn, sid, handler, answer):
        self.conn, self.id, self.handler, self.answer = conn, sid, handler, answer
        self.done = threading.Event()
        self.error = None
        self.result = None
        self.arrived = False

    def __enter__(self):
        return [("gitaly-sidechannel-id", str(self.id))]

    def __exit__(self, *exc):
        with self.conn.lock:
            self.conn.waiters.pop(self.id, None)
        if self.arrived:
            self.done.wait(60)
        return False

    def run(self, stream):
        try:
            stream.write(self.answer)
            self.result = self.handler(Sidechannel(stream))
        except Exception as e:  # noqa: BLE001 (reported to the test)
            self.error = e
        finally:
            self.done.set()


class BackchannelConn:
    """One backchannel connection to a node, bridged to grpcio."""

    def __init__(self, address, magic=b"backchannel"):
        if address.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(address[len("unix:"):])
        else:
            host, port = address.rsplit(":", 1)
            sock = socket.create_connection((host, int(port)))
        sock.sendall(magic)
        self.lock = threading.Lock()
        self.waiters = {}
        self.next_id = 1
        self.unknown = 0            # sidechannels for ids nobody waits for
        self.session = Session(sock, self._accept)
        self.grpc_stream = self.session.open()
        self.dir = tempfile.mkdtemp(prefix="bc-")
        path = os.path.join(self.dir, "s")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.target = "unix:" + path
        threading.Thread(target=self._bridge, daemon=True).start()

    def _bridge(self):
        # grpcio's one connection <-> the first yamux stream
        try:
            c, _ = self.listener.accept()
        except OSError:
            return
        self.listener.close()

        def up():
            try:
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    self.grpc_stream.write(d)
            except (OSError, StreamReset):
                pass
            self.grpc_stream.close_write()

        threading.Thread(target=up, daemon=True).start()
        try:
            while True:
                d = self.grpc_stream.read(65536, timeout=3600)
                if not d:
                    break
                c.sendall(d)
        except (OSError, StreamReset, TimeoutError):
            pass
        try:
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def sidechannel(self, handler, answer=b"ok"):
        """Register `handler(sidechannel)`; use the result as a context manager
        whose value is the call's metadata."""
        with self.lock:
            sid = self.next_id
            self.next_id += 1
            w = _Waiter(self, sid, handler, answer)
            self.waiters[sid] = w
        return w

    def _accept(self, stream):
        try:
            head = stream.read_exactly(11 + 8, timeout=10)
        except (EOFError, StreamReset, TimeoutError):
            stream.abort()
            return
        if head[:11] != b"sidechannel":
            stream.abort()   # this client serves no gRPC of its own
            return
        sid = struct.unpack(">q", head[11:])[0]
        with self.lock:
            w = self.waiters.pop(sid, None)
            if w is None:
                self.unknown += 1
        if w is None:
            stream.close_write()
            return
        w.arrived = True
        w.run(stream)

    def close(self):
        self.session.close()
        try:
            self.listener.close()
        except OSError:
            pass
