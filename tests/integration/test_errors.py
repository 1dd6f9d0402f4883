"""400, 404, 405, 409, 413, 422 and 431 replies of the booking API."""

import datetime as dt
import json
import uuid

from harness import (check, eq, expect_error, expect_ok, iso, next_weekday, parse_ts, pg_booking, shared, slot,
                     uid)


def _post(srv, body, token=None):
    with srv.client() as c:
        return c.post("/api/v1/bookings", body, token=token or srv.admin())


def _body(srv, ins=None, **over):
    ins = ins or srv.put_instructor()
    start, end = slot(7, 10)
    b = srv.booking_body(ins, start, end)
    b.update(over)
    return b


# -- 400


def test_malformed_json_is_400():
    srv = shared()
    expect_error(_post(srv, "{", token=srv.token(uid("stu"), "student")), 400, "malformed_json")


def test_non_object_json_is_rejected():
    srv = shared()
    r = _post(srv, "[1,2,3]")
    check(r.status in (400, 422), f"a JSON array body must be refused with 400/422: {r}")
    expect_error(r, r.status)


def test_callback_malformed_json_is_400():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    expect_error(srv.callback(h.uuid, body="{"), 400, "malformed_json")
    eq(h.get().get("status"), "payment_required", "status unchanged")


# -- 404


def test_unknown_booking_is_404():
    srv = shared()
    expect_error(srv.get_booking(str(uuid.uuid4())), 404, "not_found")


def test_malformed_booking_uuid_is_404():
    srv = shared()
    for bad in ("not-a-uuid", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"):
        expect_error(srv.get_booking(bad), 404, "not_found")


def test_unknown_route_is_404():
    srv = shared()
    with srv.client() as c:
        expect_error(c.get("/api/v1/nope", token=srv.admin()), 404, "not_found")
        expect_error(c.get("/nope"), 404, "not_found")


def test_unknown_instructor_on_create_is_404():
    srv = shared()
    expect_error(_post(srv, _body(srv, ins=uid("ghost"))), 404, "not_found")


def test_unknown_instructor_get_is_404():
    srv = shared()
    with srv.client() as c:
        expect_error(c.get(f"/api/v1/instructors/{uid('ghost')}", token=srv.admin()), 404, "not_found")


def test_callback_unknown_booking_is_404():
    srv = shared()
    expect_error(srv.callback(str(uuid.uuid4()), "succeeded"), 404, "not_found")


def test_action_on_unknown_booking_is_404():
    srv = shared()
    expect_error(srv.action(str(uuid.uuid4()), "cancel", srv.admin()), 404, "not_found")


# -- 405


def test_wrong_method_is_405_with_allow():
    srv = shared()
    with srv.client() as c:
        r = c.request("DELETE", "/api/v1/bookings", token=srv.admin())
    expect_error(r, 405, "method_not_allowed")
    allow = r.header("allow")
    check(allow is not None and "POST" in [m.strip() for m in allow.split(",")], f"Allow header {allow!r}: {r}")


def test_wrong_method_on_cancel_is_405():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    with srv.client() as c:
        r = c.get(f"/api/v1/bookings/{h.uuid}/cancel", token=srv.admin())
    expect_error(r, 405, "method_not_allowed")
    check("POST" in (r.header("allow") or ""), f"Allow header: {r}")


# -- 409


def test_overlap_is_409_with_taken_range():
    srv = shared()
    ins = srv.put_instructor()
    s1, e1 = slot(7, 10)
    srv.hold(ins, s1, e1)
    s2, e2 = slot(7, 10, 30)
    details = expect_error(srv.try_hold(ins, s2, e2), 409, "slot_unavailable")
    ts, te = parse_ts(details.get("start_time"), "details.start_time"), parse_ts(details.get("end_time"),
                                                                                 "details.end_time")
    # The reported range is taken: inside the held one and overlapping the request.
    check(parse_ts(s1) <= ts < te <= parse_ts(e1), f"details range {ts}..{te} not inside the held {s1}..{e1}")
    check(ts < parse_ts(e2) and te > parse_ts(s2), f"details range {ts}..{te} does not overlap {s2}..{e2}")


def test_adjacent_without_buffer_is_allowed():
    srv = shared()
    ins = srv.put_instructor()
    srv.hold(ins, *slot(7, 10))
    srv.hold(ins, *slot(7, 11))
    srv.hold(ins, *slot(7, 9))


def test_buffer_overlap_is_409():
    srv = shared()
    ins = srv.put_instructor(buffer_minutes=15)
    srv.hold(ins, *slot(7, 10))  # covers 09:45-11:15
    expect_error(srv.try_hold(ins, *slot(7, 11)), 409, "slot_unavailable")  # 10:45-12:15
    expect_error(srv.try_hold(ins, *slot(7, 11, 15)), 409, "slot_unavailable")  # 11:00-12:30
    srv.hold(ins, *slot(7, 11, 30))  # 11:15-12:45: buffers touch, no overlap
    expect_error(srv.try_hold(ins, *slot(7, 8, 45)), 409, "slot_unavailable")  # 08:30-10:00
    srv.hold(ins, *slot(7, 8, 30))  # 08:15-09:45


# -- 413 and 431 (raw sockets: the server may answer before reading it all)


def test_body_too_large_is_413():
    srv = shared()
    body = json.dumps({"purpose": "x" * (70 * 1024)}).encode()
    head = (f"POST /api/v1/bookings HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {srv.admin()}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with srv.raw() as rc:
        rc.send_until_reply(head + body)
        r = rc.read_response("POST", "/api/v1/bookings (70 KiB)")
    expect_error(r, 413, "payload_too_large")
    with srv.client() as c:
        eq(c.get("/livez").status, 200, "/livez after a 413")


def test_header_too_large_is_431():
    srv = shared()
    req = (f"GET /livez HTTP/1.1\r\nHost: t\r\nX-Big: {'a' * (10 * 1024)}\r\n\r\n").encode()
    with srv.raw() as rc:
        rc.send_until_reply(req)
        r = rc.read_response("GET", "/livez (10 KiB header)")
    eq(r.status, 431, f"status of {r}")
    with srv.client() as c:
        eq(c.get("/livez").status, 200, "/livez after a 431")


# -- 422 validation_failed with details.field


def test_missing_fields_are_422():
    srv = shared()
    ins = srv.put_instructor()
    for field in ("student_uuid", "course_uuid", "instructor_uuid", "start_time", "end_time"):
        body = _body(srv, ins)
        del body[field]
        expect_error(_post(srv, body), 422, "validation_failed", field)


def test_bad_id_format_is_422():
    srv = shared()
    ins = srv.put_instructor()
    expect_error(_post(srv, _body(srv, ins, course_uuid="has space")), 422, "validation_failed", "course_uuid")
    expect_error(_post(srv, _body(srv, ins, student_uuid="x" * 65)), 422, "validation_failed", "student_uuid")


def test_end_not_after_start_is_422():
    srv = shared()
    ins = srv.put_instructor()
    start, _ = slot(7, 10)
    expect_error(_post(srv, _body(srv, ins, start_time=start, end_time=start)), 422, "validation_failed", "end_time")
    expect_error(_post(srv, _body(srv, ins, start_time=start, end_time=slot(7, 9)[0])), 422, "validation_failed",
                 "end_time")


def test_off_grid_is_422():
    srv = shared()
    ins = srv.put_instructor()
    s, e = slot(7, 10, 7)
    expect_error(_post(srv, _body(srv, ins, start_time=s, end_time=slot(7, 11)[0])), 422, "validation_failed",
                 "start_time")
    expect_error(_post(srv, _body(srv, ins, start_time=slot(7, 10)[0], end_time=e)), 422, "validation_failed",
                 "end_time")


def test_past_start_is_422():
    srv = shared()
    ins = srv.put_instructor()
    s, e = slot(-2, 10)
    expect_error(_post(srv, _body(srv, ins, start_time=s, end_time=e)), 422, "validation_failed", "start_time")


def test_longer_than_a_day_is_422():
    srv = shared()
    ins = srv.put_instructor()
    s, e = slot(7, 10, 0, 25 * 60)
    expect_error(_post(srv, _body(srv, ins, start_time=s, end_time=e)), 422, "validation_failed", "end_time")


def test_outside_weekly_windows_is_422():
    srv = shared()
    ins = srv.put_instructor(weekly=[{"day": "mon", "start": "09:00", "end": "17:00"}])
    tue = next_weekday(1)
    s, e = iso(tue + dt.timedelta(hours=10)), iso(tue + dt.timedelta(hours=11))
    expect_error(_post(srv, _body(srv, ins, start_time=s, end_time=e)), 422, "validation_failed", "start_time")
    mon = next_weekday(0)
    # Crossing the end of the window.
    s, e = iso(mon + dt.timedelta(hours=16, minutes=30)), iso(mon + dt.timedelta(hours=17, minutes=30))
    r = _post(srv, _body(srv, ins, start_time=s, end_time=e))
    check(r.status == 422, f"a booking crossing the window end must be 422: {r}")
    # Inside the window: allowed (the instructor is bookable at all).
    s, e = iso(mon + dt.timedelta(hours=10)), iso(mon + dt.timedelta(hours=11))
    expect_ok(_post(srv, _body(srv, ins, start_time=s, end_time=e)), 201)


def test_empty_weekly_is_not_bookable():
    srv = shared()
    ins = srv.put_instructor(weekly=[])
    expect_error(_post(srv, _body(srv, ins)), 422, "validation_failed", "start_time")


def test_price_with_three_decimals_is_422():
    srv = shared()
    expect_error(_post(srv, '{"student_uuid":"s-1","course_uuid":"c-1","instructor_uuid":"%s",'
                            '"start_time":"%s","end_time":"%s","price_amount":50.123,"currency":"USD"}'
                       % ((srv.put_instructor(),) + slot(7, 10))), 422, "validation_failed", "price_amount")


def test_negative_price_is_422():
    srv = shared()
    expect_error(_post(srv, _body(srv, price_amount=-1, currency="USD")), 422, "validation_failed", "price_amount")


def test_lowercase_currency_is_422():
    srv = shared()
    expect_error(_post(srv, _body(srv, price_amount=50, currency="usd")), 422, "validation_failed", "currency")


def test_refused_requests_leave_no_hold():
    # Nothing refused with 422 may leave units held behind.
    srv = shared()
    ins = srv.put_instructor()
    s, e = slot(7, 10)
    expect_error(_post(srv, _body(srv, ins, start_time=s, end_time=e, currency="usd")), 422, "validation_failed")
    expect_error(_post(srv, _body(srv, ins, start_time=s, end_time=e, price_amount=1.001)), 422, "validation_failed")
    srv.hold(ins, s, e)


def test_callback_amount_mismatch_is_422():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10), price_amount=50.00, currency="USD")
    expect_error(srv.callback(h.uuid, "succeeded", amount=49.99, currency="USD"), 422, "validation_failed", "amount")
    eq(h.get().get("status"), "payment_required", "status unchanged")
    check(pg_booking(h.uuid) is None, "a refused callback created a PG row")


def test_callback_currency_mismatch_is_422():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10), price_amount=50.00, currency="USD")
    expect_error(srv.callback(h.uuid, "succeeded", amount=50, currency="EUR"), 422, "validation_failed", "currency")
    eq(h.get().get("status"), "payment_required", "status unchanged")


def test_callback_equal_amount_confirms():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10), price_amount=50.00, currency="USD")
    eq(expect_ok(srv.callback(h.uuid, "succeeded", amount=50, currency="USD"), 200).get("status"), "confirmed",
       "status with amount 50 for price 50.00")


def test_callback_bad_payment_status_is_422():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    expect_error(srv.callback(h.uuid, "pending"), 422, "validation_failed")
    body = json.dumps({"payment_status": "succeeded", "payment_engine": "stripe"})
    expect_error(srv.callback(h.uuid, body=body), 422, "validation_failed")
    eq(h.get().get("status"), "payment_required", "status unchanged")
