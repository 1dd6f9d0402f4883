"""HTTP/1.1 protocol behaviour over raw sockets."""

import email.utils
import json
import time

from harness import check, day, eq, expect_error, expect_ok, shared, slot, timeout, uid


def _get(path, extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode()


def test_keep_alive_two_requests_one_connection():
    srv = shared()
    with srv.raw() as rc:
        rc.send(_get("/livez"))
        eq(rc.read_response("GET", "/livez").status, 200, "first reply")
        rc.send(_get("/healthz"))
        eq(rc.read_response("GET", "/healthz").status, 200, "second reply on the same connection")
        check(not rc.peer_closed(0.2), "server closed a keep-alive connection")


def test_date_header_is_now_on_every_reply():
    # Each thread formats Date once a second: a reply a second later must carry the next second, not a kept one.
    srv = shared()
    seen = []
    with srv.raw() as rc:
        for _ in range(2):
            rc.send(_get("/livez"))
            r = rc.read_response("GET", "/livez")
            sent = email.utils.parsedate_to_datetime(r.header("date")).timestamp()
            check(r.header("date").endswith(" GMT"), f"Date not in IMF-fixdate: {r.header('date')!r}")
            check(abs(sent - time.time()) < 2.0, f"Date {r.header('date')!r} is not now")
            seen.append(sent)
            time.sleep(1.2)
    check(seen[1] > seen[0], f"Date did not move on: {seen}")


def test_pipelined_requests_answered_in_order():
    srv = shared()
    with srv.raw() as rc:
        rc.send(_get("/livez") + _get("/livez"))
        eq(rc.read_response("GET", "/livez #1").status, 200, "first pipelined reply")
        eq(rc.read_response("GET", "/livez #2").status, 200, "second pipelined reply")


@timeout(60)
def test_large_pipelined_replies_to_a_slow_reader_arrive_whole():
    # A reply the socket does not take at once is written in part at once and the rest later (http_server.c
    # conn_write); a client reading slowly through a small window must still get every byte, in order. A
    # hundred 7-day replies (~7 MB) are more than the server's socket buffer grows to.
    srv = shared()
    ins = srv.put_instructor()
    path = f"/api/v1/instructors/{ins}/availability?from={day(3).date()}&to={day(9).date()}"
    ask = _get(path, f"Authorization: Bearer {srv.admin()}\r\n")
    with srv.client() as c:
        whole = expect_ok(c.get(path, token=srv.admin()), 200)
    check(len(json.dumps(whole)) > 40000, "a 7-day reply of a 24/7 instructor is tens of kilobytes")
    with srv.raw(rcvbuf=4096) as rc:
        rc.send(ask * 100)
        time.sleep(0.5)  # the server has written what fits and queued the rest
        for i in range(100):
            r = rc.read_response("GET", f"availability #{i}")
            eq(r.status, 200, f"status of pipelined reply #{i}")
            eq(r.json.get("data"), whole, f"body of pipelined reply #{i}")


def test_pipelined_mixed_statuses_in_order():
    srv = shared()
    with srv.raw() as rc:
        rc.send(_get("/livez") + _get("/no-such-route") + _get("/healthz"))
        got = [rc.read_response("GET", f"pipelined #{i}").status for i in range(3)]
    eq(got, [200, 404, 200], "statuses of three pipelined requests, in order")


def test_content_length_with_transfer_encoding_is_400():
    srv = shared()
    body = b'{"a":1}'
    req = (b"POST /api/v1/bookings HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body)) + b"7\r\n" + body + b"\r\n0\r\n\r\n"
    with srv.raw() as rc:
        rc.send(req)
        r = rc.read_response("POST", "/api/v1/bookings (CL+TE)")
    eq(r.status, 400, f"status of {r}")


def test_404_json_envelope():
    srv = shared()
    with srv.raw() as rc:
        rc.send(_get("/definitely/not/here"))
        r = rc.read_response("GET", "/definitely/not/here")
    expect_error(r, 404, "not_found")


def test_405_with_allow_header():
    srv = shared()
    with srv.raw() as rc:
        rc.send(b"DELETE /api/v1/bookings HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer " +
                srv.admin().encode() + b"\r\n\r\n")
        r = rc.read_response("DELETE", "/api/v1/bookings")
    expect_error(r, 405, "method_not_allowed")
    check("POST" in (r.header("allow") or ""), f"Allow header: {r}")


def test_garbage_request_is_400_and_server_survives():
    srv = shared()
    with srv.raw() as rc:
        rc.send(b"\x00\x01\x02 HELLO \xff\xfe\r\n\r\n")
        try:
            r = rc.read_response("???", "garbage")
            eq(r.status, 400, f"status of {r}")
        except AssertionError as e:
            # Closing the connection without a reply is acceptable for garbage.
            check("connection ended" in str(e), str(e))
    with srv.raw() as rc:
        rc.send(_get("/livez"))
        eq(rc.read_response("GET", "/livez").status, 200, "/livez after garbage")


def test_chunked_request_body_accepted():
    srv = shared()
    ins = srv.put_instructor()
    student = uid("stu")
    body = json.dumps(srv.booking_body(ins, *slot(7, 10), student=student)).encode()
    chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:])
    req = (b"POST /api/v1/bookings HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
           b"Authorization: Bearer " + srv.token(student, "student").encode() +
           b"\r\nTransfer-Encoding: chunked\r\n\r\n") + chunks
    with srv.raw() as rc:
        rc.send(req)
        r = rc.read_response("POST", "/api/v1/bookings (chunked)")
    eq(r.status, 201, f"status of {r}")


def test_connection_close_is_honoured():
    srv = shared()
    with srv.raw() as rc:
        rc.send(_get("/livez", "Connection: close\r\n"))
        eq(rc.read_response("GET", "/livez").status, 200, "reply")
        check(rc.peer_closed(3), "server kept the connection open after Connection: close")
