"""Abuse caps (R-HOLD, OWASP API6): live holds per student, and a token
bucket rate limit per client."""

import math
import os
import threading
import time
import urllib.parse
import uuid

from harness import (RedisProc, Server, check, eq, expect_error, expect_ok, granted_once_not, parse_ts, redis_cli,
                     resp_command, server_pair, slot, timeout, uid, utcnow, wait_until)


class DefaultCapsServer(Server):
    """A server that sees no MAX_HOLDS_PER_STUDENT at all, so its default applies."""

    def env(self):
        e = super().env()
        e.pop("MAX_HOLDS_PER_STUDENT", None)
        return e


def redis_port():
    url = urllib.parse.urlparse(os.environ["REDIS_URL"])
    return url.port or 6379


def redis(*args):
    return resp_command(redis_port(), *args)


def live_count(student):
    """The cap's entries in the student's key, scored below 0 (expired ones included until the next admission)."""
    return int(redis("ZCOUNT", f"slk:stu:{{{student}}}:holds", "-inf", "(0"))


def listed_holds(student):
    """The listing's entries in the student's key, scored by start."""
    return int(redis("ZCOUNT", f"slk:stu:{{{student}}}:holds", "0", "+inf"))


def expect_capped(resp, cap):
    """429 rate_limited for the hold cap; returns (retry_after_ms, Retry-After seconds)."""
    details = expect_error(resp, 429, "rate_limited")
    eq(details.get("limit"), cap, f"details.limit of {resp}")
    ms = details.get("retry_after_ms")
    check(isinstance(ms, int) and ms >= 1, f"details.retry_after_ms {ms!r}: {resp}")
    ra = resp.header("retry-after")
    check(ra is not None and ra.isdigit(), f"Retry-After {ra!r} must be whole seconds: {resp}")
    eq(int(ra), max(1, math.ceil(ms / 1000)), f"Retry-After vs retry_after_ms {ms} of {resp}")
    return ms, int(ra)


def ms_between(a, b):
    return (b - a).total_seconds() * 1000


# --------------------------------------------------------------------------
# Live holds per student


@timeout(60)
def test_sixth_hold_refused_until_one_ends():
    with Server(env={"MAX_HOLDS_PER_STUDENT": "5"}, name="caps5") as srv:
        ins = srv.put_instructor()
        stu, other = uid("stu"), uid("stu")
        holds = [srv.hold(ins, *slot(7, 8 + i), student=stu) for i in range(5)]
        earliest = min(parse_ts(h.data["hold_expires_at"]) for h in holds)

        before = utcnow()
        r = srv.try_hold(ins, *slot(7, 14), student=stu)
        after = utcnow()
        ms, ra = expect_capped(r, 5)
        # The wait is the earliest hold's remaining life, as seen at the refusal.
        lo, hi = ms_between(after, earliest) - 5, ms_between(before, earliest) + 5
        check(lo <= ms <= hi, f"retry_after_ms {ms} not within [{lo:.0f}, {hi:.0f}] (earliest hold {earliest})")
        check(1790 <= ra <= 1800, f"Retry-After {ra} s, expected about the default hold_seconds 1800")

        # The refused hold took nothing: its slot is free for someone else, who is not capped either.
        srv.hold(ins, *slot(7, 14), student=other)
        for i in range(4):
            srv.hold(ins, *slot(8, 8 + i), student=other)
        eq(live_count(stu), 5, "live holds counted for the capped student")

        # Cancelling one hold gives its place back, exactly one.
        expect_ok(srv.action(holds[0].uuid, "cancel", holds[0].student_token), 200)
        srv.hold(ins, *slot(7, 15), student=stu)
        expect_capped(srv.try_hold(ins, *slot(7, 16), student=stu), 5)

        # So does paying for one: a confirmed booking is no longer a live hold.
        holds[1].confirm()
        srv.hold(ins, *slot(7, 16), student=stu)
        expect_capped(srv.try_hold(ins, *slot(7, 17), student=stu), 5)


@timeout(60)
def test_refused_hold_does_not_count():
    with Server(env={"MAX_HOLDS_PER_STUDENT": "2"}, name="caps2") as srv:
        ins = srv.put_instructor()
        stu, other = uid("stu"), uid("stu")
        srv.hold(ins, *slot(7, 8), student=stu)
        srv.hold(ins, *slot(7, 9), student=other)
        for _ in range(4):
            expect_error(srv.try_hold(ins, *slot(7, 9), student=stu), 409, "slot_unavailable")
        eq(live_count(stu), 1, "live holds after refused attempts")
        srv.hold(ins, *slot(7, 10), student=stu)
        expect_capped(srv.try_hold(ins, *slot(7, 11), student=stu), 2)
        eq(live_count(stu), 2, "live holds at the cap")


@timeout(60)
def test_invalid_hold_does_not_count():
    with Server(env={"MAX_HOLDS_PER_STUDENT": "1"}, name="caps1") as srv:
        ins = srv.put_instructor()
        stu = uid("stu")
        start, _ = slot(7, 8)
        for _ in range(3):
            expect_error(srv.try_hold(ins, start, start, student=stu), 422, "validation_failed")
        expect_error(srv.try_hold(uid("nosuch"), *slot(7, 8), student=stu), 404)
        srv.hold(ins, *slot(7, 8), student=stu)
        expect_capped(srv.try_hold(ins, *slot(7, 9), student=stu), 1)


@timeout(60)
def test_expired_holds_free_the_cap():
    with Server(env={"MAX_HOLDS_PER_STUDENT": "2"}, name="caps-exp") as srv:
        short, long = srv.put_instructor(hold_seconds=2), srv.put_instructor()
        stu = uid("stu")
        brief = srv.hold(short, *slot(7, 8), student=stu)
        srv.hold(long, *slot(7, 8), student=stu)
        ms, ra = expect_capped(srv.try_hold(long, *slot(7, 12), student=stu), 2)
        check(ms <= 2000 and ra <= 2, f"retry_after_ms {ms} / Retry-After {ra}: the 2 s hold lapses first")

        def admitted():
            r = srv.try_hold(long, *slot(7, 12), student=stu)
            if r.status == 429:
                return False
            expect_ok(r, 201)
            return utcnow()

        # Nobody cancels or pays: the short hold's place comes back by its expiry alone.
        when = wait_until(admitted, 10, interval=0.2, what="a hold admitted once the 2 s hold expired")
        lapsed = parse_ts(brief.data["hold_expires_at"])
        check(when >= lapsed, f"admitted at {when}, before the short hold expired at {lapsed}")
        eq(brief.get().get("status"), "expired", "status of the lapsed hold")
        # The long hold still counts: the cap holds again, now for about its 30 minutes.
        ms, ra = expect_capped(srv.try_hold(long, *slot(7, 13), student=stu), 2)
        check(1700 <= ra <= 1800, f"Retry-After {ra} s, expected the long hold's remaining life")


@timeout(60)
def test_the_cap_and_the_listing_share_the_students_one_key():
    # One key per student instead of two (~140 B less Redis per hold): the cap's entries, scored by minus
    # their expiry, beside the listing's, scored by start. The key lives until the latest start among the
    # student's holds, which no hold outlives, extended or not.
    with Server(env={"MAX_HOLDS_PER_STUDENT": "2"}, name="caps-key") as srv:
        short, long = srv.put_instructor(hold_seconds=60), srv.put_instructor(hold_seconds=120)
        stu = uid("stu")
        first = srv.hold(short, *slot(7, 9), student=stu)
        second = srv.hold(long, *slot(7, 8), student=stu)
        key = f"slk:stu:{{{stu}}}:holds"
        eq(redis("EXISTS", f"slk:stu:{{{stu}}}:live"), "0", "no second key")
        eq(live_count(stu), 2, "two live holds counted")
        eq(listed_holds(stu), 2, "and listed")

        def cap_score(h):
            return float(redis_cli("ZSCORE", key, h.uuid))

        for h in (first, second):
            expires = parse_ts(h.data["hold_expires_at"]).timestamp() * 1000
            eq(cap_score(h), -expires, "a cap entry is scored by minus its hold's expiry")
        latest = parse_ts(first.data["start_time"]).timestamp() * 1000
        eq(int(redis("PEXPIRETIME", key)), int(latest), "the key lives until the latest start, not the later hold's")
        token = srv.token(stu, "student")
        extended = expect_ok(srv.action(first.uuid, "extend", token), 200)
        expires = parse_ts(extended["hold_expires_at"]).timestamp() * 1000
        wait_until(lambda: cap_score(first) == -expires, 5, interval=0.05, what="the extended hold's cap entry moved")
        expect_capped(srv.try_hold(long, *slot(7, 10), student=stu), 2)
        with srv.client() as c:
            data = expect_ok(c.get(f"/api/v1/bookings?student_uuid={stu}", token=token), 200)
        eq([b["uuid"] for b in data["items"]], [first.uuid, second.uuid], "the listing reads past the cap's entries")
        eq(live_count(stu), 2, "and a listing leaves them")
        expect_ok(srv.action(first.uuid, "cancel", token), 200)
        # The cap entry goes on the side, right behind the reply.
        wait_until(lambda: live_count(stu) == 1, 5, interval=0.05, what="a cancelled hold leaving the count")
        srv.hold(long, *slot(7, 10), student=stu)


@timeout(60)
def test_a_hold_listed_with_the_cap_off_keeps_the_students_key_alive():
    # A key the cap gave an expiry (its latest start) must cover a later hold listed with the cap off too.
    stu = uid("stu")
    key = f"slk:stu:{{{stu}}}:holds"
    with Server(env={"MAX_HOLDS_PER_STUDENT": "2"}, name="caps-on2") as srv:
        capped = srv.hold(srv.put_instructor(), *slot(7, 8), student=stu)
    eq(int(redis("PEXPIRETIME", key)), int(parse_ts(capped.data["start_time"]).timestamp() * 1000),
       "the cap set the key's expiry at its hold's start")
    with Server(env={"MAX_HOLDS_PER_STUDENT": "0"}, name="caps-off2") as srv:
        later = srv.hold(srv.put_instructor(), *slot(9, 8), student=stu)
        want = int(parse_ts(later.data["start_time"]).timestamp() * 1000)
        wait_until(lambda: int(redis("PEXPIRETIME", key)) == want, 5, interval=0.05,
                   what="the key's expiry moved to the later hold's start")


@timeout(60)
def test_live_holds_counted_by_an_earlier_version_still_count():
    # Before an upgrade the cap counted a student's live holds in a key of its own; until those lapse they count.
    with Server(env={"MAX_HOLDS_PER_STUDENT": "2"}, name="caps-old") as srv:
        ins = srv.put_instructor()
        stu = uid("stu")
        old = f"slk:stu:{{{stu}}}:live"
        now = int(time.time() * 1000)
        redis("ZADD", old, str(now + 3000), str(uuid.uuid4()))
        redis("PEXPIREAT", old, str(now + 3000))
        srv.hold(ins, *slot(7, 8), student=stu)
        ms, _ = expect_capped(srv.try_hold(ins, *slot(7, 9), student=stu), 2)
        check(ms <= 3000, f"retry_after_ms {ms}: the earlier version's entry lapses first")

        wait_until(granted_once_not(429, lambda: srv.try_hold(ins, *slot(7, 9), student=stu)), 10, interval=0.2,
                   what="a hold admitted once the earlier version's entry lapsed")


@timeout(90)
def test_a_students_key_without_expiry_is_emptied_by_the_expiry_checks():
    # A listing written with the cap off (or by an earlier version) has no expiry, and keeps none when a capped
    # hold joins it: the expiry checks must take the cap's entry out too, or the key would stay for good.
    stu = uid("stu")
    key = f"slk:stu:{{{stu}}}:holds"
    with Server(env={"MAX_HOLDS_PER_STUDENT": "0"}, name="caps-off") as srv:
        srv.hold(srv.put_instructor(hold_seconds=2), *slot(7, 8), student=stu)
    eq(redis("PTTL", key), "-1", "a listing written with the cap off has no expiry")
    with Server(env={"MAX_HOLDS_PER_STUDENT": "2"}, name="caps-on") as srv:
        srv.hold(srv.put_instructor(hold_seconds=2), *slot(7, 9), student=stu)
        eq(live_count(stu), 1, "the capped hold counted in the same key")
        eq(listed_holds(stu), 2, "both listed")
        wait_until(lambda: redis("EXISTS", key) == "0", 45, interval=0.2,
                   what="the student's key emptied once both holds' expiry checks ran")


@timeout(60)
def test_default_cap_is_five():
    with DefaultCapsServer(name="caps-default") as srv:
        check("MAX_HOLDS_PER_STUDENT" not in srv.env(), "the test server must not set MAX_HOLDS_PER_STUDENT")
        ins = srv.put_instructor()
        stu = uid("stu")
        for i in range(5):
            srv.hold(ins, *slot(7, 8 + i), student=stu)
        expect_capped(srv.try_hold(ins, *slot(7, 14), student=stu), 5)


@timeout(60)
def test_no_cap_still_lists_every_hold_for_its_student():
    # With the cap off no cap script runs, and the student's listing is written on its own.
    with Server(env={"MAX_HOLDS_PER_STUDENT": "0"}, name="caps0") as srv:
        ins = srv.put_instructor()
        stu = uid("stu")
        holds = [srv.hold(ins, *slot(7, 8 + i), student=stu) for i in range(7)]
        eq(live_count(stu), 0, "no cap entries without a cap")
        eq(listed_holds(stu), 7, "holds listed for the student in Redis")
        with srv.client() as c:
            data = expect_ok(c.get(f"/api/v1/bookings?student_uuid={stu}&limit=50", token=srv.token(stu, "student")),
                             200)
        eq(sorted(b["uuid"] for b in data["items"]), sorted(h.uuid for h in holds), "the student's listing")


@timeout(90)
def test_concurrent_holds_admit_exactly_the_cap():
    with Server(env={"MAX_HOLDS_PER_STUDENT": "5"}, name="caps-race") as srv:
        ins = srv.put_instructor()
        stu = uid("stu")
        token = srv.token(stu, "student")
        slots = [slot(7, h) for h in range(20)]
        eq(len(slots), 20, "slots")
        clients = [srv.client() for _ in slots]
        for c in clients:
            c.connect()
        results = [None] * len(slots)
        gate = threading.Barrier(len(slots))

        def run(i):
            body = srv.booking_body(ins, slots[i][0], slots[i][1], student=stu)
            gate.wait(10)
            results[i] = clients[i].post("/api/v1/bookings", body, token=token)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(slots))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for c in clients:
            c.close()
        check(all(r is not None for r in results), "some hold requests did not finish")
        granted = [i for i, r in enumerate(results) if r.status == 201]
        refused = [i for i, r in enumerate(results) if r.status != 201]
        eq(len(granted), 5, f"holds granted out of 20 concurrent ones: {[str(r) for r in results]}")
        for i in refused:
            expect_capped(results[i], 5)
        eq(live_count(stu), 5, "live holds in Redis for the student")
        eq(listed_holds(stu), 5, "holds listed for the student in Redis")
        # The refused requests took no units: other students can hold each of those slots.
        for n, i in enumerate(refused):
            srv.hold(ins, *slots[i], student=f"{stu}-o{n // 5}")


@timeout(90)
def test_hold_refused_by_slow_redis_keeps_no_place():
    # The cap check timed out (503): if it ran late, once Redis answered
    # again, the student must still not have lost a place to it.
    redis_proc = RedisProc().start()
    try:
        env = {"MAX_HOLDS_PER_STUDENT": "1", "REDIS_TIMEOUT_MS": "300"}
        with Server(redis_url=redis_proc.url, env=env, name="caps-slow") as srv:
            ins = srv.put_instructor()
            stu = uid("stu")
            srv.token(stu, "student")
            redis_proc.pause()
            try:
                expect_error(srv.try_hold(ins, *slot(7, 8), student=stu), 503, "unavailable")
            finally:
                redis_proc.resume()

            wait_until(granted_once_not(503, lambda: srv.try_hold(ins, *slot(7, 9), student=stu)), 10, interval=0.2,
                       what="a hold once Redis is back")
            expect_capped(srv.try_hold(ins, *slot(7, 10), student=stu), 1)
            eq(redis_proc.command("ZCOUNT", f"slk:stu:{{{stu}}}:holds", "-inf", "(0"), "1", "live holds counted")
    finally:
        redis_proc.stop()


# --------------------------------------------------------------------------
# Rate limit per client


def get_status_burst(client, path, token, n):
    return [client.get(path, token=token) for _ in range(n)]


@timeout(60)
def test_rate_limit_token_bucket():
    with Server(env={"RATE_LIMIT_PER_SECOND": "5", "RATE_LIMIT_BURST": "5"}, name="rate") as srv:
        ins = srv.put_instructor()
        path = f"/api/v1/instructors/{ins}"
        sub, other = uid("stu"), uid("stu")
        tok, other_tok = srv.token(sub, "student"), srv.token(other, "student")
        with srv.client() as c:
            t0 = time.monotonic()
            rs = get_status_burst(c, path, tok, 20)
            elapsed = time.monotonic() - t0
            for r in rs[:5]:
                expect_ok(r, 200)
            passed = sum(1 for r in rs if r.status == 200)
            # A full bucket of 5, plus whatever refilled at 5/s while the burst ran.
            allowed = 5 + math.floor(elapsed * 5) + 1
            check(passed <= allowed, f"{passed} of 20 passed in {elapsed:.2f} s; at most {allowed} may")
            limited = [r for r in rs if r.status != 200]
            check(limited, "no request was limited")
            for r in limited:
                details = expect_error(r, 429, "rate_limited")
                ms = details.get("retry_after_ms")
                check(isinstance(ms, int) and 1 <= ms <= 200, f"retry_after_ms {ms!r} (one token takes 200 ms)")
                eq(r.header("retry-after"), "1", f"Retry-After of {r}")

            # Another client has its own bucket.
            expect_ok(c.get(path, token=other_tok), 200)
            # So does the same id under another role.
            expect_ok(c.get(path, token=srv.token(sub, "instructor")), 200)

            # Idle clients cost nothing: the bucket lives only until it would be full again.
            pttl = int(redis("PTTL", f"slk:rl:{{student:{sub}}}"))
            check(0 < pttl <= 1001, f"PTTL of the bucket {pttl} ms, expected at most the 1 s a full refill takes")

            # Tokens come back in proportion to the time passed (5/s: at least 2 within 0.45 s)...
            time.sleep(0.45)
            for r in get_status_burst(c, path, tok, 2):
                expect_ok(r, 200)
            # ... and after a full refill period a whole burst passes again.
            time.sleep(1.1)
            for r in get_status_burst(c, path, tok, 5):
                expect_ok(r, 200)
            wait_until(lambda: c.get(path, token=tok).status == 429, 5, interval=0,
                       what="limited again after a second burst")
            wait_until(lambda: c.get(path, token=tok).status == 200, 5, interval=0.05,
                       what="a token back within a bounded wait")


@timeout(60)
def test_rate_limit_charges_a_first_request_with_the_second():
    # A caller's first request through a worker costs Redis nothing; its token is charged with the second.
    with Server(env={"RATE_LIMIT_PER_SECOND": "1", "RATE_LIMIT_BURST": "10", "WORKERS": "1"}, name="rate-defer") as srv:
        ins = srv.put_instructor()
        path = f"/api/v1/instructors/{ins}"
        once, twice = uid("stu"), uid("stu")
        with srv.client() as c:
            expect_ok(c.get(path, token=srv.token(once, "student")), 200)
            for r in get_status_burst(c, path, srv.token(twice, "student"), 2):
                expect_ok(r, 200)
        wait_until(lambda: redis("EXISTS", f"slk:rl:{{student:{twice}}}") == "1", 5, interval=0.05,
                   what="the second request's charge")
        eq(redis("EXISTS", f"slk:rl:{{student:{once}}}"), "0", "a bucket for a caller seen once")
        # Both tokens of the second caller were charged: at 1/s the bucket is about 2 s ahead.
        pttl = int(redis("PTTL", f"slk:rl:{{student:{twice}}}"))
        check(1500 < pttl <= 2001, f"PTTL {pttl} ms: two tokens at 1/s")


@timeout(60)
def test_rate_limit_spares_probes_and_payment_callbacks():
    with Server(env={"RATE_LIMIT_PER_SECOND": "1", "RATE_LIMIT_BURST": "1"}, name="rate-spare") as srv:
        ins = srv.put_instructor()
        stu = uid("stu")
        h = srv.hold(ins, *slot(7, 8), student=stu)
        expect_error(srv.try_hold(ins, *slot(7, 9), student=stu), 429, "rate_limited")
        with srv.client() as c:
            for _ in range(30):
                eq(c.get("/livez").status, 200, "/livez under a 1/s limit")
            # The payment engine retries on its own schedule: never limited.
            statuses = [srv.callback(uid("nobooking"), "failed", client=c).status for _ in range(10)]
            check(429 not in statuses and len(set(statuses)) == 1, f"payment callbacks: {statuses}")
            expect_ok(srv.callback(h.uuid, "succeeded", client=c), 200)
            expect_ok(srv.callback(h.uuid, "succeeded", client=c), 200)


@timeout(90)
def test_rate_limit_decides_without_redis():
    # The limiter guards; it must not take down what works without Redis (instructor settings are read from
    # Postgres or the worker's cache). It decides on the worker's view of the bucket, so while Redis is away it
    # still lets the burst through, and still limits beyond it.
    redis_proc = RedisProc().start()
    try:
        env = {"RATE_LIMIT_PER_SECOND": "5", "RATE_LIMIT_BURST": "5", "REDIS_TIMEOUT_MS": "300"}
        with Server(redis_url=redis_proc.url, env=env, name="rate-open") as srv:
            ins = srv.put_instructor()
            tok = srv.token(uid("stu"), "student")
            path = f"/api/v1/instructors/{ins}"
            redis_proc.pause()
            try:
                with srv.client() as c:
                    for r in get_status_burst(c, path, tok, 5):
                        expect_ok(r, 200)
                    expect_error(c.get(path, token=tok), 429, "rate_limited")
                    time.sleep(0.25)
                    expect_ok(c.get(path, token=tok), 200)
            finally:
                redis_proc.resume()
    finally:
        redis_proc.stop()


@timeout(60)
def test_rate_limit_bucket_is_shared_by_processes():
    """Two servers, one Redis: the tokens one lets through are charged to the bucket both see. The second learns
    of them with its first charge and then limits the client as the first would."""
    a, b = server_pair("rate-shared", env={"RATE_LIMIT_PER_SECOND": "2", "RATE_LIMIT_BURST": "5"})
    with a, b:
        ins = a.put_instructor()
        sub = uid("stu")
        tok = a.token(sub, "student")
        path = f"/api/v1/instructors/{ins}"
        with a.client() as ca, b.client() as cb:
            for r in get_status_burst(ca, path, tok, 5):
                expect_ok(r, 200)
            expect_error(ca.get(path, token=tok), 429, "rate_limited")
            # b has not seen the client: its view starts full, and its first charge brings back the debt, so it
            # limits the client long before its own view of five tokens would run out.
            admitted = 0
            while True:
                r = cb.get(path, token=tok)
                if r.status == 429:
                    break
                expect_ok(r, 200)
                admitted += 1
                check(admitted < 5, "the other process let a whole bucket through: it never heard of the debt")
            # Redis holds the whole debt: at 2/s, the six tokens of a five-token bucket plus whatever b let through.
            debt_ms = int(redis("PTTL", f"slk:rl:{{student:{sub}}}"))
            check(debt_ms > 2500, f"bucket PTTL {debt_ms} ms: the tokens of both servers charged")


@timeout(60)
def test_rate_limit_zero_disables():
    with Server(env={"RATE_LIMIT_PER_SECOND": "0", "RATE_LIMIT_BURST": "1"}, name="rate-off") as srv:
        ins = srv.put_instructor()
        sub = uid("stu")
        tok = srv.token(sub, "student")
        with srv.client() as c:
            for r in get_status_burst(c, f"/api/v1/instructors/{ins}", tok, 30):
                expect_ok(r, 200)
        eq(redis("EXISTS", f"slk:rl:{{student:{sub}}}"), "0", "a bucket key with the limit disabled")
