"""Many clients race for a few slots: exactly one winner per slot."""

import json
import threading

from harness import (OVERLAP_AUDIT, Server, check, eq, expect_error, expect_ok, fail, post_at_once, psql, shared, slot,
                     timeout, uid)

CLIENTS_PER_SLOT = 40
SLOTS = 5


def _race(srv):
    ins = srv.put_instructor()
    slots = [slot(7, 10 + i) for i in range(SLOTS)]
    jobs = []
    for i in range(SLOTS * CLIENTS_PER_SLOT):
        student = uid("racer")
        body = json.dumps(srv.booking_body(ins, *slots[i % SLOTS], student=student)).encode()
        # Python-minted: 200 `slotlockd token` runs would dominate the test.
        jobs.append((i % SLOTS, body, srv.py_token(student, "student")))
    replies = post_at_once(srv.port, [("/api/v1/bookings", body, token, None) for _, body, token in jobs])
    results = [(slot_no, status, body) for (slot_no, _, _), (status, body, _) in zip(jobs, replies)]
    by_status = {}
    for _, status, _ in results:
        by_status[status] = by_status.get(status, 0) + 1
    bad = [r for r in results if r[1] not in (201, 409)]
    if bad:
        fail(f"unexpected replies {by_status}; e.g. {bad[0][1]} {bad[0][2][:300]!r}")
    for _, status, body in results:
        if status == 409:
            code = json.loads(body).get("error", {}).get("code")
            eq(code, "slot_unavailable", "409 code in the race")
    winners = [(s, json.loads(b)["data"]["uuid"]) for s, st, b in results if st == 201]
    eq(len(winners), SLOTS, f"201 replies (by status {by_status})")
    eq(sorted(s for s, _ in winners), list(range(SLOTS)), "one winner per slot")

    fences = []
    for _, booking in winners:
        data = expect_ok(srv.callback(booking, "succeeded"), 200)
        eq(data.get("status"), "confirmed", "winner confirms")
        fences.append(data.get("fence_token"))
    eq(len(set(fences)), SLOTS, f"distinct fence tokens {fences}")
    eq(psql(f"SELECT count(*) FROM bookings WHERE instructor_id = '{ins}' AND status = 'confirmed'"), str(SLOTS),
       "confirmed PG rows of the instructor")
    eq(psql(OVERLAP_AUDIT), "0", "overlap audit")


@timeout(150)
def test_race_200_clients_5_slots():
    _race(shared())


@timeout(150)
def test_race_200_clients_5_slots_two_workers():
    with Server(env={"WORKERS": 2}, name="workers2") as srv:
        _race(srv)


@timeout(120)
def test_concurrent_duplicate_callbacks_confirm_once():
    # At-least-once delivery: the same succeeded callback arriving 20 times at
    # once must confirm exactly once, answer 200 every time, and leave the
    # slot booked (a new hold on it is refused).
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(9, 10)
    h = srv.hold(ins, start, end)
    body = json.dumps({"payment_reference": "pi_dup_" + uid("x"), "payment_status": "succeeded",
                       "payment_engine": "stripe"})
    n = 20
    barrier = threading.Barrier(n, timeout=30)
    results = [None] * n

    def deliver(i):
        try:
            barrier.wait()
            r = srv.callback(h.uuid, body=body)
            results[i] = (r.status, r.json if r.status == 200 else r.body[:300])
        except Exception as e:  # reported below
            results[i] = (None, repr(e))

    threads = [threading.Thread(target=deliver, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(all(r is not None for r in results), "some deliveries did not finish")
    bad = [r for r in results if r[0] != 200]
    check(not bad, f"every delivery of a succeeded callback answers 200, got {bad[:3]}")
    eq({r[1]["data"]["status"] for r in results}, {"confirmed"}, "statuses replied")
    eq(psql(f"SELECT count(*) FROM bookings WHERE uuid = '{h.uuid}' AND status = 'confirmed'"), "1", "PG rows")
    r = srv.try_hold(ins, start, end)
    expect_error(r, 409, "slot_unavailable")
    eq(psql(OVERLAP_AUDIT), "0", "overlap audit")
