"""Reschedule (R-RESCHED): policy edges, the atomic move, and races against
holds and other moves. Nothing may be left half-moved: after every reply
the booking owns exactly one range in Redis and in Postgres."""

import datetime as dt
import http.client
import json
import os
import subprocess
import threading
import time

from harness import OVERLAP_AUDIT, ClockServer, check, eq, expect_error, expect_ok, fail, pg_booking, psql, redis_cli, \
    slot, timeout, ts_ms, uid, wait_until

HOUR = 3600 * 1000
DAY = 24 * HOUR

SRV = None


def setup_module():
    global SRV
    SRV = ClockServer(name="reschedule")
    SRV.start()


def teardown_module():
    if SRV is not None:
        SRV.stop_checked()


def unit(instructor, start_ts, offset_min=0):
    return redis_cli("GET", f"slk:{{{instructor}}}:u:{ts_ms(start_ts) // 60000 + offset_min}")


def booked(days=3, hour=10, **settings):
    SRV.freeze(0)
    ins = SRV.put_instructor(**settings)
    h = SRV.hold(ins, *slot(days, hour))
    h.confirm()
    return h


def move(h, new_start, token=None, **extra):
    body = {"new_start_time": new_start}
    body.update(extra)
    return SRV.action(h.uuid, "reschedule", token or h.student_token, body)


def assert_owns(h, start, end):
    row = pg_booking(h.uuid)
    eq(int(dt.datetime.fromisoformat(row["start_at"]).timestamp() * 1000), ts_ms(start), "PG start_at")
    eq(int(dt.datetime.fromisoformat(row["end_at"]).timestamp() * 1000), ts_ms(end), "PG end_at")
    eq(row["status"], "confirmed", "PG status")
    got = h.get()
    eq(got["start_time"], start, "start_time")
    eq(got["end_time"], end, "end_time")


def test_reschedule_moves_the_booking_and_frees_the_old_slot():
    h = booked()
    old, new = slot(3, 10), slot(4, 15)
    data = expect_ok(move(h, new[0]), 200)
    eq((data["start_time"], data["end_time"]), new, "new range, same duration")
    eq(data["status"], "confirmed", "status")
    assert_owns(h, *new)
    eq(unit(h.instructor, old[0]), "", "old unit freed in Redis")
    eq(unit(h.instructor, new[0]), f"B:{h.uuid}", "new unit booked in Redis")
    expect_ok(SRV.try_hold(h.instructor, *old), 201)
    expect_error(SRV.try_hold(h.instructor, *new), 409, "slot_unavailable")
    eq(psql(OVERLAP_AUDIT), "0", "no overlapping bookings")


def test_reschedule_into_an_overlapping_range():
    h = booked()
    new = slot(3, 10, 30)
    expect_ok(move(h, new[0]), 200)
    assert_owns(h, *new)
    expect_ok(SRV.try_hold(h.instructor, *slot(3, 10, 0, 30)), 201)
    expect_error(SRV.try_hold(h.instructor, *slot(3, 11, 0, 30)), 409, "slot_unavailable")
    eq(unit(h.instructor, new[0], 15), f"B:{h.uuid}", "shared unit still booked")


def test_reschedule_with_a_buffer_moves_the_buffer_too():
    h = booked(buffer_minutes=15)
    expect_ok(move(h, slot(4, 10)[0]), 200)
    expect_ok(SRV.try_hold(h.instructor, *slot(3, 9, 0, 45)), 201)
    expect_error(SRV.try_hold(h.instructor, *slot(4, 11, 0, 30)), 409, "slot_unavailable")


def test_notice_edge_exactly_twelve_hours_before():
    h = booked()
    start = ts_ms(h.data["start_time"])
    SRV.freeze(start - 12 * HOUR)
    expect_ok(move(h, slot(4, 10)[0]), 200)
    SRV.freeze(0)


def test_notice_edge_one_second_inside_twelve_hours():
    h = booked()
    start = ts_ms(h.data["start_time"])
    SRV.freeze(start - 12 * HOUR + 1000)
    details = expect_error(move(h, slot(4, 10)[0]), 400, "policy_violation")
    eq(details.get("rule"), "reschedule_notice", "rule")
    eq(ts_ms(details["not_after"]), start - 12 * HOUR, "not_after")
    SRV.freeze(0)
    assert_owns(h, *slot(3, 10))


def test_horizon_edge_thirty_days():
    h = booked(days=5)
    target = slot(33, 10)
    SRV.freeze(ts_ms(target[0]) - 30 * DAY - 1000)
    details = expect_error(move(h, target[0]), 400, "policy_violation")
    eq(details.get("rule"), "reschedule_horizon", "rule")
    SRV.freeze(ts_ms(target[0]) - 30 * DAY)
    expect_ok(move(h, target[0]), 200)
    SRV.freeze(0)
    assert_owns(h, *target)


def test_new_start_must_be_in_the_future():
    h = booked()
    details = expect_error(move(h, slot(-1, 10)[0]), 400, "policy_violation")
    eq(details.get("rule"), "new_start_in_future", "rule")


def test_same_duration():
    h = booked()
    new = slot(4, 10, 0, 90)
    details = expect_error(move(h, new[0], new_end_time=new[1]), 400, "policy_violation")
    eq(details.get("rule"), "same_duration", "rule")
    same = slot(4, 10)
    expect_ok(move(h, same[0], new_end_time=same[1]), 200)


def test_validation_of_the_new_time():
    h = booked(weekly=[{"day": d, "start": "08:00", "end": "18:00"}
                       for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")])
    expect_error(move(h, slot(4, 10, 7)[0]), 422, "validation_failed")
    expect_error(move(h, slot(4, 20)[0]), 422, "validation_failed")
    expect_error(move(h, slot(3, 10)[0]), 422, "validation_failed")
    expect_error(move(h, "tomorrow"), 422, "validation_failed")
    assert_owns(h, *slot(3, 10))


def test_who_may_reschedule_and_from_which_status():
    h = booked()
    expect_error(move(h, slot(4, 10)[0], token=h.instructor_token), 403, "forbidden")
    expect_error(move(h, slot(4, 10)[0], token=SRV.token(uid("stu"), "student")), 404, "not_found")
    expect_ok(move(h, slot(4, 11)[0], token=SRV.admin()), 200)
    paid = booked(requires_acceptance=True)
    eq(expect_error(move(paid, slot(4, 10)[0]), 409, "invalid_transition").get("status"), "paid", "status")
    SRV.freeze(0)
    hold = SRV.hold(SRV.put_instructor(), *slot(3, 10))
    eq(expect_error(move(hold, slot(4, 10)[0]), 409, "invalid_transition").get("status"), "payment_required",
       "status")


def test_taken_target_leaves_everything_as_it_was():
    h = booked()
    target = slot(4, 10)
    other = SRV.hold(h.instructor, *target)
    details = expect_error(move(h, target[0]), 409, "slot_unavailable")
    eq(details.get("start_time"), target[0], "taken range reported")
    assert_owns(h, *slot(3, 10))
    eq(unit(h.instructor, target[0]), str(other.data["fence_token"]), "the other hold is untouched")
    eq(unit(h.instructor, slot(3, 10)[0]), f"B:{h.uuid}", "old unit still booked")


def test_postgres_refusing_the_move_drops_the_claims():
    h = booked()
    target = slot(4, 10)
    # A booking Redis does not know about (e.g. written while it was away): the exclusion constraint refuses.
    ghost = psql("SELECT gen_random_uuid()")
    psql(f"INSERT INTO bookings (uuid, status, student_id, course_id, instructor_id, start_at, end_at, "
         f"units_start_at, unit_minutes, unit_count, payment_session_id, hold_expires_at, fence_token, created_at) "
         f"VALUES ('{ghost}', 'confirmed', 'stu-ghost', 'crs', '{h.instructor}', '{target[0]}', '{target[1]}', "
         f"'{target[0]}', 15, 4, 'sess_ghost', now(), 0, now())")
    expect_error(move(h, target[0]), 409, "slot_unavailable")
    assert_owns(h, *slot(3, 10))
    for i in range(0, 60, 15):
        eq(unit(h.instructor, target[0], i), "", f"no claim left at +{i} min")
    eq(unit(h.instructor, slot(3, 10)[0]), f"B:{h.uuid}", "old unit still booked")


@timeout(60)
def test_while_the_move_is_in_flight_both_ranges_are_taken():
    h = booked()
    old, new = slot(3, 10), slot(4, 10)
    locker = subprocess.Popen(["psql", os.environ["DATABASE_URL"], "-q", "-v", "ON_ERROR_STOP=1"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    result = {}
    try:
        locker.stdin.write(f"BEGIN; SELECT 1 FROM bookings WHERE uuid = '{h.uuid}' FOR UPDATE;\n")
        locker.stdin.flush()
        wait_until(lambda: psql("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                                "WHERE l.mode = 'RowShareLock' AND a.state = 'idle in transaction'") != "0",
                   10, what="row lock held")
        t = threading.Thread(target=lambda: result.setdefault("r", move(h, new[0])))
        t.start()
        wait_until(lambda: unit(h.instructor, new[0]) == f"M:{h.uuid}", 10, what="new units claimed")
        expect_error(SRV.try_hold(h.instructor, *old), 409, "slot_unavailable")
        expect_error(SRV.try_hold(h.instructor, *new), 409, "slot_unavailable")
        check("r" not in result, "the move replied before Postgres had it")
    finally:
        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        locker.wait(10)
    t.join(30)
    expect_ok(result["r"], 200)
    assert_owns(h, *new)
    expect_ok(SRV.try_hold(h.instructor, *old), 201)


def _post(port, path, body, token):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def _race(jobs):
    barrier = threading.Barrier(len(jobs), timeout=30)
    results = [None] * len(jobs)

    def run(i):
        path, body, token = jobs[i]
        try:
            barrier.wait()
            results[i] = _post(SRV.port, path, body, token)
        except Exception as e:  # reported below
            results[i] = ("error", repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for r in results:
        if r is None or r[0] == "error":
            fail(f"a racing client failed: {r}")
    return results


@timeout(120)
def test_reschedule_races_holds_on_the_target():
    for _ in range(6):
        h = booked()
        old, target = slot(3, 10), slot(4, 10)
        jobs = [(f"/api/v1/bookings/{h.uuid}/reschedule", {"new_start_time": target[0]}, h.student_token)]
        for _ in range(20):
            student = uid("racer")
            jobs.append(("/api/v1/bookings", SRV.booking_body(h.instructor, *target, student=student),
                         SRV.py_token(student, "student")))
        results = _race(jobs)
        moved = results[0][0] == 200
        holds = [r for r in results[1:] if r[0] == 201]
        check(all(r[0] in (201, 409) for r in results[1:]), f"hold replies: {[r[0] for r in results[1:]]}")
        if moved:
            eq(len(holds), 0, "no hold may win once the move did")
            assert_owns(h, *target)
            eq(unit(h.instructor, old[0]), "", "old unit freed")
            for i in range(0, 60, 15):
                eq(unit(h.instructor, target[0], i), f"B:{h.uuid}", f"target unit +{i}")
        else:
            eq(results[0][0], 409, f"the move lost: {results[0]}")
            eq(len(holds), 1, "exactly one hold wins")
            assert_owns(h, *old)
            winner = holds[0][1]["data"]["fence_token"]
            for i in range(0, 60, 15):
                eq(unit(h.instructor, target[0], i), str(winner), f"target unit +{i}")
            eq(unit(h.instructor, old[0]), f"B:{h.uuid}", "old unit still booked")
    eq(psql(OVERLAP_AUDIT), "0", "no overlapping bookings")


@timeout(90)
def test_two_moves_of_one_booking_race():
    """Either one move wins and the other gets 409, or they ran one after the other (both 200); in both cases the
    booking ends in one target and every other unit is free."""
    for _ in range(5):
        h = booked()
        targets = [slot(4, 10), slot(5, 10)]
        jobs = [(f"/api/v1/bookings/{h.uuid}/reschedule", {"new_start_time": t[0]}, h.student_token) for t in targets]
        results = _race(jobs)
        wins = [i for i, r in enumerate(results) if r[0] == 200]
        check(len(wins) >= 1, f"a move must win: {results}")
        for i in range(2):
            if i in wins:
                eq(results[i][1]["data"]["start_time"], targets[i][0], "a 200 reports its own target")
            else:
                eq(results[i][0], 409, f"the loser gets 409: {results[i]}")
        final = h.get()["start_time"]
        kept = [i for i in wins if targets[i][0] == final]
        eq(len(kept), 1, f"the booking ends in a winner's target, got {final}")
        assert_owns(h, *targets[kept[0]])
        other = targets[1 - kept[0]]
        for i in range(0, 60, 15):
            eq(unit(h.instructor, targets[kept[0]][0], i), f"B:{h.uuid}", f"kept target booked at +{i}")
            eq(unit(h.instructor, other[0], i), "", f"other target free at +{i}")
            eq(unit(h.instructor, slot(3, 10)[0], i), "", f"old range free at +{i}")
        expect_ok(SRV.try_hold(h.instructor, *other), 201)
    eq(psql(OVERLAP_AUDIT), "0", "no overlapping bookings")


@timeout(60)
def test_cancel_racing_a_move_leaves_nothing_booked():
    for _ in range(5):
        h = booked()
        jobs = [(f"/api/v1/bookings/{h.uuid}/reschedule", {"new_start_time": slot(4, 10)[0]}, h.student_token),
                (f"/api/v1/bookings/{h.uuid}/cancel", {}, h.student_token)]
        results = _race(jobs)
        eq(results[1][0], 200, f"the cancel succeeds: {results[1]}")
        eq(pg_booking(h.uuid)["status"], "cancelled", "PG status")
        time.sleep(0.05)
        for s in (slot(3, 10), slot(4, 10)):
            for i in range(0, 60, 15):
                eq(unit(h.instructor, s[0], i), "", f"unit {s[0]} +{i} freed")
