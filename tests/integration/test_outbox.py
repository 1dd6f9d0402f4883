"""Outgoing booking events: the booking_events outbox, its audit trail
(GET /api/v1/bookings/{uuid}/events) and webhook delivery to WEBHOOK_URL
(signed like R-PAY, retried with backoff, at least once, in order per
booking)."""

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import subprocess
import threading
import time
import urllib.parse
import uuid as uuid_mod

from harness import (Server, check, eq, expect_error, expect_ok, fail, free_port, parse_ts, psql, redis_cli,
                     resp_command, shared, slot, timeout, uid, wait_until)

# Events recorded in Redis reach Postgres within a mover period (200 ms); generous for ASan.
RECORDED_WITHIN_S = 10.0
DELIVERED_WITHIN_S = 20.0
SIG_RE = re.compile(r"^t=(\d+),v1=([0-9a-f]{64})$")


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every request.

    Modes, fixed before any event can arrive: fail_each=n answers 500 to
    each booking's first n requests; fail_all=True answers 500 to every
    booking until allow(uuid); hang=True never answers (until closed).
    Requests for bookings of other tests get the same treatment and are
    recorded too; assertions look at one booking at a time."""

    def __init__(self, hang=False, fail_each=0, fail_all=False):
        self.port = free_port()
        self.hang = hang
        self.lock = threading.Lock()
        self.requests = []  # dicts: path, headers, raw, doc, status, seq
        self.fail_each = fail_each
        self.fail_all = fail_all
        self.allowed = set()
        self.seen = {}  # booking -> requests so far
        self.closing = threading.Event()
        rcv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                rcv._handle(self, raw)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hooks/slotlock?src=it"

    def _handle(self, h, raw):
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        booking = doc.get("booking_uuid") if isinstance(doc, dict) else None
        with self.lock:
            n = self.seen[booking] = self.seen.get(booking, 0) + 1
            if self.fail_all and booking not in self.allowed:
                status = 500
            elif n <= self.fail_each:
                status = 500
            else:
                status = 200
            entry = {"path": h.path, "headers": {k.lower(): v for k, v in h.headers.items()}, "raw": raw,
                     "doc": doc, "status": None if self.hang else status, "seq": len(self.requests)}
            self.requests.append(entry)
        if self.hang:
            self.closing.wait(60)
            return
        body = b"{}"
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def allow(self, booking):
        with self.lock:
            self.allowed.add(booking)

    def of(self, booking):
        """Requests for one booking, in arrival order."""
        with self.lock:
            return [r for r in self.requests if isinstance(r["doc"], dict) and r["doc"].get("booking_uuid") == booking]

    def delivered(self, booking):
        """Event types answered 2xx for the booking, in arrival order."""
        return [r["doc"]["type"] for r in self.of(booking) if r["status"] == 200]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def quiet_backlog():
    """Marks events left undelivered by earlier tests (servers without WEBHOOK_URL) as delivered, and drops the
    Redis-side events and expiry checks they left (thousands after the bench tests), so a webhook server started
    now works on this test's events only and not on a backlog of unknown size."""
    port = urllib.parse.urlparse(os.environ["REDIS_URL"]).port
    lists = redis_cli("KEYS", "{slk:outbox}:due:*").split()
    resp_command(port, "DEL", "{slk:outbox}:stream", "{slk:outbox}:due", *lists)
    psql("UPDATE booking_events SET delivered_at = now() WHERE delivered_at IS NULL")


def webhook_server(receiver, **env):
    e = {"WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
         "WEBHOOK_RETRY_BASE_MS": "100", "WEBHOOK_RETRY_MAX_MS": "1000", "WEBHOOK_TIMEOUT_MS": "2000"}
    e.update(env)
    return Server(env=e, name="outbox")


def verify_signature(req, secret):
    sig = req["headers"].get("x-signature")
    m = SIG_RE.match(sig or "")
    check(m, f"X-Signature {sig!r} is not t=<unix>,v1=<hex>")
    t = int(m.group(1))
    check(abs(t - time.time()) < 300, f"signature time {t} is not now")
    want = hmac.new(secret.encode(), m.group(1).encode() + b"." + req["raw"], hashlib.sha256).hexdigest()
    check(hmac.compare_digest(want, m.group(2)), f"X-Signature does not verify with WEBHOOK_SECRET: {sig}")


def events(srv, booking, token=None):
    return expect_ok(srv.client().get(f"/api/v1/bookings/{booking}/events", token=token or srv.admin()))["events"]


def event_types(srv, booking):
    return [e["type"] for e in events(srv, booking)]


def wait_types(srv, booking, want, bound=RECORDED_WITHIN_S):
    """Waits until the booking's events are exactly want (in order); returns them."""
    got = []

    def done():
        got[:] = events(srv, booking)
        return [e["type"] for e in got] == want

    try:
        wait_until(done, bound, interval=0.1, what=f"events {want} of {booking}")
    except AssertionError:
        raise AssertionError(f"events of {booking}: expected types {want}, got {got}")
    return got


def psql_tx(sql):
    """psql output of a multi-statement script without its command tags (BEGIN, UPDATE 1, ROLLBACK)."""
    lines = psql(sql).splitlines()
    return "\n".join(line for line in lines if not re.match(r"^(BEGIN|ROLLBACK|COMMIT|UPDATE \d+)$", line))


def pay(srv, h, **kw):
    return expect_ok(srv.callback(h.uuid, "succeeded", **kw), 200)


# --------------------------------------------------------------------------
# Audit trail without WEBHOOK_URL


@timeout(60)
def test_events_list_held_confirmed_cancelled_with_actors():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(9, 10)
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=2)
    h = srv.hold(ins, start, end)
    pay(srv, h, engine="stripe")
    expect_ok(srv.action(h.uuid, "cancel", h.instructor_token, {"reason": "sick"}), 200)
    evs = wait_types(srv, h.uuid, ["held", "confirmed", "cancelled"])
    held, confirmed, cancelled = evs
    eq(held["actor"], {"id": h.student, "role": "student"}, "actor of held")
    eq(held["status"], "payment_required", "status after held")
    eq(confirmed["status"], "confirmed", "status after confirmed")
    eq(confirmed["actor"].get("role"), "payment", "actor role of the payment confirmation")
    check(confirmed["actor"].get("id") in ("stripe", "payment"), f"actor of confirmed: {confirmed['actor']}")
    eq(cancelled["actor"], {"id": ins, "role": "instructor"}, "actor of cancelled")
    eq(cancelled["status"], "cancelled", "status after cancelled")
    prev = before
    for e in evs:
        check(isinstance(e["id"], int), f"event id: {e}")
        at = parse_ts(e["occurred_at"], "occurred_at")
        check(prev <= at <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2),
              f"occurred_at {at} out of order or not now: {evs}")
        prev = at
        eq(e["delivered_at"], None, "delivered_at without WEBHOOK_URL")
        eq(e["data"].get("start"), start, "data.start")
        eq(e["data"].get("end"), end, "data.end")
    check(evs[0]["id"] < evs[1]["id"] < evs[2]["id"], f"ids not increasing: {evs}")
    # Visible to the booking's parties, as the booking itself.
    eq(len(events(srv, h.uuid, h.student_token)), 3, "events seen by the student")
    eq(len(events(srv, h.uuid, h.instructor_token)), 3, "events seen by the instructor")


def test_moved_events_keep_their_text_exactly():
    # The mover sends a batch as array literals: quotes, backslashes, commas, braces and the word NULL in a
    # value must arrive as they were, and an empty actor as SQL NULL.
    shared()
    tricky = 'a"b\\c,{d} NULL'
    rows = []
    for actor in (tricky, "NULL", ""):
        u = str(uuid_mod.uuid4())
        at = int(time.time() * 1000)
        redis_cli("XADD", "{slk:outbox}:stream", "*", "uuid", u, "instructor", "ins-q", "student", "stu-q",
                  "type", "cancelled", "status", "cancelled", "actor", actor, "role", "student", "at", at,
                  "start", at + 86400000, "end", at + 90000000)
        rows.append((u, actor))
    for u, actor in rows:
        wait_until(lambda: psql(f"SELECT count(*) FROM booking_events WHERE booking_uuid = '{u}'") == "1",
                   RECORDED_WITHIN_S, interval=0.1, what=f"event of {u} moved")
        got = psql(f"SELECT coalesce(actor_id, '<null>') || '|' || instructor_id || '|' || type || '|' || "
                   f"(data ? 'start') FROM booking_events WHERE booking_uuid = '{u}'")
        eq(got, f"{actor if actor else '<null>'}|ins-q|cancelled|true", f"moved row of actor {actor!r}")


def test_an_event_moved_twice_is_recorded_once():
    # The mover is at least once and two servers may both notice one expiry: a one-off event (here cancelled)
    # that reaches the stream twice is one row; a repeatable one (extended) is one row per stream entry.
    shared()
    u = str(uuid_mod.uuid4())
    at = int(time.time() * 1000)
    fields = ["uuid", u, "instructor", "ins-d", "student", "stu-d", "actor", "stu-d", "role", "student", "at", at,
              "start", at + 86400000, "end", at + 90000000]
    for kind in ("cancelled", "cancelled", "extended", "extended"):
        redis_cli("XADD", "{slk:outbox}:stream", "*", *fields, "type", kind, "status", kind)
    count = f"SELECT count(*) FROM booking_events WHERE booking_uuid = '{u}'"
    wait_until(lambda: psql(count) == "3", RECORDED_WITHIN_S, interval=0.1, what=f"events of {u} moved")
    # A later mover pass (the stream's next entries) must not add to them.
    v = str(uuid_mod.uuid4())
    redis_cli("XADD", "{slk:outbox}:stream", "*", *fields[2:], "uuid", v, "type", "cancelled", "status",
              "cancelled")
    wait_until(lambda: psql(f"SELECT count(*) FROM booking_events WHERE booking_uuid = '{v}'") == "1",
               RECORDED_WITHIN_S, interval=0.1, what=f"event of {v} moved")
    eq(psql(f"SELECT string_agg(type, ',' ORDER BY id) FROM booking_events WHERE booking_uuid = '{u}'"),
       "cancelled,extended,extended", "events of a booking whose events reached the stream twice")


def test_events_hidden_from_strangers():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(9, 12)
    h = srv.hold(ins, start, end)
    c = srv.client()
    for who, role in ((uid("stu"), "student"), (srv.put_instructor(), "instructor")):
        r = c.get(f"/api/v1/bookings/{h.uuid}/events", token=srv.token(who, role))
        expect_error(r, 404, "not_found")
    expect_error(c.get(f"/api/v1/bookings/{h.uuid}/events"), 401)
    expect_error(c.get("/api/v1/bookings/7b0c7a3e-8d9b-4a51-9f8e-1c2d3e4f5a6b/events", token=srv.admin()), 404)
    expect_error(c.get("/api/v1/bookings/not-a-uuid/events", token=srv.admin()), 404)


@timeout(60)
def test_payment_failed_and_expired_holds_are_recorded():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(9, 14)
    h = srv.hold(ins, start, end)
    r = srv.callback(h.uuid, "failed")
    check(r.status in (200, 409), f"failed payment: {r}")
    evs = wait_types(srv, h.uuid, ["held", "payment_failed"])
    eq(evs[1]["status"], "payment_failed", "status after payment_failed")

    quick = srv.put_instructor(hold_seconds=1)
    h2 = srv.hold(quick, *slot(9, 16))
    evs = wait_types(srv, h2.uuid, ["held", "expired"], bound=15.0)
    eq(evs[1]["actor"].get("role"), "system", "actor of expired")
    eq(evs[1]["status"], "expired", "status after expired")
    check(parse_ts(evs[1]["occurred_at"]) >= parse_ts(h2.data["hold_expires_at"]),
          f"expired before the hold lapsed: {evs} vs {h2.data['hold_expires_at']}")


@timeout(60)
def test_extended_hold_expires_at_its_new_time():
    # The expiry check scheduled with the hold must notice an extension and wait for the new expiry.
    srv = shared()
    ins = srv.put_instructor(hold_seconds=2)
    h = srv.hold(ins, *slot(9, 18))
    r = srv.client().post(f"/api/v1/bookings/{h.uuid}/extend", {}, token=h.student_token)
    new_exp = parse_ts(expect_ok(r)["hold_expires_at"])
    evs = wait_types(srv, h.uuid, ["held", "extended", "expired"], bound=20.0)
    check(parse_ts(evs[2]["occurred_at"]) >= new_exp, f"expired before the extended expiry {new_exp}: {evs}")


def due_list_of(h):
    """The expiry schedule's list the hold's check waits in (a quarter second each, named by its first ms), and
    the hold's member there: '<instructor>/<the uuid's 16 bytes in base64>'."""
    ms = int(parse_ts(h.data["hold_expires_at"]).timestamp() * 1000)
    first = ms - ms % 250
    member = f"{h.instructor}/{base64.b64encode(uuid_mod.UUID(h.uuid).bytes).decode()}"
    return first, member


@timeout(60)
def test_expiry_checks_wait_in_lists_of_their_time_not_in_one_set_of_all_holds():
    # The scale rule: no structure whose cost grows with all live holds. A moved hold's check is appended
    # to the list of its quarter second and named in the index of lists; the set of claimed checks stays out of it.
    srv = shared()
    ins = srv.put_instructor(hold_seconds=600)
    holds = [srv.hold(ins, *slot(9, 20 + i)) for i in range(3)]
    for h in holds:
        wait_types(srv, h.uuid, ["held"])
    for h in holds:
        first, member = due_list_of(h)
        key = f"{{slk:outbox}}:due:{first}"
        wait_until(lambda: member in redis_cli("LRANGE", key, "0", "-1").split(), RECORDED_WITHIN_S,
                   what=f"{h.uuid}'s check in {key}")
        eq(redis_cli("ZSCORE", "{slk:outbox}:due:lists", str(first)), str(first), f"{key} is named in the index")
        eq(redis_cli("ZSCORE", "{slk:outbox}:due", member), "", "a waiting check is not in the claims' set")
        eq(redis_cli("ZSCORE", "{slk:outbox}:due", f"{ins}/{h.uuid}"), "", "nor under the uuid's text")


@timeout(60)
def test_an_expiry_check_left_by_an_earlier_version_still_runs():
    # Servers before the lists kept every check in the one sorted set, '<instructor>/<uuid>' by expiry: after an
    # upgrade those still run, and leave the set once done.
    srv = shared()
    ins = srv.put_instructor(hold_seconds=5)  # room to take the check out of its list before it is due
    h = srv.hold(ins, *slot(9, 30))
    wait_types(srv, h.uuid, ["held"])
    first, member = due_list_of(h)
    key = f"{{slk:outbox}}:due:{first}"
    wait_until(lambda: redis_cli("LREM", key, "0", member) == "1", RECORDED_WITHIN_S,
               what=f"{h.uuid}'s check taken out of {key}")
    legacy = f"{ins}/{h.uuid}"
    ms = int(parse_ts(h.data["hold_expires_at"]).timestamp() * 1000)
    eq(redis_cli("ZADD", "{slk:outbox}:due", str(ms), legacy), "1", "the check as an earlier version wrote it")
    evs = wait_types(srv, h.uuid, ["held", "expired"], bound=15.0)
    check(parse_ts(evs[1]["occurred_at"]) >= parse_ts(h.data["hold_expires_at"]), f"expired too early: {evs}")
    wait_until(lambda: redis_cli("ZSCORE", "{slk:outbox}:due", legacy) == "", RECORDED_WITHIN_S,
               what="the finished check gone from the set")


@timeout(60)
def test_a_batch_stays_in_the_stream_until_its_expiry_checks_are_scheduled():
    # The mover deletes moved entries only once their holds' expiry checks are scheduled: while Redis refuses
    # the schedule (here the lists' index is of the wrong type), the entries stay and are moved again, and once
    # Redis takes it the hold gets its check and expires on record. Before, the entries went regardless and the
    # hold never got its 'expired' event.
    srv = shared()
    ins = srv.put_instructor(hold_seconds=3)
    lists, saved = "{slk:outbox}:due:lists", "{slk:outbox}:due:lists:saved"
    if redis_cli("EXISTS", lists) == "1":
        redis_cli("RENAME", lists, saved)
    redis_cli("SET", lists, "not a sorted set")
    try:
        h = srv.hold(ins, *slot(9, 40))
        wait_types(srv, h.uuid, ["held"])
        time.sleep(1.0)  # five mover periods
        check(h.uuid in redis_cli("XRANGE", "{slk:outbox}:stream", "-", "+"),
              "the entry stays in the stream while its check cannot be scheduled")
    finally:
        redis_cli("DEL", lists)
        redis_cli("ZUNIONSTORE", lists, "2", lists, saved)
        redis_cli("DEL", saved)
    evs = wait_types(srv, h.uuid, ["held", "expired"], bound=15.0)
    check(parse_ts(evs[1]["occurred_at"]) >= parse_ts(h.data["hold_expires_at"]), f"expired too early: {evs}")
    wait_until(lambda: h.uuid not in redis_cli("XRANGE", "{slk:outbox}:stream", "-", "+"), RECORDED_WITHIN_S,
               what="the entry gone from the stream once scheduled")


LUA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lua")
SCRIPT_DB = "13"  # a database of the test Redis no server uses


def script_db(*args):
    """redis-cli in SCRIPT_DB; its --raw output as words."""
    url = os.environ["REDIS_URL"]
    p = subprocess.run(["redis-cli", "-u", url, "-n", SCRIPT_DB, "--raw", *[str(a) for a in args]],
                       capture_output=True, text=True, timeout=10)
    check(p.returncode == 0 and "ERR" not in p.stdout, f"redis-cli {args[0]} failed: {p.stdout} {p.stderr}")
    return p.stdout.split()


def run_script(name, keys, args):
    """lua/<name>.lua run in SCRIPT_DB."""
    return script_db("--eval", os.path.join(LUA_DIR, name + ".lua"), *keys, ",", *args)


@timeout(30)
def test_the_claim_takes_each_check_once_and_forgets_drained_lists():
    # The schedule's two scripts on their own: a hold listed twice in one list (its extension's check and its
    # re-check) is claimed once; a check already claimed is left to that claim, whose lease is cut to the new
    # one's end if it ran further; a drained list leaves the index, one that still holds checks stays in it;
    # checks written by earlier versions come first; a re-check lists its hold and ends its claim in one step.
    script_db("FLUSHDB")
    claims, lists = "{slk:outbox}:due", "{slk:outbox}:due:lists"
    l1000, l2000, l3000 = (f"{{slk:outbox}}:due:{ms}" for ms in (1000, 2000, 3000))
    eq(run_script("outbox_schedule", [lists, l1000, claims], [1000, "", "i/a", "i/b", "i/a"]), ["3"], "listed")
    eq(run_script("outbox_schedule", [lists, l2000, claims], [2000, "", "i/c", "i/d", "i/e"]), ["3"], "listed")
    eq(script_db("ZRANGE", lists, 0, -1, "WITHSCORES"), ["1000", "1000", "2000", "2000"], "both lists named")
    # an earlier version's check; a claim on i/d leased far ahead (a clock that ran ahead)
    script_db("ZADD", claims, 500, "i/old", 999999, "i/d")
    got = run_script("outbox_due", [claims, lists, l1000, l2000], [1500, 31500, 4, 1000, 2000])
    eq(got, ["i/old", "i/a", "i/b", "i/c"], "claimed: the earlier version's check first, each hold once")
    eq(script_db("EXISTS", l1000), ["0"], "the drained list is gone")
    eq(script_db("LRANGE", l2000, 0, -1), ["i/d", "i/e"], "the rest waits")
    eq(script_db("ZRANGE", lists, 0, -1), ["2000"], "only the list that still holds checks stays named")
    eq(script_db("ZRANGE", claims, 0, -1, "WITHSCORES"),
       ["i/a", "31500", "i/b", "31500", "i/c", "31500", "i/old", "31500", "i/d", "999999"], "claimed until 31500")
    got = run_script("outbox_due", [claims, lists, l2000], [2500, 32500, 10, 2000])
    eq(got, ["i/e"], "i/d is left to its claim")
    eq(script_db("ZSCORE", claims, "i/d"), ["32500"], "whose lease now ends with this claim's")
    eq(script_db("ZRANGE", lists, 0, -1), [], "no list left")
    eq(run_script("outbox_schedule", [lists, l3000, claims], [3000, "i/a", "i/a"]), ["1"], "i/a checked again")
    eq(script_db("ZSCORE", claims, "i/a"), [], "and its claim is over")
    eq(script_db("ZRANGE", lists, 0, -1), ["3000"], "its list is named")
    script_db("FLUSHDB")


@timeout(90)
def test_ended_holds_leave_the_listing_indexes():
    # Only live holds are listed from Redis. Once a hold has ended (lapsed, paid or cancelled) its entries leave
    # the instructor's and the student's listing indexes without anyone asking for a listing, and a student's
    # index goes away with its last hold: a student who held once and never listed costs Redis nothing.
    srv = shared()
    ins = srv.put_instructor(hold_seconds=3)
    index = f"slk:{{{ins}}}:holds"
    lapsed = srv.hold(ins, *slot(9, 10))
    # Listed as servers before the short member listed it, '<instructor>/<uuid>' (3 s before it can lapse).
    score = redis_cli("ZSCORE", index, lapsed.uuid)
    eq(redis_cli("ZREM", index, lapsed.uuid), "1", "a hold is listed by its uuid")
    redis_cli("ZADD", index, score, f"{ins}/{lapsed.uuid}")
    paid = srv.hold(ins, *slot(9, 12))
    cancelled = srv.hold(ins, *slot(9, 14))
    listed = set(redis_cli("ZRANGE", index, "0", "-1").split())
    check(listed <= {f"{ins}/{lapsed.uuid}", paid.uuid, cancelled.uuid} and cancelled.uuid in listed,
          f"the instructor's index while the holds live: {listed}")
    live = srv.put_instructor()
    kept = srv.hold(live, *slot(9, 16))
    paid.confirm()
    with srv.client() as c:
        expect_ok(c.post(f"/api/v1/bookings/{cancelled.uuid}/cancel", {}, token=cancelled.student_token), 200)
    # A claimed expiry check that is lost comes due again after its 30 s lease.
    try:
        wait_until(lambda: redis_cli("ZCARD", index) == "0", 45, what="ended holds unlisted for their instructor")
    except AssertionError:
        left = redis_cli("ZRANGE", index, "0", "-1").split()
        due = {m: redis_cli("ZSCORE", "{slk:outbox}:due", m) for m in left}
        fail(f"still listed: {left}; their expiry checks (due at, ms): {due}; now {int(time.time() * 1000)}")
    for h in (lapsed, paid, cancelled):
        eq(redis_cli("EXISTS", f"slk:stu:{{{h.student}}}:holds"), "0", f"{h.student}'s listing index is gone")
    check(redis_cli("ZSCORE", f"slk:{{{live}}}:holds", kept.uuid) != "", "a live hold stays listed")
    eq(redis_cli("EXISTS", f"slk:stu:{{{kept.student}}}:holds"), "1", "and so does its student's index")


# --------------------------------------------------------------------------
# Same transaction as the change


@timeout(90)
def test_every_status_change_writes_its_event_in_the_same_transaction():
    srv = shared()
    plain = srv.put_instructor()
    gated = srv.put_instructor(requires_acceptance=True)
    uuids = []
    h = srv.hold(plain, *slot(10, 9))
    pay(srv, h)
    uuids.append(h.uuid)
    h = srv.hold(plain, *slot(10, 11))
    pay(srv, h)
    expect_ok(srv.action(h.uuid, "cancel", h.student_token, {}), 200)
    uuids.append(h.uuid)
    h = srv.hold(gated, *slot(10, 13))
    pay(srv, h)
    expect_ok(srv.action(h.uuid, "accept", h.instructor_token, {}), 200)
    uuids.append(h.uuid)
    h = srv.hold(gated, *slot(10, 15))
    pay(srv, h)
    expect_ok(srv.action(h.uuid, "reject", h.instructor_token, {}), 200)
    uuids.append(h.uuid)
    ids = ",".join(f"'{u}'" for u in uuids)
    # Every booking row has an event of its current status, at once (no waiting: it is the same commit).
    missing = psql(f"SELECT count(*) FROM bookings b WHERE b.uuid IN ({ids}) AND NOT EXISTS "
                   f"(SELECT 1 FROM booking_events e WHERE e.booking_uuid = b.uuid AND e.type = b.status)")
    eq(missing, "0", "bookings without an event of their status")
    counts = psql(f"SELECT string_agg(n::text, ',' ORDER BY ord) FROM (SELECT u.ord, (SELECT count(*) FROM "
                  f"booking_events e WHERE e.booking_uuid = u.id::uuid AND e.type <> 'held') n FROM "
                  f"unnest(ARRAY[{ids}]) WITH ORDINALITY u(id, ord)) x")
    eq(counts, "1,2,2,2", "status events per booking (confirmed; confirmed+cancelled; paid+confirmed; "
                          "paid+rejected)")
    held = psql(f"SELECT count(*) FROM booking_events WHERE booking_uuid IN ({ids}) AND type = 'held'")
    eq(held, "4", "exactly one held event per booking")
    # Inside a transaction the event exists as soon as the change does, and a rollback takes both away.
    u = uuids[0]
    inside = psql_tx(f"BEGIN; UPDATE bookings SET status = 'completed', actor_id = 'ops-1', actor_role = 'admin' "
                  f"WHERE uuid = '{u}'; SELECT count(*) || ':' || max(actor_id) || ':' || max(actor_role) FROM "
                  f"booking_events WHERE booking_uuid = '{u}' AND type = 'completed'; ROLLBACK;")
    eq(inside, "1:ops-1:admin", "completed event inside the transaction")
    eq(psql(f"SELECT count(*) FROM booking_events WHERE booking_uuid = '{u}' AND type = 'completed'"), "0",
       "event of a rolled back change")
    # A move without a status change is a 'rescheduled' event saying from where.
    moved = psql_tx(f"BEGIN; UPDATE bookings SET start_at = start_at + interval '1 day', end_at = end_at + "
                 f"interval '1 day' WHERE uuid = '{u}'; SELECT data::text FROM booking_events WHERE booking_uuid = "
                 f"'{u}' AND type = 'rescheduled'; ROLLBACK;")
    data = json.loads(moved)
    check(parse_ts(data["start"]) - parse_ts(data["from_start"]) == dt.timedelta(days=1), f"rescheduled: {data}")
    check(parse_ts(data["end"]) - parse_ts(data["from_end"]) == dt.timedelta(days=1), f"rescheduled: {data}")


# --------------------------------------------------------------------------
# Webhook delivery


@timeout(90)
def test_webhook_delivers_held_then_confirmed_signed_with_retries():
    quiet_backlog()
    with Receiver(fail_each=2) as rcv, webhook_server(rcv) as srv:
        secret = srv.extra_env["WEBHOOK_SECRET"]
        ins = srv.put_instructor()
        start, end = slot(11, 10)
        h = srv.hold(ins, start, end)
        pay(srv, h, engine="stripe")
        wait_until(lambda: rcv.delivered(h.uuid) == ["held", "confirmed"], DELIVERED_WITHIN_S,
                   what="held and confirmed delivered")
        reqs = rcv.of(h.uuid)
        eq([(r["doc"]["type"], r["status"]) for r in reqs],
           [("held", 500), ("held", 500), ("held", 200), ("confirmed", 200)], "requests for the booking")
        for r in reqs:
            verify_signature(r, secret)
            eq(r["path"], "/hooks/slotlock?src=it", "request path")
            check((r["headers"].get("content-type") or "").startswith("application/json"), f"content type {r}")
            eq(r["headers"].get("x-slotlock-event-id"), str(r["doc"]["id"]), "X-Slotlock-Event-Id")
        held, confirmed = reqs[2]["doc"], reqs[3]["doc"]
        eq(reqs[0]["doc"], held, "a retry sends the same event")
        eq(held["booking_uuid"], h.uuid, "booking_uuid")
        eq(held["instructor_uuid"], ins, "instructor_uuid")
        eq(held["student_uuid"], h.student, "student_uuid")
        eq(held["status"], "payment_required", "status of held")
        eq(held["actor"], {"id": h.student, "role": "student"}, "actor of held")
        eq(held["data"].get("start"), start, "data.start")
        eq(confirmed["type"], "confirmed", "type")
        eq(confirmed["status"], "confirmed", "status of confirmed")
        check(held["id"] < confirmed["id"], f"ids out of order: {held['id']} {confirmed['id']}")
        parse_ts(confirmed["occurred_at"], "occurred_at")
        rows = psql(f"SELECT string_agg(type || ':' || attempts || ':' || (delivered_at IS NOT NULL) || ':' || "
                    f"COALESCE(last_error, '-'), ',' ORDER BY id) FROM booking_events WHERE booking_uuid = '{h.uuid}'")
        eq(rows, "held:3:true:-,confirmed:1:true:-", "attempts and delivery recorded")
        evs = events(srv, h.uuid)
        check(all(e["delivered_at"] is not None for e in evs), f"delivered_at in the listing: {evs}")


@timeout(90)
def test_webhook_keeps_order_per_booking_while_an_earlier_event_fails():
    quiet_backlog()
    with Receiver(fail_all=True) as rcv, webhook_server(rcv) as srv:
        ins = srv.put_instructor()
        x = srv.hold(ins, *slot(11, 12))
        pay(srv, x)
        y = srv.hold(ins, *slot(11, 14))
        rcv.allow(y.uuid)
        pay(srv, y)
        # Another booking is not held up by the failing one.
        wait_until(lambda: rcv.delivered(y.uuid) == ["held", "confirmed"], DELIVERED_WITHIN_S,
                   what="the other booking's events delivered")
        wait_until(lambda: len(rcv.of(x.uuid)) >= 3, DELIVERED_WITHIN_S, what="the failing event retried")
        eq({r["doc"]["type"] for r in rcv.of(x.uuid)}, {"held"}, "events sent while 'held' keeps failing")
        last_error = psql(f"SELECT last_error FROM booking_events WHERE booking_uuid = '{x.uuid}' AND type = 'held'")
        eq(last_error, "HTTP 500", "last_error")
        rcv.allow(x.uuid)
        wait_until(lambda: rcv.delivered(x.uuid) == ["held", "confirmed"], DELIVERED_WITHIN_S,
                   what="events delivered once the receiver recovers")
        types = [r["doc"]["type"] for r in rcv.of(x.uuid)]
        eq(types[-1], "confirmed", "confirmed comes last")
        check("confirmed" not in types[:-1], f"confirmed sent before held was delivered: {types}")


@timeout(60)
def test_webhook_deadline_and_clean_stop_with_a_hanging_receiver():
    quiet_backlog()
    with Receiver(hang=True) as rcv:
        with webhook_server(rcv, WEBHOOK_TIMEOUT_MS="300") as srv:
            h = srv.hold(srv.put_instructor(), *slot(11, 16))
            # The deadline ends each attempt, so the event is tried again.
            wait_until(lambda: len(rcv.of(h.uuid)) >= 2, DELIVERED_WITHIN_S, what="a second attempt")
            wait_until(lambda: psql(f"SELECT last_error FROM booking_events WHERE booking_uuid = '{h.uuid}'") ==
                       "timeout", DELIVERED_WITHIN_S, what="last_error timeout")
        # Leaving the with block checked that SIGTERM made the server exit 0 with a request in flight.
        with webhook_server(rcv, WEBHOOK_TIMEOUT_MS="600000") as srv:
            h = srv.hold(srv.put_instructor(), *slot(11, 18))
            wait_until(lambda: len(rcv.of(h.uuid)) >= 1, DELIVERED_WITHIN_S, what="a delivery in flight")
            t0 = time.monotonic()
            srv.stop_checked()
            check(time.monotonic() - t0 < 10, "stop waited for a webhook that never answers")
