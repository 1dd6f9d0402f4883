"""GET /api/v1/bookings: keyset pagination over Postgres rows and live Redis holds, with R-SEC."""

import base64
import threading
import uuid

from harness import Server, check, eq, expect_error, expect_ok, redis_cli, shared, slot, timeout, uid


def _list(srv, token, **query):
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    with srv.client() as c:
        return c.get(f"/api/v1/bookings?{qs}", token=token)


def _all_pages(srv, token, limit, on_page=None, **query):
    seen, cursor, pages = [], None, 0
    while True:
        q = dict(query, limit=limit)
        if cursor:
            q["cursor"] = cursor
        data = expect_ok(_list(srv, token, **q), 200)
        seen += data["items"]
        pages += 1
        check(pages < 100, "pagination does not end")
        if on_page:
            on_page(pages)
        cursor = data["next_cursor"]
        if not cursor:
            return seen


@timeout(90)
def test_student_list_merges_holds_and_bookings_newest_first():
    srv = shared()
    ins = srv.put_instructor()
    student = uid("stu")
    token = srv.token(student, "student")
    holds = [srv.hold(ins, *slot(10, 8 + i), student=student) for i in range(5)]
    holds[1].confirm()
    holds[3].confirm()
    items = _all_pages(srv, token, 2, student_uuid=student)
    eq([b["uuid"] for b in items], [h.uuid for h in reversed(holds)], "every booking once, newest start first")
    by_uuid = {b["uuid"]: b["status"] for b in items}
    eq(by_uuid[holds[1].uuid], "confirmed", "a confirmed booking (Postgres)")
    eq(by_uuid[holds[0].uuid], "payment_required", "a live hold (Redis)")
    confirmed = expect_ok(_list(srv, token, student_uuid=student, status="confirmed"), 200)["items"]
    eq(sorted(b["uuid"] for b in confirmed), sorted([holds[1].uuid, holds[3].uuid]), "status filter")
    eq(set(items[0].keys()) >= {"uuid", "status", "start_time", "hold_expires_at", "fence_token"}, True,
       "items are booking objects")


@timeout(90)
def test_pages_have_no_duplicates_or_gaps_while_bookings_arrive():
    srv = shared()
    ins = srv.put_instructor()
    admin = srv.admin()
    existing = [srv.hold(ins, *slot(12, h, m, minutes=30)) for h in range(8, 12) for m in (0, 30)]
    for h in existing[::3]:
        h.confirm()
    arriving = []

    def add_more(page):
        # New bookings both before and after the current position.
        start = slot(12, 6, 30 if page % 2 else 0, minutes=30) if page < 3 else slot(12, 14 + page, minutes=30)
        arriving.append(srv.hold(ins, *start))

    items = _all_pages(srv, admin, 3, on_page=add_more, instructor_uuid=ins)
    uuids = [b["uuid"] for b in items]
    eq(len(uuids), len(set(uuids)), "no duplicates across pages")
    check(all(h.uuid in uuids for h in existing), "every booking that existed throughout is listed")
    keys = [(b["start_time"], b["uuid"]) for b in items]
    eq(keys, sorted(keys, reverse=True), "newest start first")


@timeout(60)
def test_list_ownership_and_parameters():
    srv = shared()
    ins = srv.put_instructor()
    student = uid("stu")
    srv.hold(ins, *slot(10, 9), student=student)
    expect_error(_list(srv, srv.token(uid("other"), "student"), student_uuid=student), 403, "forbidden")
    expect_error(_list(srv, srv.token(uid("ins"), "instructor"), instructor_uuid=ins), 403, "forbidden")
    eq(len(expect_ok(_list(srv, srv.token(ins, "instructor"), instructor_uuid=ins), 200)["items"]), 1,
       "the instructor sees their booking")
    expect_error(_list(srv, srv.admin()), 422, "validation_failed", field="instructor_uuid")
    expect_error(_list(srv, srv.admin(), student_uuid=student, limit=0), 422, "validation_failed", field="limit")
    expect_error(_list(srv, srv.admin(), student_uuid=student, cursor="zz"), 422, "validation_failed",
                 field="cursor")
    expect_error(_list(srv, srv.admin(), student_uuid=student, status="nope"), 422, "validation_failed",
                 field="status")
    far = ("9000000000000000000:" + "0" * 8 + "-0000-0000-0000-" + "0" * 12).encode().hex()
    expect_error(_list(srv, srv.admin(), student_uuid=student, cursor=far), 422, "validation_failed", field="cursor")


@timeout(60)
def test_cancelled_and_failed_holds_leave_the_hold_listing():
    srv = shared()
    ins = srv.put_instructor()
    student = uid("stu")
    token = srv.token(student, "student")
    a = srv.hold(ins, *slot(10, 9), student=student)
    b = srv.hold(ins, *slot(10, 11), student=student)
    expect_ok(srv.action(a.uuid, "cancel", token), 200)
    expect_ok(srv.callback(b.uuid, "failed"), 200)
    eq(expect_ok(_list(srv, token, student_uuid=student), 200)["items"], [], "no live holds left")


@timeout(90)
def test_a_student_listing_of_uuid_named_holds_stays_compact_and_reads_both_member_forms():
    # Instructors and students are named by uuids in the API. A student's listing names each hold
    # '<instructor>/<uuid>': with the uuid's text that is 73 bytes, past the 64 up to which Redis keeps a sorted set
    # compact, and one hold's listing took ~1 KB of Redis. The uuid now goes as its 16 bytes in base64 (61 bytes);
    # entries written by earlier versions, with the text, are still listed.
    srv = shared()
    ins = srv.put_instructor(str(uuid.uuid4()))
    student = str(uuid.uuid4())
    token = srv.token(student, "student")
    first = srv.hold(ins, *slot(10, 9), student=student)
    index = f"slk:stu:{{{student}}}:holds"
    eq(redis_cli("OBJECT", "ENCODING", index), "listpack", "the student's listing of a uuid-named hold is compact")
    second = srv.hold(ins, *slot(10, 11), student=student)
    members = redis_cli("ZRANGEBYSCORE", index, "0", "+inf").split("\n")  # the listing's; the cap's score below 0
    eq(len(members), 2, f"both holds listed: {members}")
    by_uuid = {}
    for m in members:
        check(len(m) <= 64 and m.startswith(f"{ins}/"), f"'<instructor>/<packed uuid>' within 64 bytes: {m}")
        by_uuid[str(uuid.UUID(bytes=base64.b64decode(m.split("/", 1)[1])))] = m
    eq(sorted(by_uuid), sorted([first.uuid, second.uuid]), "the packed uuids are the holds' own")
    # The first as an earlier server listed it: the uuid's text.
    score = redis_cli("ZSCORE", index, by_uuid[first.uuid])
    eq(redis_cli("ZREM", index, by_uuid[first.uuid]), "1", "packed member removed")
    redis_cli("ZADD", index, score, f"{ins}/{first.uuid}")
    items = expect_ok(_list(srv, token, student_uuid=student), 200)["items"]
    eq([b["uuid"] for b in items], [second.uuid, first.uuid], "both forms listed, newest start first")
    eq([b["instructor_uuid"] for b in items], [ins, ins], "each under its instructor")
    items = expect_ok(_list(srv, token, student_uuid=student, limit=1), 200)
    eq([b["uuid"] for b in items["items"]], [second.uuid], "a page of one")
    check(items["next_cursor"], "with a cursor to the next")


@timeout(120)
def test_pages_keep_every_hold_that_starts_at_the_same_time():
    # One student's holds at one start, with ten instructors: Redis orders them by member bytes (the instructor
    # first), pages by (start, uuid). A page of one reads 2 × 1 + 2 entries of the index; one left unread in a
    # tie could belong before the last one read, and was skipped for good once the cursor passed it.
    with Server(env={"MAX_HOLDS_PER_STUDENT": "0"}, name="list-ties") as srv:
        student = uid("stu")
        token = srv.token(student, "student")
        start, end = slot(12, 10)
        holds = [srv.hold(srv.put_instructor(f"ins-{i}-{uid('t')}"), start, end, student=student) for i in range(10)]
        items = _all_pages(srv, token, 1, student_uuid=student)
        eq([b["uuid"] for b in items], sorted((h.uuid for h in holds), reverse=True),
           "every hold once, by uuid within the one start")
