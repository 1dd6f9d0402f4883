"""Naive timestamps are read in the instructor's time zone."""

import datetime as dt

from harness import eq, expect_ok, shared, utcnow


def _next_date(month, dayno):
    """The next (month, day) at least 3 days ahead."""
    today = utcnow().date()
    d = dt.date(today.year, month, dayno)
    if d < today + dt.timedelta(days=3):
        d = dt.date(today.year + 1, month, dayno)
    return d


def _berlin_hold(date, start_local, end_local):
    srv = shared()
    ins = srv.put_instructor(timezone="Europe/Berlin")
    return expect_ok(srv.try_hold(ins, f"{date}T{start_local}", f"{date}T{end_local}"), 201)


def test_naive_summer_time_berlin():
    d = _next_date(7, 15)  # CEST, UTC+2
    data = _berlin_hold(d, "10:00:00", "11:00:00")
    eq(data.get("start_time"), f"{d}T08:00:00Z", "start_time")
    eq(data.get("end_time"), f"{d}T09:00:00Z", "end_time")


def test_naive_winter_time_berlin():
    d = _next_date(1, 15)  # CET, UTC+1
    data = _berlin_hold(d, "10:00:00", "11:00:00")
    eq(data.get("start_time"), f"{d}T09:00:00Z", "start_time")
    eq(data.get("end_time"), f"{d}T10:00:00Z", "end_time")


def test_explicit_offset_wins_over_instructor_zone():
    d = _next_date(7, 15)
    data = _berlin_hold(d, "10:00:00+05:00", "11:00:00+05:00")
    eq(data.get("start_time"), f"{d}T05:00:00Z", "start_time")
    eq(data.get("end_time"), f"{d}T06:00:00Z", "end_time")


def test_naive_is_utc_for_utc_instructor():
    srv = shared()
    ins = srv.put_instructor()
    d = _next_date(7, 15)
    data = expect_ok(srv.try_hold(ins, f"{d}T10:00:00", f"{d}T11:00:00"), 201)
    eq(data.get("start_time"), f"{d}T10:00:00Z", "start_time")


def test_weekly_windows_are_local_time():
    # Window mon 09:00-10:00 Berlin = 07:00-08:00Z in summer: 07:00Z is
    # bookable, 09:00Z is not.
    srv = shared()
    ins = srv.put_instructor(timezone="Europe/Berlin", weekly=[{"day": "mon", "start": "09:00", "end": "10:00"}])
    d = _next_date(7, 15)
    while d.weekday() != 0:
        d += dt.timedelta(days=1)
    expect_ok(srv.try_hold(ins, f"{d}T07:00:00Z", f"{d}T08:00:00Z"), 201)
    r = srv.try_hold(ins, f"{d}T09:00:00Z", f"{d}T10:00:00Z")
    eq(r.status, 422, f"09:00Z is 11:00 Berlin, outside the window: {r}")
