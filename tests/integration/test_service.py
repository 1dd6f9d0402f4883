"""Service endpoints and process lifecycle."""

import json
import re
import signal
import time

from harness import Server, check, eq, fail, shared, slot, timeout


def test_livez_and_healthz():
    srv = shared()
    with srv.client() as c:
        for path in ("/livez", "/healthz"):
            eq(c.get(path).status, 200, f"GET {path}")


def test_readyz():
    srv = shared()
    with srv.client() as c:
        eq(c.get("/readyz").status, 200, "GET /readyz")


def _metric_sum(text, name):
    """Sum of all samples of a metric (any labels); None when absent."""
    total = None
    for line in text.splitlines():
        m = re.match(r"^" + re.escape(name) + r"(\{[^}]*\})?\s+([0-9.eE+-]+)", line)
        if m:
            total = (total or 0) + float(m.group(2))
    return total


def test_metrics_count_requests_and_holds():
    srv = shared()
    with srv.client() as c:
        before = c.get("/metrics")
        eq(before.status, 200, "GET /metrics")
        check((before.header("content-type") or "").startswith("text/plain"),
              f"metrics Content-Type {before.header('content-type')!r}")
        holds0 = _metric_sum(before.body.decode(), "slotlock_holds_total") or 0
        srv.hold(srv.put_instructor(), *slot(7, 10))
        after = c.get("/metrics").body.decode()
    check(_metric_sum(after, "slotlock_http_requests_total") is not None,
          f"slotlock_http_requests_total missing:\n{after[:2000]}")
    holds1 = _metric_sum(after, "slotlock_holds_total")
    check(holds1 is not None, f"slotlock_holds_total missing:\n{after[:2000]}")
    check(holds1 >= holds0 + 1, f"slotlock_holds_total did not grow after a hold ({holds0} -> {holds1})")


@timeout(60)
def test_sigterm_idle_exits_0():
    srv = Server(name="sigterm-idle").start()
    try:
        with srv.client() as c:
            eq(c.get("/livez").status, 200, "/livez")
        t0 = time.monotonic()
        srv.stop_checked()
        check(time.monotonic() - t0 < 10, "shutdown took longer than 10 s")
    finally:
        srv._kill()


@timeout(60)
def test_sigterm_with_idle_keepalive_connection_exits_0():
    # An idle keep-alive connection must not hold the shutdown up for long.
    srv = Server(name="sigterm-keepalive").start()
    try:
        c = srv.client()
        eq(c.get("/livez").status, 200, "/livez")
        t0 = time.monotonic()
        srv.stop_checked()
        check(time.monotonic() - t0 < 10, "shutdown took longer than 10 s with an idle connection")
        c.close()
    finally:
        srv._kill()


@timeout(60)
def test_sigint_exits_0():
    srv = Server(name="sigint").start()
    try:
        srv.proc.send_signal(signal.SIGINT)
        try:
            rc = srv.proc.wait(15)
        except Exception:
            fail(f"no exit within 15 s of SIGINT\n{srv.log_tail()}")
        check(rc == 0, f"exit code {rc} after SIGINT\n{srv.log_tail(80)}")
    finally:
        srv._kill()


def test_logs_are_json_lines():
    srv = shared()
    with srv.client() as c:
        c.get("/livez")
    with open(srv.log_path, "rb") as f:
        lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    check(lines, "the server logged nothing at all")
    for ln in lines:
        if ln.startswith("=="):  # sanitizer output is not the server's log
            continue
        try:
            check(isinstance(json.loads(ln), dict), f"log line is not a JSON object: {ln[:200]}")
        except ValueError:
            fail(f"log line is not JSON: {ln[:200]}")
