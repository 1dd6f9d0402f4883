"""What a hold leaves in Redis, and holds an earlier version left there.

A held unit carries its hold's fencing token, the record leaves out the
uuid and instructor its key already names, and the instructor's listing
names the hold by uuid alone: that is what keeps a live hold near 1 KiB of
Redis (bench/README.md). Servers before that wrote units as 'H:<uuid>',
kept both fields and listed '<instructor>/<uuid>'; while a deployment rolls,
such holds must be served, listed, extended, paid and cancelled like any
other."""

import time
import uuid

from harness import (OVERLAP_AUDIT, ClockServer, check, eq, expect_error, expect_ok, pg_booking, psql, redis_cli,
                     shared, slot, timeout, uid, wait_until)

CLOCKED = None


def setup_module():
    global CLOCKED
    CLOCKED = ClockServer(name="record-format")
    CLOCKED.start()


def teardown_module():
    if CLOCKED is not None:
        CLOCKED.stop_checked()


def _record_key(h):
    return f"slk:{{{h.instructor}}}:b:{h.uuid}"


def _unit_keys(h):
    first, step, count = (int(redis_cli("HGET", _record_key(h), f)) for f in ("ufirst", "umin", "ucount"))
    return [f"slk:{{{h.instructor}}}:u:{first + i * step}" for i in range(count)]


def _as_earlier_version(h):
    """Rewrites a hold the way servers before the fencing-token units stored it."""
    for key in _unit_keys(h):
        eq(redis_cli("SET", key, f"H:{h.uuid}", "XX", "KEEPTTL"), "OK", f"rewrite {key}")
    index = f"slk:{{{h.instructor}}}:holds"
    score = redis_cli("ZSCORE", index, h.uuid)
    eq(redis_cli("ZREM", index, h.uuid), "1", "the instructor's listing names the hold by uuid")
    redis_cli("ZADD", index, score, f"{h.instructor}/{h.uuid}")
    redis_cli("HSET", _record_key(h), "uuid", h.uuid, "instructor", h.instructor, "session",
              h.data["payment_session_id"])
    redis_cli("HDEL", _record_key(h), "sid")


def _free(keys):
    return [k for k in keys if redis_cli("EXISTS", k) == "0"]


def test_units_carry_the_fencing_token():
    srv = shared()
    ins = srv.put_instructor()
    h = srv.hold(ins, *slot(8, 10))
    keys = _unit_keys(h)
    eq(len(keys), 4, "a one-hour hold covers four 15-minute units")
    for key in keys:
        eq(redis_cli("GET", key), str(h.data["fence_token"]), f"{key} names its hold by fencing token")
    for field in ("uuid", "instructor"):
        eq(redis_cli("HEXISTS", _record_key(h), field), "0", f"the record does not repeat its key's {field}")
    eq(redis_cli("HEXISTS", _record_key(h), "session"), "0", "the payment session is kept as bytes, not text")
    b = srv.booking(h.uuid)
    eq(b.get("payment_session_id"), h.data["payment_session_id"], "payment session read back from its bytes")
    eq(b.get("uuid"), h.uuid, "uuid read back from the key")
    eq(b.get("instructor_uuid"), ins, "instructor read back from the key")


def test_uuid_named_student_and_course_are_kept_as_bytes():
    # The API names students and courses by uuids: the record keeps their 16 bytes, not their 36-character text,
    # which keeps a hold's record in jemalloc's 256-byte class (320 with the text).
    srv = shared()
    ins = srv.put_instructor()
    student, course = str(uuid.uuid4()), str(uuid.uuid4())
    start, end = slot(8, 16)
    r = srv.try_hold(ins, start, end, student=student, course=course, price_amount=40.00, currency="EUR")
    data = expect_ok(r, 201)
    key = f"slk:{{{ins}}}:b:{data['uuid']}"
    for field in ("student", "course"):
        eq(redis_cli("HEXISTS", key, field), "0", f"no {field} text in the record")
    eq(redis_cli("HSTRLEN", key, "stub"), "16", "the student's uuid as its bytes")
    eq(redis_cli("HSTRLEN", key, "crsb"), "16", "the course's uuid as its bytes")
    b = srv.booking(data["uuid"])
    eq((b.get("student_uuid"), b.get("course_uuid")), (student, course), "read back as text")
    with srv.client() as c:
        token = srv.token(student, "student")
        eq(expect_ok(c.get(f"/api/v1/bookings/{data['uuid']}", token=token), 200)["uuid"], data["uuid"],
           "its student may read it")
        listed = expect_ok(c.get(f"/api/v1/bookings?student_uuid={student}", token=token), 200)["items"]
        eq([(x["uuid"], x["course_uuid"]) for x in listed], [(data["uuid"], course)], "and finds it listed")
        expect_ok(c.post(f"/api/v1/bookings/{data['uuid']}/cancel", {}, token=token), 200)


@timeout(60)
def test_cancel_never_frees_units_another_hold_took():
    # A server whose clock runs behind Redis's still counts a hold as live after Redis let its units go by TTL,
    # and another hold may have taken them since. Cancelling the first must leave the other's units alone: a
    # unit is freed only while it carries the cancelled hold's own token.
    srv = CLOCKED
    t0 = int(time.time() * 1000)
    srv.freeze(t0 - 1000)
    try:
        ins = srv.put_instructor(hold_seconds=3)
        start, end = slot(8, 10)
        a = srv.hold(ins, start, end)
        wait_until(lambda: _free(_unit_keys(a)) == _unit_keys(a), 10, what="the first hold's units lapsed in Redis")
        srv.put_instructor(iid=ins, hold_seconds=600)
        b = srv.hold(ins, start, end)
        with srv.client() as c:
            expect_ok(c.post(f"/api/v1/bookings/{a.uuid}/cancel", {}, token=a.student_token), 200)
        eq(_free(_unit_keys(b)), [], "the second hold's units survive the first one's cancel")
        expect_error(srv.try_hold(ins, start, end), 409, "slot_unavailable")
    finally:
        srv.thaw()


def test_hold_from_earlier_version_is_served():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(8, 14)
    h = srv.hold(ins, start, end, price_amount=40.00, currency="EUR")
    _as_earlier_version(h)

    b = srv.booking(h.uuid)
    eq((b.get("status"), b.get("instructor_uuid"), b.get("price_amount"), b.get("payment_session_id")),
       ("payment_required", ins, 40, h.data["payment_session_id"]), "read as before")
    expect_error(srv.try_hold(ins, start, end), 409, "slot_unavailable")
    with srv.client() as c:
        listed = expect_ok(c.get(f"/api/v1/bookings?instructor_uuid={ins}", token=srv.admin()), 200)["items"]
        eq([b["uuid"] for b in listed], [h.uuid], "the instructor's listing still finds it")
        r = c.get(f"/api/v1/instructors/{ins}/availability?from={start[:10]}&to={start[:10]}&include_held=true",
                  token=srv.admin())
        states = {s["start_time"]: s["state"] for s in expect_ok(r, 200)["slots"]}
        eq(states.get(start), "held", "availability lists it as held")

        before = int(redis_cli("PEXPIRETIME", _unit_keys(h)[0]))
        expect_ok(c.post(f"/api/v1/bookings/{h.uuid}/extend", {}, token=h.student_token), 200)
        check(int(redis_cli("PEXPIRETIME", _unit_keys(h)[0])) > before, "extend moved the units' expiry")

        expect_ok(c.post(f"/api/v1/bookings/{h.uuid}/cancel", {}, token=h.student_token), 200)
    eq(_free(_unit_keys(h)), _unit_keys(h), "cancel freed the 'H:<uuid>' units")
    srv.hold(ins, start, end)


def test_paid_hold_from_earlier_version_is_booked_once():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(8, 16)
    h = srv.hold(ins, start, end)
    _as_earlier_version(h)
    h.confirm()
    eq(srv.booking(h.uuid)["status"], "confirmed", "status")
    eq(pg_booking(h.uuid)["status"], "confirmed", "Postgres row")
    for key in _unit_keys(h):
        eq(redis_cli("GET", key), f"B:{h.uuid}", f"{key} booked")
    for _ in range(3):
        expect_error(srv.try_hold(ins, start, end, student=uid("late")), 409, "slot_unavailable")
    eq(psql(OVERLAP_AUDIT), "0", "no overlapping bookings")
