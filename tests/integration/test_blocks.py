"""Blocks (vacations): all-or-nothing, enforced by the hold script, persisted for Redis restarts."""

import datetime as dt

from harness import (RedisProc, Server, check, eq, expect_error, expect_ok, iso, psql, shared, timeout, uid,
                     utcnow)


def _z(days, hour, minute=0):
    d = utcnow().date() + dt.timedelta(days=days)
    return iso(dt.datetime(d.year, d.month, d.day, hour, minute, tzinfo=dt.timezone.utc))


def _block(srv, ins, blocks, token=None):
    with srv.client() as c:
        return c.post(f"/api/v1/instructors/{ins}/availability/block", {"blocks": blocks},
                      token=token or srv.admin())


def _unblock(srv, ins, block_uuid, token=None):
    with srv.client() as c:
        return c.request("DELETE", f"/api/v1/instructors/{ins}/availability/block/{block_uuid}",
                         token=token or srv.admin())


def _free_starts(srv, ins, days, include_held=False):
    date = (utcnow().date() + dt.timedelta(days=days)).isoformat()
    held = "&include_held=true" if include_held else ""
    with srv.client() as c:
        r = c.get(f"/api/v1/instructors/{ins}/availability?from={date}&to={date}{held}", token=srv.admin())
    return expect_ok(r, 200)["slots"]


@timeout(60)
def test_block_refuses_holds_and_hides_slots_until_removed():
    srv = shared()
    ins = srv.put_instructor()
    data = expect_ok(_block(srv, ins, [{"start_time": _z(6, 9), "end_time": _z(6, 12), "reason": "dentist"}]), 201)
    eq(len(data["blocks"]), 1, "blocks created")
    block = data["blocks"][0]
    eq((block["start_time"], block["end_time"], block["reason"]), (_z(6, 9), _z(6, 12), "dentist"), "block echoed")
    eq(psql(f"SELECT count(*) FROM availability_blocks WHERE uuid = '{block['uuid']}'"), "1", "block row in PG")

    expect_error(srv.try_hold(ins, _z(6, 11), _z(6, 12, 30)), 409, "slot_unavailable")
    starts = {s["start_time"] for s in _free_starts(srv, ins, 6)}
    check(_z(6, 10) not in starts and _z(6, 12) in starts and _z(6, 8) in starts, "blocked hours hidden, others offered")
    states = {s["start_time"]: s["state"] for s in _free_starts(srv, ins, 6, include_held=True)}
    eq(states[_z(6, 10)], "blocked", "state of a blocked slot")

    expect_ok(_unblock(srv, ins, block["uuid"]), 200)
    eq(psql(f"SELECT count(*) FROM availability_blocks WHERE uuid = '{block['uuid']}'"), "0", "row gone")
    expect_ok(srv.try_hold(ins, _z(6, 11), _z(6, 12, 30)), 201)
    expect_error(_unblock(srv, ins, block["uuid"]), 404, "not_found")


@timeout(60)
def test_block_over_a_hold_is_refused_whole():
    srv = shared()
    ins = srv.put_instructor()
    srv.hold(ins, _z(7, 15), _z(7, 16))
    r = _block(srv, ins, [{"start_time": _z(7, 8), "end_time": _z(7, 10)},
                          {"start_time": _z(7, 14), "end_time": _z(7, 18)}])
    details = expect_error(r, 409, "slot_unavailable")
    eq(details.get("block_index"), 1, "the conflicting block is named")
    eq((details.get("start_time"), details.get("end_time")), (_z(7, 15), _z(7, 16)), "taken range")
    # All or nothing: the first block was not applied either.
    expect_ok(srv.try_hold(ins, _z(7, 8), _z(7, 9)), 201)
    eq(psql(f"SELECT count(*) FROM availability_blocks WHERE instructor_id = '{ins}'"), "0", "no rows in PG")


@timeout(60)
def test_only_the_instructor_or_admin_may_block():
    srv = shared()
    ins = srv.put_instructor()
    body = [{"start_time": _z(6, 9), "end_time": _z(6, 10)}]
    expect_error(_block(srv, ins, body, token=srv.token(uid("stu"), "student")), 403, "forbidden")
    expect_error(_block(srv, ins, body, token=srv.token(uid("other"), "instructor")), 403, "forbidden")
    expect_ok(_block(srv, ins, body, token=srv.token(ins, "instructor")), 201)
    expect_error(_block(srv, ins, []), 422, "validation_failed", field="blocks")
    # Overlapping blocks in one request would leave the shared time to whichever is deleted first.
    expect_error(_block(srv, ins, [{"start_time": _z(6, 12), "end_time": _z(6, 14)},
                                   {"start_time": _z(6, 13), "end_time": _z(6, 15)}]), 422, "validation_failed",
                 field="blocks")
    expect_error(_block(srv, ins, [{"start_time": _z(6, 12), "end_time": _z(6, 11)}]), 422, "validation_failed",
                 field="end_time")


@timeout(90)
def test_blocks_survive_a_redis_restart():
    redis = RedisProc().start()
    try:
        with Server(redis_url=redis.url, env={"REDIS_TIMEOUT_MS": 500}, name="blocks-restart") as srv:
            ins = srv.put_instructor()
            expect_ok(_block(srv, ins, [{"start_time": _z(9, 9), "end_time": _z(9, 17)}]), 201)
            eq(redis.command("FLUSHALL"), "OK", "FLUSHALL")
            r = srv.try_hold(ins, _z(9, 12), _z(9, 13))
            for _ in range(50):
                if r.status != 503:
                    break
                r = srv.try_hold(ins, _z(9, 12), _z(9, 13))
            check(r.status != 201, f"a blocked range was held after Redis lost its data: {r}")
            expect_error(r, 409, "slot_unavailable")
    finally:
        redis.stop()
