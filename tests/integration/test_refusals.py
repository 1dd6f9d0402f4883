"""Hot-slot refusals answered from memory (src/refusal_cache.c): a hold for
units a worker was just told are taken gets the same 409 without Redis, and
the moment anything frees those units the next hold is decided by Redis
again."""

import http.client
import json
import math
import subprocess
import threading
import time

from harness import (OVERLAP_AUDIT, RedisProc, Server, check, eq, expect_error, expect_ok, fail, parse_ts, psql,
                     slot, timeout, uid, utcnow, wait_until)


def evalsha_calls(redis_proc):
    out = subprocess.run(["redis-cli", "-p", str(redis_proc.port), "INFO", "commandstats"], capture_output=True,
                         text=True, timeout=10).stdout
    check("# Commandstats" in out, f"INFO commandstats: {out[:200]!r}")
    for line in out.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def taken_details(resp):
    details = expect_error(resp, 409, "slot_unavailable")
    return details.get("start_time"), details.get("end_time")


@timeout(90)
def test_stampede_on_a_taken_slot_stays_off_redis():
    redis_proc = RedisProc().start()
    try:
        with Server(redis_url=redis_proc.url, name="refusals") as srv:
            ins = srv.put_instructor()
            start, end = slot(7, 10)
            srv.hold(ins, start, end)
            with srv.client() as c:
                first = taken_details(srv.try_hold(ins, start, end, client=c))
                eq(first, (start, end), "taken range of the first refusal")
                check(evalsha_calls(redis_proc) > 0, "holds counted as EVALSHA calls")
                redis_proc.command("CONFIG", "RESETSTAT")
                t0 = time.monotonic()
                for _ in range(100):
                    eq(taken_details(srv.try_hold(ins, start, end, client=c)), first, "taken range repeated")
                elapsed = time.monotonic() - t0
                calls = evalsha_calls(redis_proc)
                # Without the refusals kept, each attempt costs a rate-limit call and a hold script (200 calls);
                # with them, Redis is asked again (2 calls) once the kept refusal is a second old.
                allowed = 2 * (math.ceil(elapsed) + 1)
                check(calls <= allowed, f"{calls} EVALSHA calls for 100 refused attempts in {elapsed:.1f} s")

                # A different question (an overlapping longer booking) is still asked of Redis.
                longer = slot(7, 10, minutes=120)
                eq(taken_details(srv.try_hold(ins, *longer, client=c)), (start, end), "overlapping range")
                check(evalsha_calls(redis_proc) > calls, "an overlapping request reached Redis")
    finally:
        redis_proc.stop()


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
    a, b = Server(name="refusals-a"), Server(name="refusals-b")
    b.jwt_secret, b.webhook_secret = a.jwt_secret, a.webhook_secret
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
    a, b = Server(name="refusals-block-a"), Server(name="refusals-block-b")
    b.jwt_secret, b.webhook_secret = a.jwt_secret, a.webhook_secret
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

            def granted():
                r = a.try_hold(ins, start, end, client=c)
                if r.status == 409:
                    return False
                expect_ok(r, 201)
                return True

            # The unblock is announced on the events channel like a release, well before the 1 s bound.
            wait_until(granted, 0.5, interval=0.02, what="a hold once the other process removed the block")


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

        n = 40
        jobs = []
        for _ in range(n):
            student = uid("racer")
            jobs.append((json.dumps(srv.booking_body(ins, start, end, student=student)).encode(),
                         srv.py_token(student, "student")))
        barrier = threading.Barrier(n, timeout=60)
        results = [None] * n

        def client(i):
            body, token = jobs[i]
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            try:
                conn.connect()
                barrier.wait()
                conn.request("POST", "/api/v1/bookings", body=body,
                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
                r = conn.getresponse()
                results[i] = (r.status, r.read())
            except Exception as e:  # reported below
                barrier.abort()
                results[i] = (None, repr(e).encode())
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        check(all(r is not None for r in results), "some clients did not finish")
        statuses = sorted(r[0] or 0 for r in results)
        bad = [r for r in results if r[0] not in (201, 409)]
        if bad:
            fail(f"unexpected replies {statuses}; e.g. {bad[0][1][:300]!r}")
        winners = [json.loads(b)["data"]["uuid"] for s, b in results if s == 201]
        eq(len(winners), 1, f"winners among {statuses}")
        eq(expect_ok(srv.callback(winners[0], "succeeded"), 200).get("status"), "confirmed", "winner confirms")
        eq(psql(f"SELECT count(*) FROM bookings WHERE instructor_id = '{ins}' AND status = 'confirmed'"), "1",
           "confirmed rows")
        eq(psql(OVERLAP_AUDIT), "0", "overlap audit")


def pttl_calls(redis_proc):
    """PTTL runs only inside lua/hold.lua, once per unit: it counts the hold scripts that ran."""
    out = subprocess.run(["redis-cli", "-p", str(redis_proc.port), "INFO", "commandstats"], capture_output=True,
                         text=True, timeout=10).stdout
    check("# Commandstats" in out, f"INFO commandstats: {out[:200]!r}")
    for line in out.splitlines():
        if line.startswith("cmdstat_pttl:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def in_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except Exception as e:  # reported by the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def outcome(t, box):
    t.join(30)
    check(not t.is_alive(), "request did not finish")
    if "error" in box:
        raise box["error"]
    return box["value"]


@timeout(90)
def test_same_question_in_flight_waits_for_its_answer():
    # The first wave: B asks while A's hold is still on its way (Redis stopped for a moment), and is told the
    # slot is taken when A gets it, without a hold script of its own.
    redis_proc = RedisProc().start()
    try:
        with Server(redis_url=redis_proc.url, env={"REDIS_TIMEOUT_MS": "5000"}, name="flights") as srv:
            ins = srv.put_instructor()
            start, end = slot(7, 15)
            srv.token(uid("warm"), "student")
            ca, cb = srv.client(), srv.client()
            redis_proc.command("CONFIG", "RESETSTAT")
            redis_proc.pause()
            try:
                ta, a = in_thread(lambda: srv.try_hold(ins, start, end, client=ca))
                time.sleep(0.3)
                tb, b = in_thread(lambda: srv.try_hold(ins, start, end, client=cb))
                time.sleep(0.3)
            finally:
                redis_proc.resume()
            expect_ok(outcome(ta, a), 201)
            eq(taken_details(outcome(tb, b)), (start, end), "the waiter's taken range")
            eq(pttl_calls(redis_proc), 4, "hold scripts run (4 units each): only the first asker's")
            ca.close()
            cb.close()
    finally:
        redis_proc.stop()


@timeout(90)
def test_waiter_goes_its_own_way_when_the_first_asker_is_refused_otherwise():
    # A is over its cap (429): that says nothing about the slot, so B asks Redis itself and gets it.
    redis_proc = RedisProc().start()
    try:
        env = {"REDIS_TIMEOUT_MS": "5000", "MAX_HOLDS_PER_STUDENT": "1"}
        with Server(redis_url=redis_proc.url, env=env, name="flights-resume") as srv:
            ins = srv.put_instructor()
            capped = uid("stu")
            srv.hold(ins, *slot(7, 8), student=capped)
            start, end = slot(7, 16)
            ca, cb = srv.client(), srv.client()
            srv.token(capped, "student")
            other = uid("stu")
            srv.token(other, "student")
            redis_proc.command("CONFIG", "RESETSTAT")
            redis_proc.pause()
            try:
                ta, a = in_thread(lambda: srv.try_hold(ins, start, end, student=capped, client=ca))
                time.sleep(0.3)
                tb, b = in_thread(lambda: srv.try_hold(ins, start, end, student=other, client=cb))
                time.sleep(0.3)
            finally:
                redis_proc.resume()
            expect_error(outcome(ta, a), 429, "rate_limited")
            data = expect_ok(outcome(tb, b), 201)
            eq(srv.booking(data["uuid"])["status"], "payment_required", "the waiter's own hold")
            eq(pttl_calls(redis_proc), 8, "hold scripts run: the first asker's (undone) and the waiter's")
            ca.close()
            cb.close()
    finally:
        redis_proc.stop()


@timeout(90)
def test_waiters_ask_redis_when_something_was_freed_meanwhile():
    # A block of the same instructor removed while the first asker is in flight may have freed what it is
    # told about: the waiter asks Redis itself (its own hold script) instead of taking the first asker's answer.
    redis_proc = RedisProc().start()
    try:
        # No rate limit: the unblock must reach its script while Redis is stopped, not wait in the limiter.
        env = {"REDIS_TIMEOUT_MS": "5000", "RATE_LIMIT_PER_SECOND": "0"}
        with Server(redis_url=redis_proc.url, env=env, name="flights-freed") as srv:
            ins = srv.put_instructor()
            start, end = slot(7, 17)
            ca, cb, cc = srv.client(), srv.client(), srv.client()
            r = cc.post(f"/api/v1/instructors/{ins}/availability/block",
                        {"blocks": [{"start_time": slot(7, 8)[0], "end_time": slot(7, 8)[1], "reason": "x"}]},
                        token=srv.admin())
            block = expect_ok(r, 201)["blocks"][0]["uuid"]
            srv.token(uid("warm"), "student")
            redis_proc.command("CONFIG", "RESETSTAT")
            redis_proc.pause()
            try:
                ta, a = in_thread(lambda: srv.try_hold(ins, start, end, client=ca))
                time.sleep(0.3)
                # Postgres forgets the block at once; freeing its units waits for Redis, but is under way.
                tc, c = in_thread(lambda: cc.request("DELETE", f"/api/v1/instructors/{ins}/availability/block/{block}",
                                                     token=srv.admin()))
                time.sleep(0.3)
                tb, b = in_thread(lambda: srv.try_hold(ins, start, end, client=cb))
                time.sleep(0.3)
            finally:
                redis_proc.resume()
            expect_ok(outcome(ta, a), 201)
            expect_ok(outcome(tc, c), 200)
            eq(taken_details(outcome(tb, b)), (start, end), "the waiter's taken range")
            eq(pttl_calls(redis_proc), 8, "hold scripts run: the first asker's and the waiter's own")
            for conn in (ca, cb, cc):
                conn.close()
    finally:
        redis_proc.stop()
