"""401, 403 and the 404-for-ownership rule (R-SEC), webhook signatures."""

import json
import time

from harness import check, craft_jwt, eq, expect_error, expect_ok, pg_booking, shared, sign_body, slot, uid


def _hold_and_body(srv):
    ins = srv.put_instructor()
    start, end = slot(7, 10)
    return ins, srv.booking_body(ins, start, end)


# -- JWT


def test_cli_token_accepted():
    srv = shared()
    with srv.client() as c:
        expect_ok(c.get(f"/api/v1/instructors/{srv.put_instructor()}", token=srv.token(uid("stu"), "student")), 200)


def test_python_minted_token_accepted():
    # The race tests mint tokens in Python; this pins that they are valid.
    srv = shared()
    ins = srv.put_instructor()
    with srv.client() as c:
        expect_ok(c.get(f"/api/v1/instructors/{ins}", token=srv.py_token(uid("stu"), "student")), 200)


def test_no_token_is_401():
    srv = shared()
    _, body = _hold_and_body(srv)
    with srv.client() as c:
        expect_error(c.post("/api/v1/bookings", body), 401, "unauthorized")


def test_garbage_token_is_401():
    srv = shared()
    _, body = _hold_and_body(srv)
    with srv.client() as c:
        expect_error(c.post("/api/v1/bookings", body, token="not.a.jwt"), 401, "unauthorized")
        expect_error(c.post("/api/v1/bookings", body, headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401,
                     "unauthorized")


def test_alg_none_token_is_401():
    srv = shared()
    _, body = _hold_and_body(srv)
    now = int(time.time())
    tok = craft_jwt({"sub": body["student_uuid"], "role": "student", "iat": now, "exp": now + 600}, srv.jwt_secret,
                    header={"alg": "none", "typ": "JWT"}, sign=False)
    with srv.client() as c:
        expect_error(c.post("/api/v1/bookings", body, token=tok), 401, "unauthorized")


def test_alg_none_with_signature_is_401():
    # alg must be pinned to HS256 even when the MAC happens to be right.
    srv = shared()
    _, body = _hold_and_body(srv)
    now = int(time.time())
    tok = craft_jwt({"sub": body["student_uuid"], "role": "student", "iat": now, "exp": now + 600}, srv.jwt_secret,
                    header={"alg": "none", "typ": "JWT"})
    with srv.client() as c:
        expect_error(c.post("/api/v1/bookings", body, token=tok), 401, "unauthorized")


def test_expired_token_is_401():
    srv = shared()
    _, body = _hold_and_body(srv)
    now = int(time.time())
    tok = craft_jwt({"sub": body["student_uuid"], "role": "student", "iat": now - 7200, "exp": now - 60},
                    srv.jwt_secret)
    with srv.client() as c:
        expect_error(c.post("/api/v1/bookings", body, token=tok), 401, "unauthorized")


def test_wrong_secret_token_is_401():
    srv = shared()
    _, body = _hold_and_body(srv)
    tok = srv.py_token(body["student_uuid"], "student", secret="0123456789abcdef0123456789abcdef")
    with srv.client() as c:
        expect_error(c.post("/api/v1/bookings", body, token=tok), 401, "unauthorized")


def test_unknown_role_token_is_401():
    srv = shared()
    _, body = _hold_and_body(srv)
    tok = srv.py_token(body["student_uuid"], "superuser")
    with srv.client() as c:
        r = c.post("/api/v1/bookings", body, token=tok)
    check(r.status in (401, 403), f"a token with an unknown role must be refused: {r}")


def test_get_booking_needs_token():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    with srv.client() as c:
        expect_error(c.get(f"/api/v1/bookings/{h.uuid}"), 401, "unauthorized")


# -- webhook signature


def test_callback_without_signature_is_401():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    expect_error(srv.callback(h.uuid, "succeeded", signature=False), 401, "bad_signature")
    eq(h.get().get("status"), "payment_required", "status unchanged")


def test_callback_wrong_secret_is_401():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    expect_error(srv.callback(h.uuid, "succeeded", secret="not-the-webhook-secret-0123456789"), 401,
                 "bad_signature")
    eq(h.get().get("status"), "payment_required", "status unchanged")
    check(pg_booking(h.uuid) is None, "a badly signed callback created a PG row")


def test_callback_signature_of_other_body_is_401():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    signed = json.dumps({"payment_reference": "pi_x", "payment_status": "failed", "payment_engine": "stripe"})
    sent = json.dumps({"payment_reference": "pi_x", "payment_status": "succeeded", "payment_engine": "stripe"})
    expect_error(srv.callback(h.uuid, body=sent, signature=sign_body(srv.webhook_secret, signed)), 401,
                 "bad_signature")
    eq(h.get().get("status"), "payment_required", "status unchanged")


def test_callback_stale_timestamp_is_401():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    expect_error(srv.callback(h.uuid, "succeeded", t=int(time.time()) - 301), 401, "bad_signature")
    eq(h.get().get("status"), "payment_required", "status unchanged")


def test_callback_future_timestamp_is_401():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    expect_error(srv.callback(h.uuid, "succeeded", t=int(time.time()) + 301), 401, "bad_signature")
    eq(h.get().get("status"), "payment_required", "status unchanged")


def test_callback_slightly_old_timestamp_accepted():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    eq(expect_ok(srv.callback(h.uuid, "succeeded", t=int(time.time()) - 250), 200).get("status"), "confirmed",
       "status with t 250 s old")


def test_callback_malformed_signature_is_401():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    for sig in ("garbage", "t=abc,v1=00", f"t={int(time.time())}", f"t={int(time.time())},v1=zz"):
        expect_error(srv.callback(h.uuid, "succeeded", signature=sig), 401, "bad_signature")
    eq(h.get().get("status"), "payment_required", "status unchanged")


# -- 403


def test_student_creating_for_another_student_is_403():
    srv = shared()
    _, body = _hold_and_body(srv)
    with srv.client() as c:
        expect_error(c.post("/api/v1/bookings", body, token=srv.token(uid("stu"), "student")), 403, "forbidden")


def test_instructor_creating_booking_is_403():
    srv = shared()
    ins, body = _hold_and_body(srv)
    with srv.client() as c:
        expect_error(c.post("/api/v1/bookings", body, token=srv.token(ins, "instructor")), 403, "forbidden")


def test_admin_may_create_for_a_student():
    srv = shared()
    _, body = _hold_and_body(srv)
    with srv.client() as c:
        data = expect_ok(c.post("/api/v1/bookings", body, token=srv.admin()), 201)
    eq(data.get("status"), "payment_required", "status")


def test_student_put_instructor_is_403():
    srv = shared()
    sid = uid("stu")
    with srv.client() as c:
        expect_error(c.put(f"/api/v1/instructors/{sid}", {"timezone": "UTC"}, token=srv.token(sid, "student")),
                     403, "forbidden")


def test_instructor_put_other_instructor_is_403():
    srv = shared()
    with srv.client() as c:
        expect_error(c.put(f"/api/v1/instructors/{uid('ins')}", {"timezone": "UTC"},
                           token=srv.token(uid("ins"), "instructor")), 403, "forbidden")


def test_instructor_put_self_is_allowed():
    srv = shared()
    iid = uid("ins")
    with srv.client() as c:
        data = expect_ok(c.put(f"/api/v1/instructors/{iid}", {"timezone": "UTC"}, token=srv.token(iid, "instructor")),
                         201)
    eq(data.get("id"), iid, "id")


def test_student_accept_is_403():
    srv = shared()
    h = srv.hold(srv.put_instructor(requires_acceptance=True), *slot(7, 10))
    h.confirm()
    expect_error(srv.action(h.uuid, "accept", h.student_token), 403, "forbidden")
    expect_error(srv.action(h.uuid, "reject", h.student_token), 403, "forbidden")
    eq(h.get().get("status"), "paid", "status unchanged")


# -- ownership: 404 where existence would leak


def test_other_student_get_is_404():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    expect_error(srv.get_booking(h.uuid, token=srv.token(uid("stu"), "student")), 404, "not_found")


def test_other_instructor_get_is_404():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    expect_error(srv.get_booking(h.uuid, token=srv.token(uid("ins"), "instructor")), 404, "not_found")


def test_owners_and_admin_may_get():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    for tok in (h.student_token, h.instructor_token, srv.admin()):
        eq(expect_ok(srv.get_booking(h.uuid, token=tok), 200).get("uuid"), h.uuid, "uuid")


def test_other_student_cannot_cancel():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    r = srv.action(h.uuid, "cancel", srv.token(uid("stu"), "student"))
    check(r.status in (403, 404), f"another student's cancel must be 403/404: {r}")
    eq(h.get().get("status"), "payment_required", "status unchanged")


def test_other_instructor_cannot_accept():
    srv = shared()
    h = srv.hold(srv.put_instructor(requires_acceptance=True), *slot(7, 10))
    h.confirm()
    r = srv.action(h.uuid, "accept", srv.token(uid("ins"), "instructor"))
    check(r.status in (403, 404), f"another instructor's accept must be 403/404: {r}")
    eq(h.get().get("status"), "paid", "status unchanged")
