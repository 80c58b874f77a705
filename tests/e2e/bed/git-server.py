#!/usr/bin/env python3
"""The test bed's Git server: Git's own smart HTTP backend (`git http-backend`, from Debian's git)
behind a small HTTP server on 127.0.0.1, with Basic authentication.

usage: git-server.py PORT ROOT USERS
  ROOT   folder of bare repositories (served as http://127.0.0.1:PORT/<name>.git)
  USERS  comma-separated user:password:mode, mode rw (may push) or ro (may only fetch)
Every request needs a known user. A ro user is refused (403) anything that pushes.
"""
import base64
import http.server
import os
import subprocess
import sys
import urllib.parse

PORT, ROOT, USERS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ACCOUNTS = {}
for entry in USERS.split(","):
    user, password, mode = entry.split(":")
    ACCOUNTS[user] = (password, mode)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("git-server: %s %s\n" % (self.command, fmt % args))

    def user(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, password = base64.b64decode(header[6:]).decode().split(":", 1)
        except Exception:
            return None
        known = ACCOUNTS.get(user)
        return (user, known[1]) if known and known[0] == password else None

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def refuse(self, code, message):
        self.send_response(code)
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="emco test bed"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        self.wfile.write(message.encode())

    def serve(self):
        try:
            self.answer()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def answer(self):
        url = urllib.parse.urlsplit(self.path)
        # The whole request is read before any answer, so that the connection can be kept.
        data = self.body() if self.command == "POST" else b""
        account = self.user()
        if account is None:
            return self.refuse(401, "authentication required\n")
        pushing = "git-receive-pack" in url.path or "service=git-receive-pack" in url.query
        if pushing and account[1] != "rw":
            return self.refuse(403, "this user may not push\n")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": ROOT,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": urllib.parse.unquote(url.path),
            "QUERY_STRING": url.query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_USER": account[0],
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        env["CONTENT_LENGTH"] = str(len(data))
        done = subprocess.run(["git", "http-backend"], input=data, env=env, capture_output=True)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode(errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = serve
    do_POST = serve


http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
