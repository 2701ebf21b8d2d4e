"""Helpers for the hook and operation tests: a fake GitLab internal API, hook
payloads as the node writes them, and custom hooks."""
import base64
import hashlib
import hmac
import json
import os
import socketserver
import stat
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ZERO = "0" * 40
GITLAB_SECRET = "gitlab-shell-secret"


class FakeGitLab:
    """GitLab's /api/v4/internal on loopback. `allowed` decides /allowed:
    (http status, json body). Every request is recorded as
    (path, headers dict, parsed json body)."""

    def __init__(self, allowed=(200, {"status": True, "message": ""}),
                 pre_receive=(200, {"reference_counter_increased": True}),
                 post_receive=(200, {"reference_counter_decreased": True, "messages": []}),
                 unix_path=None, url_root=""):
        prefix = url_root.rstrip("/") + "/api/v4/internal"
        self.responses = {prefix + "/allowed": allowed,
                          prefix + "/pre_receive": pre_receive,
                          prefix + "/post_receive": post_receive}
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                fake.requests.append((self.path, dict(self.headers), body))
                status, resp = fake.responses.get(self.path, (404, {"message": "not found"}))
                data = resp if isinstance(resp, bytes) else json.dumps(resp).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.url_root = url_root
        if unix_path:
            class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
                daemon_threads = True

            class UnixHandler(Handler):
                def address_string(self):
                    return "unix"

            self.server = UnixServer(unix_path, UnixHandler)
            self.url = "http+unix://" + urllib.parse.quote(unix_path, safe="")
        else:
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def config(self):
        c = '\n[gitlab]\nurl = "%s"\nsecret = "%s"\n' % (self.url, GITLAB_SECRET)
        if self.url_root:
            c += 'relative_url_root = "%s"\n' % self.url_root
        return c

    def paths(self):
        return [r[0] for r in self.requests]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def check_jwt(token, secret=GITLAB_SECRET):
    """Verify an HS256 JWT as GitLab does; returns the claims."""
    head, claims, sig = token.split(".")
    want = hmac.new(secret.encode(), (head + "." + claims).encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(want, b64url_decode(sig)), "bad JWT signature"
    assert json.loads(b64url_decode(head)) == {"alg": "HS256", "typ": "JWT"}
    return json.loads(b64url_decode(claims))


def payload(node, repo, hooks=15, tx=None, user=None, token=True):
    """GITALY_HOOKS_PAYLOAD=... for `repo` (a Repository message) on `node`."""
    r = {}
    if repo.storage_name:
        r["storageName"] = repo.storage_name
    if repo.relative_path:
        r["relativePath"] = repo.relative_path
    if repo.gl_repository:
        r["glRepository"] = repo.gl_repository
    run = node.runtime_dir
    sock = None
    for d in os.listdir(run):
        cand = os.path.join(run, d, "sock.d", "intern")
        if os.path.exists(cand):
            sock = cand
    p = {
        "requested_hooks": hooks,
        "object_format": "sha1",
        "runtime_dir": os.path.dirname(os.path.dirname(sock)) if sock else "",
        "internal_socket": sock or "",
        "internal_socket_token": node.token if token else "",
        "transaction": tx,
        "user_details": user if user is not None else {
            "username": "jane", "userid": "user-123", "protocol": "web", "remote_ip": "1.2.3.4"},
        "repository": json.dumps(r),
    }
    return "GITALY_HOOKS_PAYLOAD=" + base64.b64encode(json.dumps(p).encode()).decode()


def write_custom_hook(repo_path, name, script, subdir=None):
    d = os.path.join(repo_path, "custom_hooks")
    if subdir:
        d = os.path.join(d, subdir)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(script)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _varint(buf, i):
    shift = v = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def _fields(buf):
    """(number, wire type, value) of each field of a protobuf message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            raise ValueError("bad wire type %d" % wt)
        yield num, wt, v


def status_details(err):
    """The google.rpc.Status in grpc-status-details-bin of an RpcError:
    (code, message, [(type_url, value bytes)])."""
    md = dict(err.trailing_metadata() or ())
    raw = md.get("grpc-status-details-bin")
    if raw is None:
        return None
    code, message, details = 0, "", []
    for num, _, v in _fields(raw):
        if num == 1:
            code = v
        elif num == 2:
            message = v.decode()
        elif num == 3:
            url, value = "", b""
            for n2, _, v2 in _fields(v):
                if n2 == 1:
                    url = v2.decode()
                elif n2 == 2:
                    value = v2
            details.append((url, value))
    return code, message, details


def detail(err, message_class):
    """The single detail of `err`, decoded as `message_class` (its type URL checked)."""
    code, message, details = status_details(err)
    assert code == err.code().value[0]
    assert message == err.details()
    [(url, value)] = details
    assert url == "type.googleapis.com/" + message_class.DESCRIPTOR.full_name
    return message_class.FromString(value)


def hook_processes(marker):
    """pids of running processes whose command line mentions `marker`."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if marker.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids
