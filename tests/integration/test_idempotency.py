"""Idempotency-Key on POSTs (R-HOLD): at most one execution per (user, key),
repeats replay the first reply, a different request under the same key is
refused, a duplicate arriving while the first runs waits or gets 409, and
5xx replies are not kept."""

import json
import os
import re
import select
import signal
import subprocess
import time

from harness import (RedisProc, Server, check, env_required, eq, expect_error, expect_ok, fail, in_thread, joined,
                     post_at_once, psql, shared, sign_body, slot, timeout, uid, wait_until)

KEY_HDR = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


def _post(srv, path, body, token=None, key=None, headers=None):
    hdrs = dict(headers or {})
    if key is not None:
        hdrs[KEY_HDR] = key
    with srv.client() as c:
        return c.post(path, body, token=token, headers=hdrs)


def _hold(srv, body, key):
    return _post(srv, "/api/v1/bookings", json.dumps(body), token=srv.token(body["student_uuid"], "student"), key=key)


def _student_bookings(srv, student):
    with srv.client() as c:
        r = c.get(f"/api/v1/bookings?student_uuid={student}&limit=100", token=srv.token(student, "student"))
    return expect_ok(r, 200)["items"]


def _expect_replay_of(first, again):
    """again is a replay of first: same status, same bytes, same Location, marked replayed."""
    eq(again.status, first.status, f"status of the replay {again}")
    eq(again.body, first.body, "body bytes of the replay")
    eq(again.header("location"), first.header("location"), "Location of the replay")
    eq(again.header(REPLAYED), "true", f"{REPLAYED} of the replay {again}")
    eq(again.header("content-type"), "application/json; charset=utf-8", "Content-Type of the replay")


def _not_replayed(resp):
    eq(resp.header(REPLAYED), None, f"{REPLAYED} on a first execution {resp}")


class RowLock:
    """Holds FOR UPDATE on one bookings row from a separate psql session
    until release(): a handler that updates that row blocks meanwhile."""

    def __init__(self, booking_uuid):
        self.proc = subprocess.Popen(["psql", env_required("DATABASE_URL"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.proc.stdin.write(f"BEGIN;\nSELECT 1 FROM bookings WHERE uuid = '{booking_uuid}' FOR UPDATE;\n"
                              "SELECT 'pid=' || pg_backend_pid();\n\\echo locked\n".encode())
        self.proc.stdin.flush()
        out = b""
        deadline = time.monotonic() + 20
        fd = self.proc.stdout.fileno()
        while b"locked" not in out:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.poll() is not None else b""
                self.kill()
                fail(f"psql did not take the row lock on {booking_uuid}: {out!r} {err!r}")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    continue
                out += chunk
        m = re.search(rb"pid=(\d+)", out)
        check(m is not None, f"no backend pid from psql: {out!r}")
        self.pid = int(m.group(1))

    def has_waiter(self):
        """True once some other session waits for this lock (the handler's UPDATE)."""
        n = psql(f"SELECT count(*) FROM pg_stat_activity WHERE {self.pid} = ANY(pg_blocking_pids(pid))")
        return int(n) >= 1

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write(b"COMMIT;\n\\q\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
                fail("psql holding the row lock did not exit")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def _confirmed_booking(srv):
    ins = srv.put_instructor()
    h = srv.hold(ins, *slot(9, 10))
    eq(h.confirm().get("status"), "confirmed", "status after the succeeded callback")
    return h


# --------------------------------------------------------------------------


def test_repeat_replays_first_reply_and_holds_once():
    srv = shared()
    ins = srv.put_instructor()
    student = uid("stu")
    body = srv.booking_body(ins, *slot(8, 10), student=student)
    key = uid("hold")
    first = _hold(srv, body, key)
    data = expect_ok(first, 201)
    _not_replayed(first)
    eq(first.header("location"), f"/api/v1/bookings/{data['uuid']}", "Location of the first reply")
    again = _hold(srv, body, key)
    _expect_replay_of(first, again)
    # A second execution would have found the slot taken (409) or made a second hold.
    items = _student_bookings(srv, student)
    eq([i.get("uuid") for i in items], [data["uuid"]], "holds of the student after a replayed POST")


def test_same_key_different_body_is_refused():
    srv = shared()
    ins = srv.put_instructor()
    student = uid("stu")
    key = uid("key")
    body = srv.booking_body(ins, *slot(8, 11), student=student)
    first = _hold(srv, body, key)
    expect_ok(first, 201)
    other = _hold(srv, dict(body, start_time=slot(8, 13)[0], end_time=slot(8, 13)[1]), key)
    expect_error(other, 422, "idempotency_key_reused")
    _not_replayed(other)
    eq(len(_student_bookings(srv, student)), 1, "holds after the refused reuse")
    # The refusal is not kept: the original request still replays.
    _expect_replay_of(first, _hold(srv, body, key))


def test_keys_are_scoped_per_user():
    srv = shared()
    ins = srv.put_instructor()
    key = uid("shared-key")
    a, b = uid("stu"), uid("stu")
    ra = _hold(srv, srv.booking_body(ins, *slot(8, 14), student=a), key)
    rb = _hold(srv, srv.booking_body(ins, *slot(8, 16), student=b), key)
    da, db = expect_ok(ra, 201), expect_ok(rb, 201)
    _not_replayed(ra)
    _not_replayed(rb)
    check(da["uuid"] != db["uuid"], "two users with the same key got the same booking")
    eq(len(_student_bookings(srv, a)), 1, "holds of the first student")
    eq(len(_student_bookings(srv, b)), 1, "holds of the second student")


@timeout(120)
def test_concurrent_duplicates_run_once():
    srv = shared()
    ins = srv.put_instructor()
    student = uid("stu")
    raw = json.dumps(srv.booking_body(ins, *slot(8, 18), student=student)).encode()
    token = srv.py_token(student, "student")
    key = uid("burst")
    n = 100
    replies = post_at_once(srv.port, [("/api/v1/bookings", raw, token, {KEY_HDR: key})] * n)
    results = [(status, body, headers.get(REPLAYED.lower()), headers.get("location")) for status, body, headers in replies]
    statuses = {}
    for r in results:
        statuses[r[0]] = statuses.get(r[0], 0) + 1
    eq(statuses, {201: n}, "statuses of the concurrent duplicates")
    bodies = {r[1] for r in results}
    eq(len(bodies), 1, f"distinct bodies among {n} duplicates")
    eq(len({r[3] for r in results}), 1, "distinct Location headers")
    eq(sum(1 for r in results if r[2] == "true"), n - 1, f"replies marked {REPLAYED}")
    eq(len(_student_bookings(srv, student)), 1, "holds after the burst")


@timeout(90)
def test_duplicate_while_in_flight_gets_409():
    with Server(env={"IDEMPOTENCY_WAIT_MS": "0", "PG_TIMEOUT_MS": "20000"}) as srv:
        h = _confirmed_booking(srv)
        token = h.student_token
        key = uid("cancel")
        path = f"/api/v1/bookings/{h.uuid}/cancel"
        body = json.dumps({"reason": "cannot make it"})
        with RowLock(h.uuid) as lock:
            t, out = in_thread(lambda: _post(srv, path, body, token=token, key=key))
            wait_until(lock.has_waiter, 20, what="the first cancel blocking on the row lock")
            dup = _post(srv, path, body, token=token, key=key)
            expect_error(dup, 409, "idempotency_in_progress")
            eq(dup.header("retry-after"), "1", "Retry-After of the 409")
            # The 409 is not kept either: a changed body is still told apart.
            expect_error(_post(srv, path, json.dumps({"reason": "other"}), token=token, key=key), 422,
                         "idempotency_key_reused")
            lock.release()
            first = joined(t, out, "the first cancel")
        eq(expect_ok(first, 200).get("status"), "cancelled", "status after the first cancel")
        _not_replayed(first)
        _expect_replay_of(first, _post(srv, path, body, token=token, key=key))


@timeout(90)
def test_duplicate_waits_for_first_reply():
    with Server(env={"IDEMPOTENCY_WAIT_MS": "20000", "PG_TIMEOUT_MS": "20000"}) as srv:
        h = _confirmed_booking(srv)
        token = h.student_token
        key = uid("cancel")
        path = f"/api/v1/bookings/{h.uuid}/cancel"
        body = json.dumps({"reason": "waiting"})
        with RowLock(h.uuid) as lock:
            t1, out1 = in_thread(lambda: _post(srv, path, body, token=token, key=key))
            wait_until(lock.has_waiter, 20, what="the first cancel blocking on the row lock")
            t2, out2 = in_thread(lambda: _post(srv, path, body, token=token, key=key))
            time.sleep(0.3)
            check("resp" not in out2, f"the duplicate was answered while the first still ran: {out2.get('resp')}")
            lock.release()
            first = joined(t1, out1, "the first cancel")
            dup = joined(t2, out2, "the waiting duplicate")
        expect_ok(first, 200)
        _not_replayed(first)
        _expect_replay_of(first, dup)


@timeout(90)
def test_5xx_is_not_kept():
    with Server(env={"PG_TIMEOUT_MS": "300"}) as srv:
        h = _confirmed_booking(srv)
        token = h.student_token
        key = uid("cancel")
        path = f"/api/v1/bookings/{h.uuid}/cancel"
        body = json.dumps({"reason": "timeout first"})
        with RowLock(h.uuid) as lock:
            failed = _post(srv, path, body, token=token, key=key)
            expect_error(failed, 503, "unavailable")
            lock.release()

        # The pool re-opens the connection it dropped; until then a retry may
        # see 503 again, never a replay of the 503.
        def retry():
            r = _post(srv, path, body, token=token, key=key)
            if r.status == 503:
                _not_replayed(r)
                return None
            return r

        ok = wait_until(retry, 20, interval=0.2, what="a successful retry after the 503")
        eq(expect_ok(ok, 200).get("status"), "cancelled", "status after the retried cancel")
        _not_replayed(ok)
        _expect_replay_of(ok, _post(srv, path, body, token=token, key=key))


@timeout(90)
def test_waiter_takes_over_when_first_fails():
    # The first times out (503) and gives the key up; the duplicate waiting for it runs instead of replaying a 5xx.
    with Server(env={"IDEMPOTENCY_WAIT_MS": "30000", "PG_TIMEOUT_MS": "3000"}) as srv:
        h = _confirmed_booking(srv)
        token = h.student_token
        key = uid("cancel")
        path = f"/api/v1/bookings/{h.uuid}/cancel"
        body = json.dumps({"reason": "take over"})
        with RowLock(h.uuid) as lock:
            t1, out1 = in_thread(lambda: _post(srv, path, body, token=token, key=key))
            wait_until(lock.has_waiter, 20, what="the first cancel blocking on the row lock")
            t2, out2 = in_thread(lambda: _post(srv, path, body, token=token, key=key))
            first = joined(t1, out1, "the first cancel")
            expect_error(first, 503, "unavailable")
            lock.release()
            second = joined(t2, out2, "the waiting duplicate")
        eq(expect_ok(second, 200).get("status"), "cancelled", "status after the duplicate ran")
        _not_replayed(second)
        _expect_replay_of(second, _post(srv, path, body, token=token, key=key))


@timeout(90)
def test_waiter_whose_client_left_is_cleaned_up():
    # A waiting duplicate whose client disconnects is still answered (into the void) once; the server stays
    # healthy and, under ASan, exits without leaks.
    with Server(env={"IDEMPOTENCY_WAIT_MS": "1500", "PG_TIMEOUT_MS": "20000"}) as srv:
        h = _confirmed_booking(srv)
        token = h.student_token
        key = uid("cancel")
        path = f"/api/v1/bookings/{h.uuid}/cancel"
        raw = json.dumps({"reason": "gone"}).encode()
        with RowLock(h.uuid) as lock:
            t1, out1 = in_thread(lambda: _post(srv, path, raw, token=token, key=key))
            wait_until(lock.has_waiter, 20, what="the first cancel blocking on the row lock")
            for _ in range(3):
                with srv.raw() as conn:
                    conn.send(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                              f"{KEY_HDR}: {key}\r\nContent-Type: application/json\r\n"
                              f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
                    time.sleep(0.05)
            time.sleep(2.0)  # past the wait: the abandoned duplicates have given up
            lock.release()
            first = joined(t1, out1, "the first cancel")
        expect_ok(first, 200)
        _expect_replay_of(first, _post(srv, path, raw, token=token, key=key))


@timeout(90)
def test_drain_answers_waiting_duplicates():
    with Server(env={"IDEMPOTENCY_WAIT_MS": "30000", "PG_TIMEOUT_MS": "20000"}) as srv:
        h = _confirmed_booking(srv)
        token = h.student_token
        key = uid("cancel")
        path = f"/api/v1/bookings/{h.uuid}/cancel"
        body = json.dumps({"reason": "drain"})
        with RowLock(h.uuid) as lock:
            t1, out1 = in_thread(lambda: _post(srv, path, body, token=token, key=key))
            wait_until(lock.has_waiter, 20, what="the first cancel blocking on the row lock")
            t2, out2 = in_thread(lambda: _post(srv, path, body, token=token, key=key))
            time.sleep(0.3)
            srv.proc.send_signal(signal.SIGTERM)
            # Without the drain check it would wait its full 30 s.
            t2.join(10)
            check(not t2.is_alive(), "the waiting duplicate was not answered within 10 s of SIGTERM")
            dup = joined(t2, out2, "the waiting duplicate")
            expect_error(dup, 409, "idempotency_in_progress")
            lock.release()
            expect_ok(joined(t1, out1, "the first cancel"), 200)


@timeout(60)
def test_redis_down_never_runs_unprotected():
    with RedisProc() as redis:
        with Server(redis_url=redis.url, env={"REDIS_TIMEOUT_MS": "300"}) as srv:
            student = uid("stu")
            token = srv.token(student, "student")
            invalid = json.dumps({"student_uuid": student})
            redis.pause()
            try:
                # The handler refuses this body without Redis (422); behind a key it must not run at all.
                expect_error(_post(srv, "/api/v1/bookings", invalid, token=token), 422, "validation_failed")
                r = _post(srv, "/api/v1/bookings", invalid, token=token, key=uid("k"))
                expect_error(r, 503, "unavailable")
                eq(r.header("retry-after"), "1", "Retry-After of the 503")
            finally:
                redis.resume()
            key = uid("k")
            r = wait_until(lambda: (lambda x: x if x.status != 503 else None)(
                _post(srv, "/api/v1/bookings", invalid, token=token, key=key)), 20, interval=0.2,
                what="the gate answering after Redis came back")
            expect_error(r, 422, "validation_failed")
            _expect_replay_of(r, _post(srv, "/api/v1/bookings", invalid, token=token, key=key))


def test_payment_callback_repeat_replays():
    srv = shared()
    ins = srv.put_instructor()
    h = srv.hold(ins, *slot(8, 20))
    raw = json.dumps({"payment_reference": "pi_" + uid("idem"), "payment_status": "succeeded",
                      "payment_engine": "stripe"}).encode()
    key = uid("evt")
    path = f"/api/v1/bookings/{h.uuid}/payment-callback"

    def deliver(payload):
        return _post(srv, path, payload, key=key, headers={"X-Signature": sign_body(srv.webhook_secret, payload)})

    first = deliver(raw)
    eq(expect_ok(first, 200).get("status"), "confirmed", "status after the callback")
    _not_replayed(first)
    _expect_replay_of(first, deliver(raw))
    other = json.dumps({"payment_reference": "pi_other", "payment_status": "failed",
                        "payment_engine": "stripe"}).encode()
    expect_error(deliver(other), 422, "idempotency_key_reused")
    eq(h.get().get("status"), "confirmed", "status after the refused reuse")


def test_bad_keys_are_refused():
    srv = shared()
    ins = srv.put_instructor()
    student = uid("stu")
    for bad in ("", "a" * 256, "has space", "tab\tinside", "caf\u00e9", "\x01ctl"):
        body = srv.booking_body(ins, *slot(8, 6), student=student)
        hdrs = {KEY_HDR: bad.encode("latin-1")}
        r = _post(srv, "/api/v1/bookings", json.dumps(body), token=srv.token(student, "student"), headers=hdrs)
        # The HTTP parser already refuses an empty header value and control bytes (400 without a field).
        expect_error(r, 400, "bad_request", field=KEY_HDR if bad and bad[0] != "\x01" else None)
    eq(_student_bookings(srv, student), [], "holds created by requests with a bad key")
    # 255 printable bytes, every class of them, is the longest key accepted.
    longest = ("!~" + "".join(chr(c) for c in range(0x21, 0x7f)) * 3)[:255]
    body = srv.booking_body(ins, *slot(8, 6), student=student)
    first = _hold(srv, body, longest)
    expect_ok(first, 201)
    _expect_replay_of(first, _hold(srv, body, longest))


def test_two_key_headers_are_refused():
    srv = shared()
    ins = srv.put_instructor()
    student = uid("stu")
    raw = json.dumps(srv.booking_body(ins, *slot(8, 7), student=student)).encode()
    with srv.raw() as conn:
        conn.send(b"POST /api/v1/bookings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + srv.token(student, "student").encode() + b"\r\n"
                  b"Idempotency-Key: one\r\nIdempotency-Key: two\r\n"
                  b"Content-Length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw)
        r = conn.read_response("POST", "/api/v1/bookings")
    expect_error(r, 400, "bad_request", field=KEY_HDR)
    eq(_student_bookings(srv, student), [], "holds created by a request with two keys")


def test_without_key_every_post_runs():
    # No header, no gate: two identical POSTs are two executions.
    srv = shared()
    ins = srv.put_instructor()
    student = uid("stu")
    body = srv.booking_body(ins, *slot(8, 8), student=student)
    expect_ok(_hold(srv, body, None), 201)
    second = _hold(srv, body, None)
    check(second.status == 409, f"a second identical hold without a key must run (and find the slot taken): {second}")
    _not_replayed(second)
