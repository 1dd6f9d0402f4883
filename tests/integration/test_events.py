"""GET /api/v1/instructors/{id}/events: Server-Sent Events fed by Redis Pub/Sub."""

import socket
import time

from harness import Server, check, eq, expect_error, expect_ok, shared, slot, timeout, uid

SEEN_WITHIN_S = 1.0


class EventStream:
    """A raw SSE client: reads events ({"id", "event", "data"}) as they arrive."""

    def __init__(self, srv, ins, token, last_event_id=None):
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
        self.sock.sendall((f"GET /api/v1/instructors/{ins}/events HTTP/1.1\r\nHost: x\r\n"
                           f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n{extra}\r\n").encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n", 5)
        check(head.startswith(b"HTTP/1.1 200"), f"SSE did not start: {head[:200]!r}")
        check(b"text/event-stream" in head, f"SSE content type missing: {head[:300]!r}")

    def _until(self, sep, bound):
        deadline = time.monotonic() + bound
        while sep not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                return None
            self.buf += chunk
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def next_event(self, bound=SEEN_WITHIN_S):
        """The next event within bound seconds (comments and retry lines skipped), or None."""
        deadline = time.monotonic() + bound
        while True:
            block = self._until(b"\n\n", max(0.0, deadline - time.monotonic()))
            if block is None:
                return None
            fields = {}
            for line in block.decode().split("\n"):
                if line and not line.startswith(":") and ":" in line:
                    k, v = line.split(":", 1)
                    fields[k] = v.strip()
            if "event" in fields:
                return fields

    def close(self):
        self.sock.close()


def _expect(stream, kind, start, end):
    t0 = time.monotonic()
    ev = stream.next_event()
    check(ev is not None, f"no '{kind}' event within {SEEN_WITHIN_S} s")
    eq(ev["event"], kind, f"event type (after {time.monotonic() - t0:.2f} s)")
    check(f'"start_time":"{start}"' in ev["data"] and f'"end_time":"{end}"' in ev["data"],
          f"{kind} event range: {ev['data']}")
    return ev


@timeout(60)
def test_second_client_sees_held_released_and_booked():
    srv = shared()
    ins = srv.put_instructor()
    stream = EventStream(srv, ins, srv.token(uid("viewer"), "student"))
    try:
        a = srv.hold(ins, *slot(5, 9))
        _expect(stream, "held", *slot(5, 9))
        expect_ok(srv.action(a.uuid, "cancel", a.student_token), 200)
        _expect(stream, "released", *slot(5, 9))
        b = srv.hold(ins, *slot(5, 11))
        _expect(stream, "held", *slot(5, 11))
        b.confirm()
        _expect(stream, "booked", *slot(5, 11))
    finally:
        stream.close()


@timeout(60)
def test_expired_hold_is_announced():
    srv = shared()
    ins = srv.put_instructor(hold_seconds=1, granularity_minutes=60)
    stream = EventStream(srv, ins, srv.admin())
    try:
        srv.hold(ins, *slot(5, 9))
        _expect(stream, "held", *slot(5, 9))
        ev = stream.next_event(bound=1.0 + 2.0)  # the hold lives 1 s; Redis reports the expiry within its cycle
        check(ev is not None and ev["event"] == "expired", f"no 'expired' event: {ev}")
        check(f'"start_time":"{slot(5, 9)[0]}"' in ev["data"], f"expired range: {ev['data']}")
    finally:
        stream.close()


@timeout(60)
def test_last_event_id_resumes_what_was_missed():
    srv = shared()
    ins = srv.put_instructor()
    token = srv.admin()
    first = EventStream(srv, ins, token)
    try:
        srv.hold(ins, *slot(6, 9))
        seen = _expect(first, "held", *slot(6, 9))
    finally:
        first.close()
    srv.hold(ins, *slot(6, 11))
    srv.hold(ins, *slot(6, 13))
    time.sleep(0.3)  # both events are delivered while no client listens
    again = EventStream(srv, ins, token, last_event_id=seen["id"])
    try:
        _expect(again, "held", *slot(6, 11))
        _expect(again, "held", *slot(6, 13))
    finally:
        again.close()


@timeout(60)
def test_events_need_a_token_and_an_instructor():
    srv = shared()
    with srv.client() as c:
        expect_error(c.get(f"/api/v1/instructors/{uid('ins')}/events"), 401, "unauthorized")
        expect_error(c.get(f"/api/v1/instructors/{uid('nobody')}/events", token=srv.admin()), 404, "not_found")


@timeout(60)
def test_sigterm_ends_open_streams_promptly():
    with Server(name="sse-drain") as srv:
        ins = srv.put_instructor()
        stream = EventStream(srv, ins, srv.admin())
        t0 = time.monotonic()
        srv.stop_checked()
        check(time.monotonic() - t0 < 5, "an open event stream held up the shutdown")
        stream.close()


@timeout(60)
def test_foreign_keys_and_messages_on_our_channels_disturb_nothing():
    """Whatever else shares Redis may write keys that look like ours or publish on our channels: an expiring
    "unit" key with an absurd minute and an event with absurd times are ignored (no overflow: under UBSan
    the server would abort, and the exit check below fails), and availability goes on as before."""
    from harness import redis_cli
    with Server(name="foreign-keys") as srv:
        ins = srv.put_instructor()
        start, end = slot(7, 10)
        with srv.client() as c:
            path = f"/api/v1/instructors/{ins}/availability?from={start[:10]}&to={start[:10]}"
            before = expect_ok(c.get(path, token=srv.admin()), 200)["slots"]
            for minute in ("99999999999999999999", "-5", "12x"):
                redis_cli("SET", f"slk:{{{ins}}}:u:{minute}", "1", "PX", "50")
            for payload in ("held 9223372036854775807 9223372036854775807", "held -9223372036854775807 0",
                            "nonsense"):
                redis_cli("PUBLISH", f"slk:{{{ins}}}:events", payload)
            time.sleep(0.5)
            eq(expect_ok(c.get(path, token=srv.admin()), 200)["slots"], before, "the same free slots")
            srv.hold(ins, start, end, client=c)
            after = expect_ok(c.get(path, token=srv.admin()), 200)["slots"]
            check(start not in [s["start_time"] for s in after], "a real hold still shows at once")
