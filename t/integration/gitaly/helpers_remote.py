"""A real remote for the remote tests: `git http-backend` behind Python's http.server on loopback,
optionally demanding an Authorization header, recording what each request carried."""
import http.server
import os
import subprocess
import threading


class GitHTTP:
    """Serves the bare repositories under `root` as http://127.0.0.1:<port>/<name>.

    `auth`: when set, requests without exactly this Authorization header get 401.
    `hang`: an Event; while it is clear every request waits on it (a remote that stalls)."""

    def __init__(self, root, auth=None):
        self.root = root
        self.auth = auth
        self.hang = None
        self.seen = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _serve(self):
                outer.seen.append((self.command, self.path, dict(self.headers)))
                if outer.hang is not None:
                    outer.hang.wait(30)
                if outer.auth is not None and self.headers.get("Authorization") != outer.auth:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": outer.root,
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "GIT_CONFIG_GLOBAL": "/dev/null",
                    "GIT_CONFIG_SYSTEM": "/dev/null",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "REMOTE_ADDR": "127.0.0.1",
                    "REMOTE_USER": "git",
                }
                if self.headers.get("Git-Protocol"):
                    env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                body = b""
                if self.headers.get("Content-Length"):
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                    env["CONTENT_LENGTH"] = str(len(body))
                elif self.headers.get("Transfer-Encoding") == "chunked":
                    chunks = []
                    while True:
                        n = int(self.rfile.readline().strip(), 16)
                        if n == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(n))
                        self.rfile.readline()
                    body = b"".join(chunks)
                    env["CONTENT_LENGTH"] = str(len(body))
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                out = subprocess.run(["git", "http-backend"], env=env, input=body, capture_output=True).stdout
                head, _, rest = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.split(b"\r\n"):
                    k, _, v = line.decode().partition(":")
                    if k.lower() == "status":
                        status = int(v.strip().split()[0])
                    elif k:
                        headers.append((k, v.strip()))
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(rest)))
                self.end_headers()
                self.wfile.write(rest)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass    # a client that gave up (a fetch stopped by its timeout) is expected

        self.srv = Server(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name, userinfo=""):
        return "http://%s127.0.0.1:%d/%s" % (userinfo + "@" if userinfo else "", self.port, name)

    def stop(self):
        if self.hang is not None:
            self.hang.set()
        self.srv.shutdown()
        self.srv.server_close()
