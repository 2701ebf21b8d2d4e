"""Helpers for the transport tests: gitaly-ssh environments, a throttling ssh
wrapper, a smart-HTTP front end that proxies a real git client to the node,
and process inspection for cancellation checks."""
import gzip
import http.server
import json
import os
import socketserver
import subprocess
import sys
import threading
import time

from gitaly_itest import BUILD, TOKEN, git, pb

GITALY_SSH = os.path.join(BUILD, "gitaly-ssh", "gitaly-ssh")
PYTHON = "/usr/bin/python3"


def payload(node, relative_path, storage="default", **extra):
    """protobuf JSON of a request naming the repository (lowerCamelCase keys)."""
    body = {"repository": {"storageName": storage, "relativePath": relative_path}}
    body.update(extra)
    return json.dumps(body)


def ssh_env(node, verb, body, token=TOKEN, address=None, wrapper=None, **more):
    """Environment that makes git reach the node through gitaly-ssh <verb>."""
    cmd = "%s %s" % (GITALY_SSH, verb)
    if wrapper:
        cmd = "%s %s %s" % (PYTHON, wrapper, cmd)
    env = {
        "GIT_SSH_COMMAND": cmd,
        "GIT_SSH_VARIANT": "simple",
        "GITALY_PAYLOAD": body,
        "GITALY_ADDRESS": address if address is not None else ("unix:" + node.socket),
        "GITALY_TOKEN": token or "",
    }
    env.update(more)
    return env


def run_gitaly_ssh(args, env, input=b"", timeout=30):
    """Run gitaly-ssh directly with only `env` (plus PATH)."""
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            e[k] = os.environ[k]
    e.update(env)
    return subprocess.run([GITALY_SSH] + list(args), env=e, input=input, capture_output=True,
                          timeout=timeout)


def refs(path):
    return git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path)


def fsck(path):
    git("fsck", "--strict", "--no-dangling", cwd=path)


# A stand-in for ssh that slows the server's output down to `THROTTLE_RATE`
# bytes/s, records how much went through in `THROTTLE_COUNT` and the pid of
# gitaly-ssh in `THROTTLE_PID`.
THROTTLE = r'''
import os, subprocess, sys, time
rate = int(os.environ.get("THROTTLE_RATE", "1000000"))
count_file = os.environ["THROTTLE_COUNT"]
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
with open(os.environ["THROTTLE_PID"], "w") as f:
    f.write(str(child.pid))
total = 0
start = time.time()
out = sys.stdout.buffer
while True:
    chunk = child.stdout.read1(16384)
    if not chunk:
        break
    try:
        out.write(chunk)
        out.flush()
    except BrokenPipeError:
        sys.exit(1)
    total += len(chunk)
    with open(count_file, "w") as f:
        f.write(str(total))
    ahead = total / rate - (time.time() - start)
    if ahead > 0:
        time.sleep(ahead)
sys.exit(child.wait())
'''


def write_throttle(dirpath):
    path = os.path.join(dirpath, "throttle.py")
    with open(path, "w") as f:
        f.write(THROTTLE)
    return path


def processes_touching(path):
    """Pids whose command line mentions `path` or whose cwd is inside it."""
    found = []
    real = os.path.realpath(path)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except OSError:
            continue
        if real in cmd or path in cmd or cwd == real or cwd.startswith(real + "/"):
            found.append((int(pid), cmd))
    return found


def wait_until(pred, timeout=10.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def rss_kib(pid, field="VmRSS"):
    """Resident memory of `pid` in KiB; field="VmHWM" gives the peak so far."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def log_calls(node, method):
    """The node's "finished call" records for `method` (JSON log)."""
    out = []
    for line in node.log().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("grpc.method") == method:
            out.append(rec)
    return out


class SmartHTTP:
    """A minimal Workhorse: serves git's smart-HTTP push protocol by calling
    InfoRefsUploadPack/InfoRefsReceivePack and PostReceivePack on the node."""

    def __init__(self, node, storage="default", gl_id="user-1"):
        self.node = node
        self.storage = storage
        self.gl_id = gl_id
        self.stub = node.stub("SmartHTTPService")
        self.posts = 0
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _repo(self, suffix):
                path = self.path.split("?")[0]
                return path[1:-len(suffix)]

            def _reply(self, status, ctype, body):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                import grpc
                if "/info/refs?service=" not in self.path:
                    return self._reply(404, "text/plain", b"not found\n")
                service = self.path.split("service=")[1].split("&")[0]
                rel = self._repo("/info/refs")
                smarthttp = pb("smarthttp")
                req = smarthttp.InfoRefsRequest(repository=front._repo_msg(rel),
                                                git_protocol=self.headers.get("Git-Protocol", ""))
                call = front.stub.InfoRefsReceivePack if service == "git-receive-pack" \
                    else front.stub.InfoRefsUploadPack
                try:
                    body = b"".join(r.data for r in call(req))
                except grpc.RpcError as e:
                    return self._reply(500, "text/plain", (e.details() + "\n").encode())
                self._reply(200, "application/x-%s-advertisement" % service, body)

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                return data

            def do_POST(self):
                import grpc
                if not self.path.endswith("/git-receive-pack"):
                    return self._reply(404, "text/plain", b"not found\n")
                data = self._body()
                rel = self._repo("/git-receive-pack")
                front.posts += 1
                smarthttp = pb("smarthttp")

                def requests():
                    yield smarthttp.PostReceivePackRequest(
                        repository=front._repo_msg(rel), gl_id=front.gl_id,
                        gl_repository="project-1", gl_username="user",
                        git_protocol=self.headers.get("Git-Protocol", ""))
                    for i in range(0, len(data), 32768):
                        yield smarthttp.PostReceivePackRequest(data=data[i:i + 32768])
                try:
                    body = b"".join(r.data for r in front.stub.PostReceivePack(requests()))
                except grpc.RpcError as e:
                    return self._reply(500, "text/plain", (e.details() + "\n").encode())
                self._reply(200, "application/x-git-receive-pack-result", body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _repo_msg(self, rel):
        return pb("shared").Repository(storage_name=self.storage, relative_path=rel,
                                       gl_repository="project-1")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
