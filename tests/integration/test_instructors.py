"""PUT/GET /api/v1/instructors/{id}: create, replace, validation."""

from harness import all_week, check, eq, expect_error, expect_ok, parse_ts, shared, slot, timeout, uid

WEEKLY = [{"day": "mon", "start": "09:00", "end": "17:00"}, {"day": "sat", "start": "10:00", "end": "24:00"}]


def _put(srv, iid, body):
    with srv.client() as c:
        return c.put(f"/api/v1/instructors/{iid}", body, token=srv.admin())


def test_create_then_replace():
    srv = shared()
    iid = uid("ins")
    body = {"timezone": "Europe/Berlin", "granularity_minutes": 30, "hold_seconds": 600, "buffer_minutes": 30,
            "requires_acceptance": True, "weekly": WEEKLY}
    data = expect_ok(_put(srv, iid, body), 201)
    for k, v in body.items():
        eq(data.get(k), v, f"created {k}")
    eq(data.get("id"), iid, "id")
    parse_ts(data.get("updated_at"), "updated_at")
    data = expect_ok(_put(srv, iid, {"timezone": "UTC"}), 200)
    eq(data.get("timezone"), "UTC", "replaced timezone")
    eq(data.get("requires_acceptance"), False, "replaced settings fall back to defaults")
    eq(data.get("weekly"), [], "replaced weekly")


def test_defaults():
    srv = shared()
    iid = uid("ins")
    data = expect_ok(_put(srv, iid, {}), 201)
    eq(data.get("timezone"), "UTC", "timezone")
    eq(data.get("granularity_minutes"), 15, "granularity_minutes")
    eq(data.get("buffer_minutes"), 0, "buffer_minutes")
    eq(data.get("requires_acceptance"), False, "requires_acceptance")
    eq(data.get("weekly"), [], "weekly")
    check(isinstance(data.get("hold_seconds"), int) and data["hold_seconds"] > 0, f"hold_seconds: {data}")


def test_get_returns_settings():
    srv = shared()
    iid = uid("ins")
    expect_ok(_put(srv, iid, {"timezone": "America/New_York", "weekly": WEEKLY}), 201)
    with srv.client() as c:
        data = expect_ok(c.get(f"/api/v1/instructors/{iid}", token=srv.token(uid("stu"), "student")), 200)
    eq(data.get("id"), iid, "id")
    eq(data.get("timezone"), "America/New_York", "timezone")
    eq(data.get("weekly"), WEEKLY, "weekly")


def test_validation_fields():
    srv = shared()
    cases = [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"granularity_minutes": 7}, "granularity_minutes"),
        ({"granularity_minutes": 0}, "granularity_minutes"),
        ({"hold_seconds": 0}, "hold_seconds"),
        ({"hold_seconds": 86401}, "hold_seconds"),
        ({"buffer_minutes": 10}, "buffer_minutes"),  # not a multiple of 15
        ({"buffer_minutes": -15}, "buffer_minutes"),
        ({"requires_acceptance": "yes"}, "requires_acceptance"),
        ({"weekly": [{"day": "xyz", "start": "09:00", "end": "17:00"}]}, "weekly"),
        ({"weekly": [{"day": "mon", "start": "17:00", "end": "09:00"}]}, "weekly"),
        ({"weekly": [{"day": "mon", "start": "09:07", "end": "17:00"}]}, "weekly"),
        ({"weekly": [{"day": "mon", "start": "09:00", "end": "25:00"}]}, "weekly"),
        ({"weekly": "mon"}, "weekly"),
    ]
    for body, field in cases:
        expect_error(_put(srv, uid("ins"), body), 422, "validation_failed", field)


def test_invalid_id_is_refused():
    srv = shared()
    r = _put(srv, "bad%20id", {})
    check(r.status in (404, 422), f"an invalid instructor id must be refused: {r}")
    r = _put(srv, "x" * 65, {})
    check(r.status in (404, 422), f"a 65-char instructor id must be refused: {r}")


def test_malformed_json_is_400():
    srv = shared()
    expect_error(_put(srv, uid("ins"), "{"), 400, "malformed_json")


def test_validation_failure_creates_nothing():
    srv = shared()
    iid = uid("ins")
    expect_error(_put(srv, iid, {"timezone": "Mars/Olympus"}), 422, "validation_failed")
    with srv.client() as c:
        expect_error(c.get(f"/api/v1/instructors/{iid}", token=srv.admin()), 404, "not_found")


@timeout(60)
def test_grid_and_zone_are_fixed_while_future_bookings_exist():
    # Units are keyed on the instructor's local grid: a new grid or zone would let new holds
    # miss the units of existing bookings, so such a change is refused until none remain.
    srv = shared()
    ins = srv.put_instructor(granularity_minutes=15)
    h = srv.hold(ins, *slot(9, 10))
    h.confirm()
    with srv.client() as c:
        r = c.put(f"/api/v1/instructors/{ins}", {"timezone": "UTC", "granularity_minutes": 30, "weekly": all_week()},
                  token=srv.admin())
        eq(expect_error(r, 409, "settings_in_use").get("field"), "granularity_minutes", "refused field")
        r = c.put(f"/api/v1/instructors/{ins}", {"timezone": "Asia/Kolkata", "weekly": all_week()}, token=srv.admin())
        eq(expect_error(r, 409, "settings_in_use").get("field"), "timezone", "refused field")
        r = c.put(f"/api/v1/instructors/{ins}", {"timezone": "UTC", "hold_seconds": 600, "weekly": all_week()},
                  token=srv.admin())
        eq(expect_ok(r, 200).get("hold_seconds"), 600, "other settings may change")
    expect_ok(srv.action(h.uuid, "cancel", h.student_token), 200)
    with srv.client() as c:
        r = c.put(f"/api/v1/instructors/{ins}", {"timezone": "UTC", "granularity_minutes": 30, "weekly": all_week()},
                  token=srv.admin())
        eq(expect_ok(r, 200).get("granularity_minutes"), 30, "grid changes once nothing is booked")
