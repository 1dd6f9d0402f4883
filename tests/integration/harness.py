"""Helpers for the slotlock integration tests.

Tests are written against the HTTP contract (docs: SPEC.md and the issue's
API notes), never against the server's code. Everything here raises
AssertionError with a message precise enough to tell a test bug from a
server bug: the request, the reply, and where relevant the server's log.

run.py sets SLOTLOCKD before importing the test modules. REDIS_URL and
DATABASE_URL come from the environment.
"""

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import secrets
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

SLOTLOCKD = None  # absolute path, set by run.py
WORKDIR = tempfile.mkdtemp(prefix="slotlock-it-")

# Bounds. Generous enough for an ASan build (about 3x slower).
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 15.0

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
JSON_CT = "application/json; charset=utf-8"


def timeout(seconds):
    """Per-test time limit for run.py (default 30 s)."""

    def wrap(fn):
        fn.timeout = seconds
        return fn

    return wrap


def env_required(name):
    val = os.environ.get(name)
    if not val:
        raise AssertionError(f"environment variable {name} is not set (run.py needs a running throw-away service)")
    return val


def fail(msg):
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


# --------------------------------------------------------------------------
# Process bookkeeping: every child we start is tracked so run.py can kill
# leftovers (e.g. after a test timed out) and show the logs of the servers
# a failing test used.

_procs_lock = threading.Lock()
_procs = []  # every Popen we started
_touched = []  # servers used by the current test (for log tails on failure)


def _track(proc):
    with _procs_lock:
        _procs.append(proc)


def touch(server):
    with _procs_lock:
        if server not in _touched:
            _touched.append(server)


def reset_touched():
    with _procs_lock:
        _touched.clear()


def touched_servers():
    with _procs_lock:
        return list(_touched)


def kill_leftovers():
    with _procs_lock:
        procs = list(_procs)
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass


def free_port():
    """A free 127.0.0.1 port in 17000-17999 (the range agreed for this job)."""
    for _ in range(200):
        port = random.randint(17000, 17999)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    fail("no free port found in 17000-17999")


# --------------------------------------------------------------------------
# HTTP


class Response:
    def __init__(self, method, path, status, reason, headers, body, elapsed):
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.elapsed = elapsed

    def header(self, name):
        name = name.lower()
        vals = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(vals) if vals else None

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            fail(f"{self}: body is not JSON")

    def __str__(self):
        body = self.body[:600].decode("utf-8", "replace")
        return f"{self.method} {self.path} -> {self.status} {body!r}"


class Client:
    """One keep-alive HTTP/1.1 connection (http.client), reconnecting once
    when the server closed an idle connection before our request."""

    def __init__(self, port, timeout=HTTP_TIMEOUT_S):
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.used = False

    def connect(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        self.conn.connect()
        self.used = False

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, method, path, body=None, token=None, headers=None):
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        hdrs = {}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        hdrs.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.connect()
            reused = self.used
            t0 = time.monotonic()
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                payload = r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.close()
                if reused and attempt == 0:
                    continue  # stale keep-alive connection; the request never reached the server
                fail(f"{method} {path}: connection failed: {e!r}")
            except socket.timeout:
                self.close()
                fail(f"{method} {path}: no reply within {self.timeout} s")
            except ConnectionRefusedError:
                self.close()
                fail(f"{method} {path}: connection refused on port {self.port}")
            self.used = True
            resp = Response(method, path, r.status, r.reason, r.getheaders(), payload, time.monotonic() - t0)
            if r.will_close:
                self.close()
            return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)


class RawConn:
    """Raw socket HTTP for protocol tests: send bytes, parse replies."""

    def __init__(self, port, timeout=10.0, rcvbuf=None):
        if rcvbuf is None:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        else:
            # A small receive window, set before connecting: the server's writes stall after a few kilobytes.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def send_until_reply(self, data, chunk=4096):
        """Sends data in chunks, stopping early when the server already
        answered (it may refuse an oversized request before reading it all).
        Returns the number of bytes sent."""
        sent = 0
        while sent < len(data):
            r, _, _ = select.select([self.sock], [], [], 0)
            if r:
                break
            try:
                self.sock.sendall(data[sent : sent + chunk])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        return min(sent, len(data))

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by server")
        self.buf += chunk

    def _until(self, sep):
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep) :]
        return out

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method="GET", path="?"):
        t0 = time.monotonic()
        try:
            head = self._until(b"\r\n\r\n")
        except (EOFError, ConnectionResetError) as e:
            fail(f"{method} {path}: no reply, connection ended ({e!r}); bytes received: {self.buf[:200]!r}")
        except socket.timeout:
            fail(f"{method} {path}: no reply within the socket timeout")
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
        check(m, f"{method} {path}: bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        resp = Response(method, path, int(m.group(1)), m.group(2), headers, b"", 0)
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            body = b""
        elif "chunked" in te:
            body = b""
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n")
                    break
                body += self._exact(size)
                self._exact(2)
        elif cl is not None:
            body = self._exact(int(cl))
        else:
            body = self.buf
            try:
                while True:
                    self._fill()
            except (EOFError, ConnectionResetError):
                pass
            body, self.buf = self.buf, b""
        resp.body = body
        resp.elapsed = time.monotonic() - t0
        return resp

    def peer_closed(self, wait=2.0):
        """True when the server closes the connection within wait seconds."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                return False
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False


# --------------------------------------------------------------------------
# Envelope assertions


def expect_ok(resp, status=200):
    """Checks a success envelope with the given status; returns data."""
    check(resp.status == status, f"expected {status}: {resp}")
    ct = resp.header("content-type")
    check(ct is not None and ct.lower().replace(" ", "") == JSON_CT.replace(" ", ""), f"Content-Type {ct!r}: {resp}")
    doc = resp.json
    check(isinstance(doc, dict) and doc.get("success") is True, f"success envelope expected: {resp}")
    check(isinstance(doc.get("message"), str), f"envelope has no message: {resp}")
    check(isinstance(doc.get("data"), dict), f"envelope has no data object: {resp}")
    return doc["data"]


def expect_error(resp, status, code=None, field=None):
    """Checks an error envelope; returns error.details (a dict)."""
    check(resp.status == status, f"expected {status} {code or ''}: {resp}")
    ct = resp.header("content-type")
    check(ct is not None and ct.lower().replace(" ", "") == JSON_CT.replace(" ", ""), f"Content-Type {ct!r}: {resp}")
    doc = resp.json
    check(isinstance(doc, dict) and doc.get("success") is False, f"error envelope expected: {resp}")
    check(isinstance(doc.get("message"), str) and doc["message"], f"error envelope has no message: {resp}")
    err = doc.get("error")
    check(isinstance(err, dict), f"error envelope has no error object: {resp}")
    if code is not None:
        eq(err.get("code"), code, f"error.code of {resp}")
    details = err.get("details")
    if details is None:
        details = {}
    check(isinstance(details, dict), f"error.details is not an object: {resp}")
    if field is not None:
        eq(details.get("field"), field, f"error.details.field of {resp}")
    return details


# --------------------------------------------------------------------------
# Tokens and signatures


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def craft_jwt(payload, secret, header=None, sign=True):
    """Pure-Python JWT for crafted tokens (bad ones too)."""
    header = header if header is not None else {"alg": "HS256", "typ": "JWT"}
    signing_input = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(
        json.dumps(payload, separators=(",", ":")).encode()
    )
    if not sign:
        return signing_input + "."
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def sign_body(secret, body, t=None):
    """X-Signature value: t=<unix>,v1=hex(HMAC-SHA256(secret, "<t>.<body>"))."""
    if t is None:
        t = int(time.time())
    if isinstance(body, str):
        body = body.encode()
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


# --------------------------------------------------------------------------
# Time


def utcnow():
    return dt.datetime.now(dt.timezone.utc)


def iso(t):
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s, what="timestamp"):
    check(isinstance(s, str) and TS_RE.match(s), f"{what} {s!r} is not RFC 3339 UTC with Z")
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def day(days_ahead=7):
    """A UTC date days_ahead from today (midnight, aware)."""
    d = utcnow().date() + dt.timedelta(days=days_ahead)
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)


def slot(days_ahead=7, hour=10, minute=0, minutes=60):
    """(start, end) as UTC Z strings; default: a week ahead at 10:00Z."""
    start = day(days_ahead) + dt.timedelta(hours=hour, minutes=minute)
    return iso(start), iso(start + dt.timedelta(minutes=minutes))


def next_weekday(weekday, min_days=2):
    """Midnight UTC of the next date with that weekday (0=mon) at least min_days ahead."""
    d = day(min_days)
    while d.weekday() != weekday:
        d += dt.timedelta(days=1)
    return d


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def all_week():
    return [{"day": d, "start": "00:00", "end": "24:00"} for d in DAYS]


# --------------------------------------------------------------------------
# Postgres


def psql(sql):
    url = env_required("DATABASE_URL")
    try:
        p = subprocess.run(
            ["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", sql], capture_output=True, text=True, timeout=20
        )
    except FileNotFoundError:
        fail("psql not found in PATH")
    except subprocess.TimeoutExpired:
        fail(f"psql timed out: {sql}")
    if p.returncode != 0:
        fail(f"psql failed ({p.returncode}): {sql}\n{p.stderr}")
    return p.stdout.strip()


def redis_cli(*args):
    """One command against the shared server's Redis (REDIS_URL); returns redis-cli's --raw output, stripped."""
    url = env_required("REDIS_URL")
    p = subprocess.run(["redis-cli", "-u", url, "--raw", *[str(a) for a in args]], capture_output=True, text=True,
                       timeout=10)
    check(p.returncode == 0, f"redis-cli {args[0]} failed: {p.stderr}")
    return p.stdout.strip()


def pg_booking(booking_uuid):
    """The bookings row as a dict, or None."""
    out = psql(f"SELECT row_to_json(b) FROM bookings b WHERE uuid = '{booking_uuid}'")
    return json.loads(out) if out else None


def pg_booking_count(booking_uuid):
    return int(psql(f"SELECT count(*) FROM bookings WHERE uuid = '{booking_uuid}'"))


OVERLAP_AUDIT = (
    "SELECT count(*) FROM bookings a JOIN bookings b ON a.instructor_id=b.instructor_id AND a.uuid<b.uuid "
    "AND tstzrange(a.start_at,a.end_at) && tstzrange(b.start_at,b.end_at) "
    "WHERE a.status IN ('paid','confirmed') AND b.status IN ('paid','confirmed')"
)


# --------------------------------------------------------------------------
# Redis (private instances for tests that stop/restart it)


def resp_command(port, *args, timeout=2.0):
    """One Redis command over RESP; returns the decoded reply (simple)."""
    payload = f"*{len(args)}\r\n".encode()
    for a in args:
        a = str(a).encode()
        payload += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\r\n", 1)[0].decode()
    if line.startswith("-"):
        fail(f"redis error: {line}")
    return line[1:]


class RedisProc:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.proc = None
        self.log_path = os.path.join(WORKDIR, f"redis-{self.port}.log")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
        ]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        except FileNotFoundError:
            fail("redis-server not found in PATH")
        finally:
            log.close()
        _track(self.proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail(f"redis-server on {self.port} exited ({self.proc.returncode}); log {self.log_path}")
            try:
                if resp_command(self.port, "PING", timeout=0.5) == "PONG":
                    return self
            except (OSError, AssertionError):
                pass
            time.sleep(0.05)
        fail(f"redis-server on {self.port} did not answer PING within 10 s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def command(self, *args):
        return resp_command(self.port, *args)

    def calls(self, command):
        """How often Redis ran a command since its last CONFIG RESETSTAT (INFO commandstats; script-internal
        calls count too)."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "INFO", "commandstats"], capture_output=True,
                             text=True, timeout=10).stdout
        check("# Commandstats" in out, f"INFO commandstats: {out[:200]!r}")
        for line in out.splitlines():
            if line.startswith(f"cmdstat_{command.lower()}:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# slotlockd


def slotlockd_path():
    if not SLOTLOCKD:
        fail("no --slotlockd given")
    if not (os.path.isfile(SLOTLOCKD) and os.access(SLOTLOCKD, os.X_OK)):
        fail(f"slotlockd binary {SLOTLOCKD} missing or not executable")
    return SLOTLOCKD


class Server:
    """A slotlockd on a free loopback port. Use as a context manager in a
    test: the exit checks that SIGTERM makes it exit 0 (under ASan anything
    else is a leak or sanitizer report, shown from the log)."""

    def __init__(self, env=None, redis_url=None, name="slotlockd"):
        self.port = free_port()
        self.jwt_secret = secrets.token_hex(16)
        self.webhook_secret = secrets.token_hex(24)
        self.redis_url = redis_url
        self.extra_env = dict(env or {})
        self.name = name
        self.log_path = os.path.join(WORKDIR, f"{name}-{self.port}.log")
        self.proc = None
        self._tokens = {}
        self._tok_lock = threading.Lock()
        self._admin = None

    # -- process

    def env(self):
        e = dict(os.environ)
        for k in ("WORKERS", "REDIS_TIMEOUT_MS", "PG_TIMEOUT_MS", "HOLD_TTL_SECONDS", "LISTEN"):
            e.pop(k, None)
        e.update(
            LISTEN=f"127.0.0.1:{self.port}",
            REDIS_URL=self.redis_url or env_required("REDIS_URL"),
            DATABASE_URL=env_required("DATABASE_URL"),
            JWT_SECRET=self.jwt_secret,
            PAYMENT_WEBHOOK_SECRET=self.webhook_secret,
            # Most tests drive one student hard; the caps have their own tests (test_caps.py).
            RATE_LIMIT_PER_SECOND="1000000",
            RATE_LIMIT_BURST="1000000",
            MAX_HOLDS_PER_STUDENT="1000000",
        )
        e.update({k: str(v) for k, v in self.extra_env.items()})
        return e

    def start(self, ready_timeout=READY_TIMEOUT_S):
        touch(self)
        env = self.env()
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([slotlockd_path()], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        _track(self.proc)
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, bound=READY_TIMEOUT_S):
        deadline = time.monotonic() + bound
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail(f"{self.name} exited with code {self.proc.returncode} before /readyz was 200\n{self.log_tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/readyz")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
                last = f"/readyz {r.status}"
            except OSError as e:
                last = repr(e)
            except http.client.HTTPException as e:
                last = repr(e)
            time.sleep(0.1)
        fail(f"{self.name} not ready within {bound} s (last: {last})\n{self.log_tail()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, bound=STOP_TIMEOUT_S):
        """SIGTERM; returns the exit code; fails if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(bound)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                fail(f"{self.name} did not exit within {bound} s of SIGTERM (killed)\n{self.log_tail()}")
        return self.proc.returncode

    def stop_checked(self, bound=STOP_TIMEOUT_S):
        rc = self.stop(bound)
        if rc != 0:
            fail(f"{self.name} exited with code {rc} after SIGTERM (sanitizer report or unclean shutdown)\n"
                 f"{self.log_tail(80)}")

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return f"(no log at {self.log_path})"
        tail = data.decode("utf-8", "replace").splitlines()[-lines:] or ["(empty)"]
        return f"--- {self.name} log tail ({self.log_path}) ---\n" + "\n".join(tail)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self._kill()
            raise

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            # The test already failed; don't hide its error, just clean up.
            try:
                self.stop()
            except AssertionError:
                pass
            self._kill()
            return False
        self.stop_checked()
        return False

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # -- clients and credentials

    def client(self, timeout=HTTP_TIMEOUT_S):
        touch(self)
        return Client(self.port, timeout)

    def raw(self, timeout=10.0, rcvbuf=None):
        touch(self)
        return RawConn(self.port, timeout, rcvbuf)

    def token(self, sub, role, ttl=None):
        """A token minted by `slotlockd token` (cached per sub/role)."""
        key = (sub, role, ttl)
        with self._tok_lock:
            if key in self._tokens:
                return self._tokens[key]
        args = [slotlockd_path(), "token", "--sub", sub, "--role", role]
        if ttl is not None:
            args += ["--ttl", str(ttl)]
        try:
            p = subprocess.run(args, env=self.env(), capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            fail(f"`{' '.join(args[1:])}` did not finish within 30 s")
        tok = p.stdout.strip()
        if p.returncode != 0 or tok.count(".") != 2:
            fail(f"`slotlockd {' '.join(args[1:])}` failed: exit {p.returncode}, stdout {p.stdout!r}, "
                 f"stderr {p.stderr[-2000:]!r}")
        with self._tok_lock:
            self._tokens[key] = tok
        return tok

    def py_token(self, sub, role, ttl=3600, secret=None, **extra):
        """An HS256 token minted in Python with the server's secret."""
        now = int(time.time())
        payload = {"sub": sub, "role": role, "iat": now, "exp": now + ttl}
        payload.update(extra)
        return craft_jwt(payload, secret or self.jwt_secret)

    def admin(self):
        if self._admin is None:
            self._admin = self.token("admin-it", "admin")
        return self._admin

    # -- domain helpers

    def put_instructor(self, iid=None, client=None, **settings):
        """Creates an instructor (admin token); 24/7 UTC windows unless given."""
        iid = iid or uid("ins")
        body = {"timezone": "UTC", "weekly": all_week()}
        body.update(settings)
        c = client or self.client()
        r = c.put(f"/api/v1/instructors/{iid}", body, token=self.admin())
        check(r.status in (200, 201), f"creating instructor failed: {r}")
        if client is None:
            c.close()
        return iid

    def booking_body(self, instructor, start, end, student=None, course=None, **extra):
        body = {
            "student_uuid": student or uid("stu"),
            "course_uuid": course or uid("crs"),
            "instructor_uuid": instructor,
            "start_time": start,
            "end_time": end,
        }
        body.update(extra)
        return body

    def try_hold(self, instructor, start, end, student=None, client=None, **extra):
        """POST /api/v1/bookings as that student; returns the Response."""
        body = self.booking_body(instructor, start, end, student, **extra)
        c = client or self.client()
        try:
            return c.post("/api/v1/bookings", body, token=self.token(body["student_uuid"], "student"))
        finally:
            if client is None:
                c.close()

    def hold(self, instructor, start, end, student=None, client=None, **extra):
        """Takes a hold, asserting 201; returns a Hold."""
        student = student or uid("stu")
        r = self.try_hold(instructor, start, end, student=student, client=client, **extra)
        data = expect_ok(r, 201)
        check(isinstance(data.get("uuid"), str), f"no uuid in {r}")
        return Hold(self, data, student, instructor, r)

    def get_booking(self, booking_uuid, token=None, client=None):
        c = client or self.client()
        try:
            return c.get(f"/api/v1/bookings/{booking_uuid}", token=token or self.admin())
        finally:
            if client is None:
                c.close()

    def booking(self, booking_uuid):
        """GET as admin, asserting 200; returns data."""
        return expect_ok(self.get_booking(booking_uuid), 200)

    def callback(self, booking_uuid, status="succeeded", ref=None, engine="stripe", t=None, secret=None,
                 body=None, signature=None, client=None, **extra):
        """POST …/payment-callback with a correct signature unless told otherwise."""
        if body is None:
            doc = {"payment_reference": ref or ("pi_" + secrets.token_hex(8)), "payment_status": status,
                   "payment_engine": engine}
            doc.update(extra)
            body = json.dumps(doc)
        raw = body.encode() if isinstance(body, str) else body
        headers = {}
        if signature is None:
            signature = sign_body(secret or self.webhook_secret, raw, t)
        if signature is not False:
            headers["X-Signature"] = signature
        c = client or self.client()
        try:
            return c.post(f"/api/v1/bookings/{booking_uuid}/payment-callback", raw, headers=headers)
        finally:
            if client is None:
                c.close()

    def action(self, booking_uuid, verb, token, body=None, client=None):
        """POST …/cancel, …/accept, …/reject."""
        c = client or self.client()
        try:
            return c.post(f"/api/v1/bookings/{booking_uuid}/{verb}", body, token=token)
        finally:
            if client is None:
                c.close()


class ClockServer(Server):
    """A server with TEST_CLOCK=1 whose clock tests may stop at an instant
    (freeze) to stand exactly at a policy's edge; its tokens live long
    enough for the clock's leaps ahead."""

    TOKEN_TTL = 120 * 86400

    def __init__(self, env=None, name="clocked", **kw):
        super().__init__(env=dict({"TEST_CLOCK": "1"}, **(env or {})), name=name, **kw)

    def token(self, sub, role, ttl=None):
        return super().token(sub, role, ttl or self.TOKEN_TTL)

    def freeze(self, at_ms):
        """Stops the server's clock at at_ms (unix ms); 0 lets it run again."""
        c = self.client()
        try:
            expect_ok(c.post("/internal/clock", {"freeze_at_ms": int(at_ms)}), 200)
        finally:
            c.close()

    def thaw(self):
        self.freeze(0)


class Hold:
    def __init__(self, server, data, student, instructor, resp):
        self.server = server
        self.data = data
        self.uuid = data["uuid"]
        self.student = student
        self.instructor = instructor
        self.resp = resp

    @property
    def student_token(self):
        return self.server.token(self.student, "student")

    @property
    def instructor_token(self):
        return self.server.token(self.instructor, "instructor")

    def confirm(self, **kw):
        """Succeeded callback, asserting 200; returns data."""
        return expect_ok(self.server.callback(self.uuid, "succeeded", **kw), 200)

    def get(self):
        return self.server.booking(self.uuid)


# --------------------------------------------------------------------------
# The server most tests share (started on first use, stopped by run.py).

_shared = None
_shared_error = None
_shared_deaths = []
_shared_lock = threading.Lock()


def shared():
    global _shared, _shared_error
    with _shared_lock:
        if _shared_error is not None:
            fail(f"shared server could not start earlier: {_shared_error}")
        if _shared is None:
            srv = Server(name="shared")
            try:
                srv.start()
            except AssertionError as e:
                srv._kill()
                _shared_error = str(e).splitlines()[0]
                raise
            _shared = srv
        if not _shared.alive():
            # It died during an earlier test: report it here and start a
            # fresh one so that the rest of the suite still tells something.
            dead = _shared
            msg = f"shared server died (exit {dead.proc.returncode}) during or before this test\n{dead.log_tail(80)}"
            _shared_deaths.append(msg)
            _shared = None
            touch(dead)
            fail(msg)
        touch(_shared)
        return _shared


def shutdown_shared():
    """Stops the shared server. Returns None if it never ran, else an error
    message or '' when it exited 0."""
    with _shared_lock:
        srv = _shared
        deaths = list(_shared_deaths)
    if srv is None and not deaths:
        return None
    problems = [f"shared server died {len(deaths)} time(s) during the suite (see the tests that reported it)"] \
        if deaths else []
    if srv is not None:
        try:
            srv.stop_checked()
        except AssertionError as e:
            problems.append(str(e))
    return "\n".join(problems)


def server_pair(name, env=None):
    """Two servers on the shared Redis and PostgreSQL (<name>-a, <name>-b) that accept each other's tokens and
    payment callbacks: a change made through one is seen by the other only as another process sees it."""
    a, b = Server(env=env, name=f"{name}-a"), Server(env=env, name=f"{name}-b")
    b.jwt_secret, b.webhook_secret = a.jwt_secret, a.webhook_secret
    return a, b


def granted_once_not(status, attempt):
    """A wait_until predicate: False while attempt() is answered with status, the hold's data once it is 201."""

    def granted():
        r = attempt()
        if r.status == status:
            return False
        return expect_ok(r, 201)

    return granted


def wait_until(fn, bound, interval=0.1, what="condition"):
    """Polls fn() until it returns a truthy value; fails after bound seconds."""
    deadline = time.monotonic() + bound
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            fail(f"{what} not reached within {bound} s")
        time.sleep(interval)


def ts_ms(ts):
    """An API timestamp as unix milliseconds."""
    return int(parse_ts(ts).timestamp() * 1000)


def in_thread(fn):
    """Starts fn() on its own thread; joined() returns what it returned (or raises what it raised)."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # reported by joined()
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def joined(t, out, what):
    t.join(30)
    check(not t.is_alive(), f"{what} did not finish within 30 s")
    if "error" in out:
        raise out["error"]
    return out["value"]


def post_at_once(port, requests, bound=90):
    """POSTs each (path, raw body, bearer token, extra headers or None) from its own connection, all sent together
    once every connection is open. Returns (status, body, {lower-case header: value}) per request, in order."""
    barrier = threading.Barrier(len(requests), timeout=60)
    results = [None] * len(requests)

    def client(i):
        path, body, token, extra = requests[i]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            try:
                conn.connect()
            except Exception:
                barrier.abort()  # release the others at once; reported below
                raise
            barrier.wait()
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            headers.update(extra or {})
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            results[i] = (r.status, r.read(), {k.lower(): v for k, v in r.getheaders()})
        except Exception as e:  # reported below as a failed client
            results[i] = (None, repr(e).encode(), {})
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(requests))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + bound
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    check(all(r is not None for r in results), f"some racing clients did not finish within {bound} s")
    errors = [r for r in results if r[0] is None]
    if errors:
        fail(f"{len(errors)} clients failed at the socket level, e.g. {errors[0][1][:200]!r}")
    return results
