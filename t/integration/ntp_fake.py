"""A fake NTP server for ClockSynced tests: answers client-mode requests on 127.0.0.1 from the real
clock shifted by `offset` seconds, with the header fields a test sets (stratum, leap, mode, root
dispersion), or stays silent. Written from RFC 5905, apart from our C client (lib/ntp)."""
import socket
import struct
import threading
import time

NTP_EPOCH = 2208988800


def to_ntp(t):
    sec = int(t)
    return (sec + NTP_EPOCH) & 0xFFFFFFFF, int((t - sec) * (1 << 32)) & 0xFFFFFFFF


class FakeNTP:
    def __init__(self, offset=0.0, stratum=2, leap=0, mode=4, dispersion=0, silent=False, echo_origin=True):
        self.offset, self.stratum, self.leap, self.mode = offset, stratum, leap, mode
        self.dispersion, self.silent, self.echo_origin = dispersion, silent, echo_origin
        self.requests = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) < 48:
                continue
            self.requests += 1
            if self.silent:
                continue
            now = time.time() + self.offset
            origin = data[40:48] if self.echo_origin else b"\0" * 8
            ref = to_ntp(now - 10)
            rx = to_ntp(now)
            tx = to_ntp(now + 0.0001)
            pkt = struct.pack("!BBbbII4s", self.leap << 6 | 4 << 3 | self.mode, self.stratum, 6, -20,
                              0, self.dispersion << 16, b"TEST")
            pkt += struct.pack("!II", *ref) + origin + struct.pack("!II", *rx) + struct.pack("!II", *tx)
            self.sock.sendto(pkt, peer)

    def close(self):
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()
