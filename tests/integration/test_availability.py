"""GET /api/v1/instructors/{id}/availability (R-AVAIL): windows in local time
across DST changes, holds and bookings subtracted, include_held, ETag/304."""

import datetime as dt
import time
import zoneinfo

from harness import check, eq, expect_error, expect_ok, iso, shared, slot, timeout, uid, utcnow


def _avail(srv, ins, token=None, headers=None, **query):
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    with srv.client() as c:
        return c.get(f"/api/v1/instructors/{ins}/availability?{qs}", token=token or srv.admin(), headers=headers)


def _starts(resp):
    return [s["start_time"] for s in expect_ok(resp, 200)["slots"]]


def _date(days_ahead):
    return (utcnow().date() + dt.timedelta(days=days_ahead)).isoformat()


def _z(d, hour, minute=0):
    return iso(dt.datetime(d.year, d.month, d.day, hour, minute, tzinfo=dt.timezone.utc))


def _next_change_sunday(zone, spring):
    """The next Sunday on which `zone` springs forward (or falls back), at least 2 days ahead."""
    tz = zoneinfo.ZoneInfo(zone)
    d = utcnow().date() + dt.timedelta(days=2)
    for _ in range(800):
        if d.weekday() == 6:
            before = dt.datetime(d.year, d.month, d.day, 0, 0, tzinfo=tz).utcoffset()
            after = dt.datetime(d.year, d.month, d.day, 12, 0, tzinfo=tz).utcoffset()
            if (after > before) if spring else (after < before):
                return d
        d += dt.timedelta(days=1)
    raise AssertionError(f"no DST change found for {zone}")


def _week_around(d):
    return (d - dt.timedelta(days=3)).isoformat(), (d + dt.timedelta(days=3)).isoformat()


@timeout(60)
def test_free_slots_step_by_the_grid_inside_windows():
    srv = shared()
    ins = srv.put_instructor(weekly=[{"day": d, "start": "09:00", "end": "12:00"}
                                     for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")])
    date = _date(5)
    d = dt.date.fromisoformat(date)
    starts = _starts(_avail(srv, ins, **{"from": date, "to": date}))
    eq(starts, [_z(d, 9, m) for m in (0, 15, 30, 45)] + [_z(d, 10, m) for m in (0, 15, 30, 45)] + [_z(d, 11)],
       "60-minute slots of a 09:00-12:00 window on a 15-minute grid")
    starts = _starts(_avail(srv, ins, **{"from": date, "to": date, "duration_minutes": 180}))
    eq(starts, [_z(d, 9)], "the only 3-hour slot")
    r = _avail(srv, ins, **{"from": date, "to": date, "duration_minutes": 50})
    expect_error(r, 422, "validation_failed", field="duration_minutes")


@timeout(60)
def test_held_and_booked_slots_are_not_offered():
    srv = shared()
    ins = srv.put_instructor(buffer_minutes=15)
    date = _date(6)
    d = dt.date.fromisoformat(date)
    hold = srv.hold(ins, _z(d, 10), _z(d, 11))
    booked = srv.hold(ins, _z(d, 14), _z(d, 15))
    booked.confirm()
    starts = set(_starts(_avail(srv, ins, **{"from": date, "to": date})))
    # The same rule as holds: a slot's units with its own 15-minute buffer on each side must not meet the
    # hold's [09:45, 11:15) or the booking's [13:45, 15:15).
    check(_z(d, 8, 30) in starts, "08:30-09:30, buffered to 09:45: offered")
    for h, m in ((8, 45), (9, 0), (10, 0), (11, 0), (11, 15), (12, 45), (14, 0), (15, 15)):
        check(_z(d, h, m) not in starts, f"{h:02}:{m:02} meets a hold or booking (with buffers): not offered")
    check(_z(d, 11, 30) in starts, "11:30, buffered from 11:15: offered")
    check(_z(d, 12, 30) in starts, "12:30-13:30, buffered to 13:45: offered")
    check(_z(d, 15, 30) in starts, "15:30 after the booking's buffer: offered")

    slots = expect_ok(_avail(srv, ins, **{"from": date, "to": date, "include_held": "true"}), 200)["slots"]
    by_start = {s["start_time"]: s for s in slots}
    eq(by_start[_z(d, 10)]["state"], "held", "state of the held slot")
    eq(by_start[_z(d, 10)]["hold_expires_at"], hold.data["hold_expires_at"], "hold expiry listed exactly")
    eq(by_start[_z(d, 14)]["state"], "booked", "state of the booked slot")
    eq(by_start[_z(d, 12)]["state"], "free", "state of a free slot")


@timeout(60)
def test_expired_hold_is_offered_again_at_once():
    srv = shared()
    ins = srv.put_instructor(hold_seconds=2)
    date = _date(6)
    d = dt.date.fromisoformat(date)
    srv.hold(ins, _z(d, 10), _z(d, 11))
    check(_z(d, 10) not in _starts(_avail(srv, ins, **{"from": date, "to": date})), "held slot hidden")
    time.sleep(2.3)
    check(_z(d, 10) in _starts(_avail(srv, ins, **{"from": date, "to": date})), "expired hold's slot offered")


@timeout(60)
def test_a_lapsed_hold_is_offered_again_without_its_expiry_event():
    """Redis tells of an expired key only once it finds it, which with millions of keys can take minutes: a kept
    reply reads the units it shows held again every second (avail_cache.h), so the slot comes back even when no
    expiry event ever arrives."""
    from harness import redis_cli
    srv = shared()
    ins = srv.put_instructor(hold_seconds=2)
    date = _date(6)
    d = dt.date.fromisoformat(date)
    srv.hold(ins, _z(d, 10), _z(d, 11))
    path = f"/api/v1/instructors/{ins}/availability?from={date}&to={date}"
    redis_cli("CONFIG", "SET", "notify-keyspace-events", "")
    try:
        with srv.client() as c:  # one connection: the worker that kept the reply is the one asked again
            check(_z(d, 10) not in _starts(c.get(path, token=srv.admin())), "held slot hidden")
            check(_z(d, 10) not in _starts(c.get(path, token=srv.admin())), "held slot hidden (the kept reply)")
            time.sleep(2.3)
            check(_z(d, 10) in _starts(c.get(path, token=srv.admin())), "lapsed hold's slot offered")
    finally:
        redis_cli("CONFIG", "SET", "notify-keyspace-events", "KEx")


@timeout(60)
def test_etag_and_if_none_match():
    srv = shared()
    ins = srv.put_instructor()
    date = _date(8)
    d = dt.date.fromisoformat(date)
    first = _avail(srv, ins, **{"from": date, "to": date})
    expect_ok(first, 200)
    tag = first.header("etag")
    check(tag is not None and tag.startswith('"'), f"strong ETag expected, got {tag!r}")
    again = _avail(srv, ins, headers={"If-None-Match": tag}, **{"from": date, "to": date})
    eq(again.status, 304, "status with a current tag")
    eq(again.body, b"", "304 has no body")
    eq(again.header("etag"), tag, "304 repeats the tag")
    srv.hold(ins, _z(d, 10), _z(d, 11))
    changed = _avail(srv, ins, headers={"If-None-Match": tag}, **{"from": date, "to": date})
    eq(changed.status, 200, "status after a hold changed the answer")
    check(changed.header("etag") != tag, "a hold changes the ETag")


@timeout(60)
def test_range_limit_and_bad_parameters():
    srv = shared()
    ins = srv.put_instructor()
    ok = _avail(srv, ins, **{"from": _date(2), "to": _date(2 + 61)})  # 62 days, both inclusive
    expect_ok(ok, 200)
    expect_error(_avail(srv, ins, **{"from": _date(2), "to": _date(2 + 62)}), 422, "validation_failed", field="to")
    expect_error(_avail(srv, ins, **{"from": _date(5), "to": _date(4)}), 422, "validation_failed", field="to")
    expect_error(_avail(srv, ins, **{"from": "tomorrow"}), 422, "validation_failed", field="from")
    expect_error(_avail(srv, uid("nobody")), 404, "not_found")
    with srv.client() as c:
        expect_error(c.get(f"/api/v1/instructors/{ins}/availability"), 401, "unauthorized")


@timeout(60)
def test_past_slots_are_never_offered():
    srv = shared()
    ins = srv.put_instructor()
    starts = _starts(_avail(srv, ins, **{"from": _date(-1), "to": _date(1)}))
    now = iso(utcnow())
    check(starts and all(s > now for s in starts), "only future starts")


def _dst_case(zone, spring, weekly, grid, expected):
    duration = 60
    srv = shared()
    ins = srv.put_instructor(timezone=zone, granularity_minutes=grid, weekly=weekly)
    d = _next_change_sunday(zone, spring)
    lo, hi = _week_around(d)
    got = _starts(_avail(srv, ins, **{"from": lo, "to": hi, "duration_minutes": duration}))
    eq(got, expected(d), f"{zone} {'spring-forward' if spring else 'fall-back'} week around {d}")


SUNDAY_NIGHT = [{"day": "sun", "start": "01:00", "end": "04:00"}]


@timeout(60)
def test_dst_berlin_spring_forward_skips_the_missing_hour():
    # 01:00 CET = 00:00Z; 02:00-03:00 does not exist; 03:00 CEST = 01:00Z.
    _dst_case("Europe/Berlin", True, SUNDAY_NIGHT, 60, lambda d: [_z(d, 0), _z(d, 1)])


@timeout(60)
def test_dst_berlin_fall_back_offers_the_repeated_hour_twice():
    # 01:00 CEST = 23:00Z the day before; 02:00 CEST = 00:00Z; 02:00 CET = 01:00Z; 03:00 CET = 02:00Z.
    _dst_case("Europe/Berlin", False, SUNDAY_NIGHT, 60,
              lambda d: [_z(d - dt.timedelta(days=1), 23), _z(d, 0), _z(d, 1), _z(d, 2)])


@timeout(60)
def test_dst_berlin_working_day_is_eight_hours_on_change_day():
    def expected(d):
        return [_z(d, 7 + h) for h in range(8)]  # 09:00-17:00 CEST = 07:00Z-15:00Z, hourly slots

    srv = shared()
    ins = srv.put_instructor(timezone="Europe/Berlin", granularity_minutes=60,
                             weekly=[{"day": "sun", "start": "09:00", "end": "17:00"}])
    d = _next_change_sunday("Europe/Berlin", True)
    eq(_starts(_avail(srv, ins, **{"from": d.isoformat(), "to": d.isoformat(), "duration_minutes": 60})),
       expected(d), "a 09:00-17:00 window on the spring-forward day")


@timeout(60)
def test_dst_new_york_spring_forward():
    # Grid 30: 01:00 EST = 06:00Z, 01:30 EST = 06:30Z, 03:00 EDT = 07:00Z; 03:30 EDT + 60 > 04:00.
    _dst_case("America/New_York", True, SUNDAY_NIGHT, 30, lambda d: [_z(d, 6), _z(d, 6, 30), _z(d, 7)])


@timeout(60)
def test_dst_new_york_fall_back():
    # 01:00 EDT = 05:00Z, 01:00 EST = 06:00Z, 02:00 EST = 07:00Z; 03:00 EST is past the 03:00 window end.
    _dst_case("America/New_York", False, [{"day": "sun", "start": "01:00", "end": "03:00"}], 60,
              lambda d: [_z(d, 5), _z(d, 6), _z(d, 7)])


@timeout(60)
def test_kept_replies_never_outlive_a_change_in_this_process():
    """Replies are kept for a moment (avail_cache.h); a hold, a cancel or a block taken through any worker of
    the process must show in the very next reply of every worker."""
    from harness import Server
    with Server(env={"WORKERS": "2"}, name="avail-cache") as srv:
        ins = srv.put_instructor()
        date = _date(6)
        d = dt.date.fromisoformat(date)
        query = {"from": date, "to": date}

        def every_worker_sees(present, what):
            # Fresh connections spread over both workers (SO_REUSEPORT); each asks twice so a kept reply is used.
            for _ in range(12):
                for _ in range(2):
                    eq(_z(d, 10) in _starts(_avail(srv, ins, **query)), present, what)

        every_worker_sees(True, "free before the hold")
        h = srv.hold(ins, _z(d, 10), _z(d, 11))
        every_worker_sees(False, "held right after the hold's reply")
        expect_ok(srv.action(h.uuid, "cancel", h.student_token), 200)
        every_worker_sees(True, "free right after the cancel")
        with srv.client() as c:
            expect_ok(c.post(f"/api/v1/instructors/{ins}/availability/block",
                             {"blocks": [{"start_time": _z(d, 10), "end_time": _z(d, 11)}]}, token=srv.admin()), 201)
        every_worker_sees(False, "blocked right after the block's reply")


@timeout(60)
def test_kept_replies_follow_changes_announced_by_another_process():
    """A change made through another process reaches a kept reply on the events channel, which names the
    booking's own range: the buffer around it must be read again too (avail_cache.h). Asked well within the
    second after which a kept reply is read afresh anyway."""
    from harness import server_pair, wait_until
    a, b = server_pair("avail")
    with a, b:
        ins = a.put_instructor(buffer_minutes=30)
        date = _date(6)
        d = dt.date.fromisoformat(date)
        every = [_z(d, h, m) for h in range(24) for m in (0, 15, 30, 45)]
        # A 60-minute slot needs [start - 30, start + 90) free: a hold of 10:00-11:00 (units 09:30-11:15 with
        # its buffer) hides the starts 08:15 .. 11:45.
        hidden = {_z(d, h, m) for h in range(8, 12) for m in (0, 15, 30, 45)} - {_z(d, 8, 0)}
        with a.client() as c:
            def starts():
                return _starts(c.get(f"/api/v1/instructors/{ins}/availability?from={date}&to={date}",
                                     token=a.admin()))

            eq(starts(), every, "every start free before the hold")
            eq(starts(), every, "the kept reply")
            t0 = time.monotonic()
            h = b.hold(ins, _z(d, 10), _z(d, 11))
            wait_until(lambda: starts() != every, 0.5, interval=0.02, what="the hold seen by the other process")
            eq(starts(), [s for s in every if s not in hidden], "the hold and its buffer hidden, nothing else")
            check(time.monotonic() - t0 < 0.9, "seen while the first reply was still kept")

            eq(starts(), [s for s in every if s not in hidden], "kept again")
            t0 = time.monotonic()
            expect_ok(b.action(h.uuid, "cancel", h.student_token), 200)
            wait_until(lambda: starts() == every, 0.5, interval=0.02, what="the cancel seen by the other process")
            check(time.monotonic() - t0 < 0.9, "seen while the reply was still kept")


@timeout(60)
def test_a_block_made_through_another_process_reaches_its_kept_replies():
    """A kept reply reads everything again only every 10 s (avail_cache.h): a block made through another process
    is announced on the events channel, so the kept reply there hides the blocked time at once."""
    from harness import server_pair, wait_until
    a, b = server_pair("avail-block")
    with a, b:
        ins = a.put_instructor()
        date = _date(6)
        d = dt.date.fromisoformat(date)
        every = [_z(d, h, m) for h in range(24) for m in (0, 15, 30, 45)]
        # A block of 10:00-11:00 hides the 60-minute slots starting 09:15 .. 10:45.
        hidden = {_z(d, h, m) for h in (9, 10) for m in (0, 15, 30, 45)} - {_z(d, 9)}
        with a.client() as c:
            def starts():
                return _starts(c.get(f"/api/v1/instructors/{ins}/availability?from={date}&to={date}",
                                     token=a.admin()))

            eq(starts(), every, "every start free before the block")
            eq(starts(), every, "the kept reply")
            t0 = time.monotonic()
            with b.client() as cb:
                expect_ok(cb.post(f"/api/v1/instructors/{ins}/availability/block",
                                  {"blocks": [{"start_time": _z(d, 10), "end_time": _z(d, 11)}]}, token=b.admin()), 201)
            wait_until(lambda: starts() != every, 3, interval=0.02, what="the block seen by the other process")
            eq(starts(), [s for s in every if s not in hidden], "the blocked hour hidden, nothing else")
            check(time.monotonic() - t0 < 3, "seen long before the 10 s full read")


@timeout(60)
def test_settings_changed_elsewhere_give_the_new_default_duration():
    """Another process changes the grid: this one learns it from Redis while answering a question it has no
    kept reply for, and plans again with the new instructor's default duration (4 units), not the one it had
    worked out for the old grid."""
    from harness import server_pair
    a, b = server_pair("avail-grid")
    with a, b:
        ins = a.put_instructor()
        date = _date(6)
        d = dt.date.fromisoformat(date)
        eq(expect_ok(_avail(a, ins, **{"from": date, "to": date}), 200)["duration_minutes"], 60, "default on 15")
        b.put_instructor(ins, granularity_minutes=20)
        data = expect_ok(_avail(a, ins, **{"from": date, "to": _date(7)}), 200)
        eq(data["duration_minutes"], 80, "the new grid's default, 4 units of 20 minutes")
        check(_z(d, 0, 20) in [s["start_time"] for s in data["slots"]], "starts step by the new grid")
