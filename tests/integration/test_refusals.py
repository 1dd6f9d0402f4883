"""Hot-slot refusals answered from memory (src/refusal_cache.c): a hold for
units a worker was just told are taken gets the same 409 without Redis, and
the moment anything frees those units the next hold is decided by Redis
again. Holds asked while the same one is in flight wait for its answer
(src/handlers/hold_flights.c)."""

import json
import math
import time

from harness import (ClockServer, OVERLAP_AUDIT, RedisProc, Server, check, eq, expect_error, expect_ok, fail,
                     granted_once_not, in_thread, joined, parse_ts, post_at_once, psql, server_pair, slot, timeout, uid,
                     utcnow, wait_until)


def taken_details(resp):
    details = expect_error(resp, 409, "slot_unavailable")
    return details.get("start_time"), details.get("end_time")


def asked_while_redis_stopped(redis_proc, *requests):
    """Resets Redis' statistics and stops it, starts each request 0.3 s after the one before (so that each is under
    way before the next), lets Redis go on, and returns their replies in order."""
    redis_proc.command("CONFIG", "RESETSTAT")
    redis_proc.pause()
    started = []
    try:
        for request in requests:
            started.append(in_thread(request))
            time.sleep(0.3)
    finally:
        redis_proc.resume()
    return [joined(t, out, "a request made while Redis was stopped") for t, out in started]


def hold_scripts(redis_proc):
    """lua/hold.lua asks once whether any of its units exists (EXISTS); nothing else these tests do runs EXISTS."""
    return redis_proc.calls("EXISTS")


@timeout(90)
def test_stampede_on_a_taken_slot_stays_off_redis():
    with RedisProc() as redis_proc, Server(redis_url=redis_proc.url, name="refusals") as srv:
        ins = srv.put_instructor()
        start, end = slot(7, 10)
        srv.hold(ins, start, end)
        with srv.client() as c:
            first = taken_details(srv.try_hold(ins, start, end, client=c))
            eq(first, (start, end), "taken range of the first refusal")
            check(redis_proc.calls("EVALSHA") > 0, "holds counted as EVALSHA calls")
            redis_proc.command("CONFIG", "RESETSTAT")
            t0 = time.monotonic()
            for _ in range(100):
                eq(taken_details(srv.try_hold(ins, start, end, client=c)), first, "taken range repeated")
            elapsed = time.monotonic() - t0
            # Without the refusals kept, each attempt costs a hold script (100 of them, and as many rate-limit
            # calls); with them, Redis is asked again once the kept refusal is a second old. Hold scripts are
            # counted, not all EVALSHA calls: the outbox's expiry checks run scripts of their own meanwhile.
            calls = hold_scripts(redis_proc)
            allowed = math.ceil(elapsed) + 1
            check(calls <= allowed, f"{calls} hold scripts for 100 refused attempts in {elapsed:.1f} s")

            # A different question (an overlapping longer booking) is still asked of Redis.
            longer = slot(7, 10, minutes=120)
            eq(taken_details(srv.try_hold(ins, *longer, client=c)), (start, end), "overlapping range")
            check(hold_scripts(redis_proc) > calls, "an overlapping request reached Redis")


@timeout(60)
def test_invalid_requests_near_a_kept_refusal_are_still_invalid():
    # Off by seconds or by part of a unit, a request would cover the same units: it must still be judged invalid.
    with Server(name="refusals-invalid") as srv:
        ins = srv.put_instructor()
        start, end = slot(7, 10)
        srv.hold(ins, start, end)
        with srv.client() as c:
            expect_error(srv.try_hold(ins, start, end, client=c), 409, "slot_unavailable")
            # Both cover the same four 15-minute units when rounded down.
            expect_error(srv.try_hold(ins, start, slot(7, 10, minutes=65)[1], client=c), 422, "validation_failed")
            expect_error(srv.try_hold(ins, start.replace(":00Z", ":30Z"), end.replace(":00Z", ":30Z"), client=c),
                         422, "validation_failed")
            expect_error(srv.try_hold(ins, start, end, client=c), 409, "slot_unavailable")


# A body seen before is not parsed again (src/hold_questions.c). A kept refusal lasts a second at most, so each of
# these asks again within that second: answered from a body's old question, it would be a 409.
def same_body_twice(srv, ins, start, end):
    """Holds with one body, is refused with the very same bytes; returns (body, its student's token, when)."""
    body = srv.booking_body(ins, start, end)
    token = srv.token(body["student_uuid"], "student")
    with srv.client() as c:
        expect_ok(c.post("/api/v1/bookings", body, token=token), 201)
        t0 = time.monotonic()
        expect_error(c.post("/api/v1/bookings", body, token=token), 409, "slot_unavailable")
    return body, token, t0


def within_a_kept_second(scenario):
    """Runs scenario(attempt), which returns when its first refusal came, until the run ended within the second
    that refusal is kept (a slow machine gets three tries, each on a new slot)."""
    for attempt in range(3):
        if time.monotonic() - scenario(attempt) < 0.9:
            return
    fail("three runs took a second or more after their refusal: the kept refusal could not be tested")


@timeout(60)
def test_same_body_under_new_settings_is_judged_again():
    # Settings changes also drop kept refusals (the RESTORE script bumps the freed generation); a kept question
    # is in addition only used under the settings version it was laid out with.
    with Server(name="refusals-body-settings") as srv:
        ins = srv.put_instructor()

        def scenario(attempt):
            srv.put_instructor(ins)  # the 15-minute grid
            body, token, t0 = same_body_twice(srv, ins, *slot(7 + attempt, 10, minute=15))
            srv.put_instructor(ins, granularity_minutes=60)  # 10:15 is off the new grid
            with srv.client() as c:
                expect_error(c.post("/api/v1/bookings", body, token=token), 422, "validation_failed")
            return t0

        within_a_kept_second(scenario)


@timeout(60)
def test_same_body_from_someone_else_is_forbidden():
    with Server(name="refusals-body-caller") as srv:
        ins = srv.put_instructor()

        def scenario(attempt):
            other = srv.token(uid("stu"), "student")
            body, _, t0 = same_body_twice(srv, ins, *slot(7 + attempt, 10))
            with srv.client() as c:
                expect_error(c.post("/api/v1/bookings", body, token=other), 403, "forbidden")
            return t0

        within_a_kept_second(scenario)


@timeout(60)
def test_same_body_once_its_start_passed_is_late():
    with ClockServer(name="refusals-body-late") as srv:
        ins = srv.put_instructor()

        def scenario(attempt):
            srv.thaw()
            start, end = slot(7 + attempt, 10)
            body, token, t0 = same_body_twice(srv, ins, start, end)
            srv.freeze(parse_ts(start).timestamp() * 1000 + 60000)
            with srv.client() as c:
                expect_error(c.post("/api/v1/bookings", body, token=token), 422, "validation_failed")
            return t0

        within_a_kept_second(scenario)


@timeout(60)
def test_cancelled_slot_is_granted_at_once():
    with Server(name="refusals-cancel") as srv:
        ins = srv.put_instructor()
        start, end = slot(7, 11)
        h = srv.hold(ins, start, end)
        with srv.client() as c:
            for _ in range(3):
                expect_error(srv.try_hold(ins, start, end, client=c), 409, "slot_unavailable")
            expect_ok(srv.action(h.uuid, "cancel", h.student_token, client=c), 200)
            # No waiting: the cancel's reply comes after its script ran, and that already dropped the refusal.
            second = srv.hold(ins, start, end, client=c)
            expect_error(srv.try_hold(ins, start, end, client=c), 409, "slot_unavailable")
            eq(second.confirm().get("status"), "confirmed", "the second holder pays")


@timeout(60)
def test_expired_hold_does_not_keep_its_refusal():
    with Server(name="refusals-expiry") as srv:
        ins = srv.put_instructor(hold_seconds=2)
        start, end = slot(7, 12)
        h = srv.hold(ins, start, end)
        expires = parse_ts(h.data["hold_expires_at"])
        with srv.client() as c:
            while (expires - utcnow()).total_seconds() > 0.3:
                expect_error(srv.try_hold(ins, start, end, client=c), 409, "slot_unavailable")
                time.sleep(0.05)
            left = (expires - utcnow()).total_seconds() + 0.05
            if left > 0:
                time.sleep(left)
            # Refused a moment ago, but the taken unit has lapsed since: Redis decides.
            srv.hold(ins, start, end, client=c)


@timeout(60)
def test_slot_freed_by_another_process_is_granted_promptly():
    a, b = server_pair("refusals")
    with a, b:
        ins = a.put_instructor()
        start, end = slot(7, 13)
        h = a.hold(ins, start, end)
        with a.client() as c:
            for _ in range(3):
                expect_error(a.try_hold(ins, start, end, client=c), 409, "slot_unavailable")
            expect_ok(b.action(h.uuid, "cancel", h.student_token), 200)
            # The release reaches the other process on the events channel, well before the 1 s bound.
            t0 = time.monotonic()

            def granted():
                r = a.try_hold(ins, start, end, client=c)
                if r.status == 409:
                    return False
                expect_ok(r, 201)
                return True

            wait_until(granted, 0.5, interval=0.02, what="a hold once the other process freed the slot")
            check(time.monotonic() - t0 < 0.5, "granted within 0.5 s")


@timeout(60)
def test_block_removed_by_another_process_is_granted_promptly():
    a, b = server_pair("refusals-block")
    with a, b:
        ins = a.put_instructor()
        start, end = slot(7, 18)
        with a.client() as c:
            r = c.post(f"/api/v1/instructors/{ins}/availability/block",
                       {"blocks": [{"start_time": start, "end_time": end, "reason": "away"}]}, token=a.admin())
            block = expect_ok(r, 201)["blocks"][0]["uuid"]
            for _ in range(3):
                expect_error(a.try_hold(ins, start, end, client=c), 409, "slot_unavailable")
            with b.client() as cb:
                expect_ok(cb.request("DELETE", f"/api/v1/instructors/{ins}/availability/block/{block}",
                                     token=b.admin()), 200)

            # The unblock is announced on the events channel like a release, well before the 1 s bound.
            wait_until(granted_once_not(409, lambda: a.try_hold(ins, start, end, client=c)), 0.5, interval=0.02,
                       what="a hold once the other process removed the block")


@timeout(60)
def test_idempotency_key_goes_through_the_gate():
    with Server(name="refusals-idem") as srv:
        ins = srv.put_instructor()
        start, end = slot(7, 14)
        srv.hold(ins, start, end)
        student = uid("stu")
        body = srv.booking_body(ins, start, end, student=student)
        tok = srv.token(student, "student")
        with srv.client() as c:
            expect_error(srv.try_hold(ins, start, end, client=c), 409, "slot_unavailable")
            key = uid("idem")
            r1 = c.post("/api/v1/bookings", body, token=tok, headers={"Idempotency-Key": key})
            expect_error(r1, 409, "slot_unavailable")
            r2 = c.post("/api/v1/bookings", body, token=tok, headers={"Idempotency-Key": key})
            expect_error(r2, 409, "slot_unavailable")
            eq(r2.header("idempotent-replayed"), "true", "the refusal was stored under its key and replayed")


@timeout(150)
def test_stampede_after_a_release_has_one_winner():
    # Workers full of refusals, the slot freed, then 40 clients at once:
    # exactly one hold, one confirmed row, no overlap in Postgres.
    with Server(env={"WORKERS": 2}, name="refusals-race") as srv:
        ins = srv.put_instructor()
        start, end = slot(8, 10)
        h = srv.hold(ins, start, end)
        for _ in range(20):
            expect_error(srv.try_hold(ins, start, end), 409, "slot_unavailable")
        expect_ok(srv.action(h.uuid, "cancel", h.student_token), 200)

        requests = []
        for _ in range(40):
            student = uid("racer")
            requests.append(("/api/v1/bookings", json.dumps(srv.booking_body(ins, start, end, student=student)).encode(),
                             srv.py_token(student, "student"), None))
        results = post_at_once(srv.port, requests)
        statuses = sorted(r[0] for r in results)
        bad = [r for r in results if r[0] not in (201, 409)]
        if bad:
            fail(f"unexpected replies {statuses}; e.g. {bad[0][1][:300]!r}")
        winners = [json.loads(b)["data"]["uuid"] for s, b, _ in results if s == 201]
        eq(len(winners), 1, f"winners among {statuses}")
        eq(expect_ok(srv.callback(winners[0], "succeeded"), 200).get("status"), "confirmed", "winner confirms")
        eq(psql(f"SELECT count(*) FROM bookings WHERE instructor_id = '{ins}' AND status = 'confirmed'"), "1",
           "confirmed rows")
        eq(psql(OVERLAP_AUDIT), "0", "overlap audit")


@timeout(90)
def test_same_question_in_flight_waits_for_its_answer():
    # The first wave: B asks while A's hold is still on its way (Redis stopped for a moment), and is told the
    # slot is taken when A gets it, without a hold script of its own.
    env = {"REDIS_TIMEOUT_MS": "5000"}
    with RedisProc() as redis_proc, Server(redis_url=redis_proc.url, env=env, name="flights") as srv:
        ins = srv.put_instructor()
        start, end = slot(7, 15)
        srv.token(uid("warm"), "student")
        with srv.client() as ca, srv.client() as cb:
            a, b = asked_while_redis_stopped(redis_proc, lambda: srv.try_hold(ins, start, end, client=ca),
                                             lambda: srv.try_hold(ins, start, end, client=cb))
        expect_ok(a, 201)
        eq(taken_details(b), (start, end), "the waiter's taken range")
        eq(hold_scripts(redis_proc), 1, "hold scripts run: only the first asker's")


@timeout(90)
def test_waiter_goes_its_own_way_when_the_first_asker_is_refused_otherwise():
    # A is over its cap (429): that says nothing about the slot, so B asks Redis itself and gets it.
    env = {"REDIS_TIMEOUT_MS": "5000", "MAX_HOLDS_PER_STUDENT": "1"}
    with RedisProc() as redis_proc, Server(redis_url=redis_proc.url, env=env, name="flights-resume") as srv:
        ins = srv.put_instructor()
        capped, other = uid("stu"), uid("stu")
        srv.hold(ins, *slot(7, 8), student=capped)
        start, end = slot(7, 16)
        srv.token(capped, "student")
        srv.token(other, "student")
        with srv.client() as ca, srv.client() as cb:
            a, b = asked_while_redis_stopped(redis_proc,
                                             lambda: srv.try_hold(ins, start, end, student=capped, client=ca),
                                             lambda: srv.try_hold(ins, start, end, student=other, client=cb))
        expect_error(a, 429, "rate_limited")
        data = expect_ok(b, 201)
        eq(srv.booking(data["uuid"])["status"], "payment_required", "the waiter's own hold")
        eq(hold_scripts(redis_proc), 2, "hold scripts run: the first asker's (undone) and the waiter's")


@timeout(90)
def test_waiters_ask_redis_when_something_was_freed_meanwhile():
    # A block of the same instructor removed while the first asker is in flight may have freed what it is
    # told about: the waiter asks Redis itself (its own hold script) instead of taking the first asker's answer.
    # No rate limit: the unblock must reach its script while Redis is stopped, not wait in the limiter.
    env = {"REDIS_TIMEOUT_MS": "5000", "RATE_LIMIT_PER_SECOND": "0"}
    with RedisProc() as redis_proc, Server(redis_url=redis_proc.url, env=env, name="flights-freed") as srv:
        ins = srv.put_instructor()
        start, end = slot(7, 17)
        with srv.client() as ca, srv.client() as cb, srv.client() as cc:
            r = cc.post(f"/api/v1/instructors/{ins}/availability/block",
                        {"blocks": [{"start_time": slot(7, 8)[0], "end_time": slot(7, 8)[1], "reason": "x"}]},
                        token=srv.admin())
            block = expect_ok(r, 201)["blocks"][0]["uuid"]
            srv.token(uid("warm"), "student")
            # Postgres forgets the block at once; freeing its units waits for Redis, but is under way.
            a, c, b = asked_while_redis_stopped(
                redis_proc, lambda: srv.try_hold(ins, start, end, client=ca),
                lambda: cc.request("DELETE", f"/api/v1/instructors/{ins}/availability/block/{block}",
                                   token=srv.admin()),
                lambda: srv.try_hold(ins, start, end, client=cb))
        expect_ok(a, 201)
        expect_ok(c, 200)
        eq(taken_details(b), (start, end), "the waiter's taken range")
        eq(hold_scripts(redis_proc), 2, "hold scripts run: the first asker's and the waiter's own")
