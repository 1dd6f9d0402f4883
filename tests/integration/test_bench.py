"""slotbench (bench/, issue 5) against a real slotlockd: short runs of each
scenario must complete with a passing audit whose numbers agree with what
Postgres holds, and the audit must fail when a confirmed booking really is
missing. slotbench is found next to the slotlockd under test
(<build>/bench/slotbench)."""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from urllib.parse import urlparse

from harness import (Server, WORKDIR, check, eq, fail, psql, redis_cli, slotlockd_path, timeout, touch)

BENCH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")
sys.path.insert(0, BENCH_DIR)
from cpu_watch import cost_of  # noqa: E402

_srv = None


def setup_module():
    global _srv
    _srv = Server(name="bench")
    try:
        _srv.start()
    except BaseException:
        _srv._kill()
        _srv = None
        raise


def teardown_module():
    if _srv is not None:
        _srv.stop_checked()


def server():
    if _srv is None:
        fail("the bench test server did not start")
    touch(_srv)
    return _srv


def slotbench_path():
    path = os.path.join(os.path.dirname(slotlockd_path()), "bench", "slotbench")
    check(os.path.isfile(path) and os.access(path, os.X_OK), f"slotbench not built at {path}")
    return path


def run_bench(*args, env_extra=None, bound=120):
    """Runs slotbench with the server's secrets and services; returns (exit code, JSON doc or None, output)."""
    srv = server()
    senv = srv.env()
    env = dict(os.environ)
    env.update(JWT_SECRET=srv.jwt_secret, PAYMENT_WEBHOOK_SECRET=srv.webhook_secret, REDIS_URL=senv["REDIS_URL"],
               DATABASE_URL=senv["DATABASE_URL"])
    env.update(env_extra or {})
    json_path = os.path.join(WORKDIR, f"slotbench-{secrets.token_hex(4)}.json")
    cmd = [slotbench_path(), *args, "--json", json_path, "-q"]
    if args and args[0] != "audit":
        cmd += ["--url", f"http://127.0.0.1:{srv.port}"]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=bound)
    except subprocess.TimeoutExpired:
        fail(f"`slotbench {' '.join(args)}` did not finish within {bound} s")
    output = f"$ {' '.join(cmd)}\nexit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr[-3000:]}"
    doc = None
    if os.path.exists(json_path):
        with open(json_path) as f:
            doc = json.load(f)
    return p.returncode, doc, output


def run_ok(*args, audited=True, **kw):
    rc, doc, output = run_bench(*args, **kw)
    check(rc == 0, f"slotbench should exit 0:\n{output}")
    check(doc is not None, f"no JSON report written:\n{output}")
    check(doc["audit"]["passed"] is True and doc["audit"]["ran"] is audited, f"audit did not pass:\n{output}")
    return doc, output


def pg_active(prefix):
    """paid/confirmed bookings in Postgres of the instructors of one run."""
    return int(psql(f"SELECT count(*) FROM bookings WHERE starts_with(instructor_id, '{prefix}') "
                    f"AND status IN ('paid', 'confirmed')"))


def run_id():
    return secrets.token_hex(4)  # 8 hex digits: slotbench's ids are then uuids


@timeout(120)
def test_burst_has_exactly_one_winner_per_slot():
    rid = run_id()
    doc, output = run_ok("burst", "--requests", "300", "--connections", "50", "--slots", "5", "--run-id", rid)
    eq(doc["scenario"], "burst", "scenario")
    eq(doc["target"], "slotlock", "target")
    eq(doc["connections"], 50, "connections")
    eq(doc["requests"], 300, f"requests answered\n{output}")
    eq(doc["errors"], 0, f"errors\n{output}")
    eq(doc["successes"], 5, f"201 replies\n{output}")
    eq(doc["status"], {"201": 5, "409": 295}, f"replies by status\n{output}")
    audit = doc["audit"]
    eq(audit["winners"], [1, 1, 1, 1, 1], "winners per hot slot")
    eq(audit["double_bookings"], 0, "double bookings")
    eq(audit["confirmed_missing"], 0, "confirmed missing")
    eq(audit["confirmed_checked"], 5, "every winner paid and was checked")
    eq(doc["followup"], {"requests": 5, "ok": 5, "failed": 0}, "payments of the winners")
    # Independently of slotbench: Postgres has exactly the 5 paid winners of this run.
    eq(pg_active(f"{rid}-"), 5, "confirmed rows of the run in Postgres")
    lat = doc["latency_us"]
    check(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"], f"latency percentiles: {lat}")
    check(doc["seconds"] > 0 and doc["requests_per_s"] > 0, f"rates: {doc}")


def winners_students(prefix):
    return psql(f"SELECT count(DISTINCT student_id) || '/' || count(*) FROM bookings "
                f"WHERE starts_with(instructor_id, '{prefix}') AND status IN ('paid', 'confirmed')")


@timeout(120)
def test_burst_users_are_the_clients_that_click_again():
    # Two students make all 200 attempts: the 5 paid winners are among them.
    rid = run_id()
    doc, output = run_ok("burst", "--requests", "200", "--connections", "20", "--slots", "5", "--users", "2",
                         "--run-id", rid)
    eq(doc["users"], 2, "users in the report")
    eq(doc["audit"]["winners"], [1, 1, 1, 1, 1], f"winners per hot slot\n{output}")
    distinct, paid = map(int, winners_students(f"{rid}-").split("/"))
    eq(paid, 5, "paid winners in Postgres")
    check(1 <= distinct <= 2, f"winners came from the 2 clicking students, not {distinct}")
    # --users 0: every attempt is a new student, so each winner is a different one.
    rid = run_id()
    doc, output = run_ok("burst", "--requests", "200", "--connections", "20", "--slots", "5", "--users", "0",
                         "--run-id", rid)
    eq(doc["users"], 0, "users in the report")
    eq(winners_students(f"{rid}-"), "5/5", "five winners, five students")


@timeout(120)
def test_steady_confirms_cancels_and_expiries_audited():
    rid = run_id()
    doc, output = run_ok("steady", "--duration", "2", "--requests", "4000", "--connections", "16", "--instructors",
                         "20", "--expire-hold-seconds", "2", "--run-id", rid)
    check(doc["requests"] > 0 and doc["errors"] == 0, f"steady run:\n{output}")
    # Far-apart free slots and a fresh student per hold: every hold is granted.
    eq(doc["status"], {"201": doc["requests"]}, f"replies by status\n{output}")
    eq(doc["successes"], doc["requests"], "successes are the 201s")
    audit = doc["audit"]
    check(audit["confirmed_checked"] > 0, f"some holds were confirmed:\n{output}")
    check(audit["expire_checked"] > 0, f"some holds were left to expire and checked:\n{output}")
    eq(audit["leaked_holds"], 0, "leaked holds")
    eq(doc["followup"]["failed"], 0, f"confirms and cancels\n{output}")
    eq(pg_active(f"{rid}-"), audit["confirmed_checked"], "confirmed rows of the run in Postgres")


@timeout(120)
def test_mixed_passes_its_audit():
    rid = run_id()
    doc, output = run_ok("mixed", "--duration", "2", "--requests", "1500", "--connections", "16", "--instructors",
                         "10", "--run-id", rid)
    check(doc["errors"] == 0, f"mixed run:\n{output}")
    status = doc["status"]
    check(status.get("200", 0) > status.get("201", 0) > 0, f"availability-heavy with some holds: {status}")
    check(set(status) <= {"200", "201"}, f"only 200 and 201 expected: {status}")
    eq(pg_active(f"{rid}-"), doc["audit"]["confirmed_checked"], "confirmed rows of the run in Postgres")


@timeout(120)
def test_hot_reject_is_all_409():
    doc, output = run_ok("hot-reject", "--requests", "600", "--connections", "16", "--slots", "3")
    eq(doc["status"], {"409": 600}, f"replies by status\n{output}")
    eq(doc["successes"], 600, "successes are the 409s")
    eq(doc["audit"]["winners"], [0, 0, 0], "no new winner on a taken slot")
    eq(doc["audit"]["confirmed_checked"], 3, "the setup's paid holds are checked")


@timeout(60)
def test_livez():
    doc, output = run_ok("livez", "--requests", "2000", "--connections", "8", audited=False)
    eq(doc["status"], {"200": 2000}, f"replies\n{output}")


@timeout(60)
def test_rate_mode_survives_the_server_closing_idle_connections():
    """In rate mode the schedule keeps picking the same few connections; the server closes the others once
    their request timeout passes, and slotbench connects them again. It used to push each one onto its ready
    stack a second time and overflow it (a heap corruption that aborted at the end of the run)."""
    srv = Server(name="bench-short-timeout", env={"REQUEST_TIMEOUT_MS": "300"})  # livez: no credentials
    with srv:
        json_path = os.path.join(WORKDIR, f"slotbench-{secrets.token_hex(4)}.json")
        cmd = [slotbench_path(), "livez", "--url", f"http://127.0.0.1:{srv.port}", "--rate", "100", "--connections",
               "16", "--requests", "250", "-q", "--json", json_path]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        eq(p.returncode, 0, f"exit code (stderr {p.stderr[-2000:]!r})")
        with open(json_path) as f:
            doc = json.load(f)
    status = doc["status"]
    eq(status.get("200", 0) + doc["errors"], 250, f"every request answered or counted as failed: {doc}")
    check(status.get("200", 0) >= 240, f"nearly every request answered: {status}, errors {doc['errors']}")


@timeout(60)
def test_availability_asks_and_changes_nothing():
    rid = run_id()
    doc, output = run_ok("availability", "--requests", "400", "--connections", "8", "--instructors", "3", "--run-id",
                         rid, audited=False)
    eq(doc["status"], {"200": 400}, f"replies\n{output}")
    eq(doc["successes"], 400, "successes are the 200s")
    held = redis_cli("--scan", "--pattern", f"slk:{{{rid}-*}}:u:*").split()
    eq(held, [], "units taken by a run that only asks")


@timeout(120)
def test_audit_fails_when_a_confirmation_is_missing():
    rid = run_id()
    prefix = f"{rid}-"
    confirmed = os.path.join(WORKDIR, f"confirmed-{rid}.txt")
    run_ok("burst", "--requests", "200", "--connections", "20", "--slots", "3", "--run-id", rid,
           "--confirmed-out", confirmed)
    with open(confirmed) as f:
        uuids = [line.strip() for line in f if line.strip()]
    eq(len(uuids), 3, "confirmed uuids written")
    # Re-auditing the untouched run passes.
    doc, output = run_ok("audit", "--instructor-prefix", prefix, "--confirmed", confirmed)
    eq(doc["audit"]["confirmed_checked"], 3, "confirmed checked")
    # A confirmed booking that vanished from Postgres is exactly what the audit exists to catch.
    psql(f"DELETE FROM bookings WHERE uuid = '{uuids[1]}'")
    rc, doc, output = run_bench("audit", "--instructor-prefix", prefix, "--confirmed", confirmed)
    eq(rc, 1, f"exit code of a failed audit\n{output}")
    check(doc is not None, f"no JSON report:\n{output}")
    eq(doc["audit"]["passed"], False, "audit verdict")
    eq(doc["audit"]["confirmed_missing"], 1, "confirmed missing")
    check("missing" in doc["audit"]["failure"], f"failure reason: {doc['audit']['failure']!r}")


def test_usage_errors_exit_2():
    path = slotbench_path()
    for args in (["nosuch"], ["burst", "--requests", "0"], ["burst", "--users", "-1"], ["burst", "--bogus"], [],
                 ["steady", "--baseline", "pg-rowlock"], ["burst", "--url", "ftp://x"], ["audit"],
                 ["steady", "--users", "3"], ["burst", "--baseline", "pg-rowlock", "--users", "3"]):
        p = subprocess.run([path, *args], capture_output=True, text=True, timeout=20,
                           env=dict(os.environ, JWT_SECRET="x", PAYMENT_WEBHOOK_SECRET="y",
                                    DATABASE_URL="postgresql://127.0.0.1:1/none", REDIS_URL="redis://127.0.0.1:1"))
        eq(p.returncode, 2, f"exit code of slotbench {args} (stderr {p.stderr!r})")
        check(p.stderr.strip() != "", f"slotbench {args} says why on stderr")
    p = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=20)
    eq(p.returncode, 0, "--help exit code")
    for word in ("burst", "steady", "mixed", "hot-reject", "livez", "availability", "--rate", "--json", "--plot",
                 "--baseline", "JWT_SECRET", "PAYMENT_WEBHOOK_SECRET"):
        check(word in p.stdout, f"--help mentions {word}")


def sample(t, cpu, n):
    return {"t": t, "cpu": {"redis": cpu, "slotlockd": 2 * cpu}, "n": {"granted": n}}


def test_cpu_cost_counts_only_the_seconds_the_work_moved():
    """bench/compare's per-hold CPU: set-up before the first hold and follow-up after the last are left out."""
    samples = [sample(0, 0.0, 0), sample(1, 0.9, 0)]  # set-up: CPU but no holds
    # The run: 1,000 holds a second, 0.2 CPU-seconds of Redis a second (200 us a hold).
    samples += [sample(1 + i, 0.9 + 0.2 * i, 1000 * i) for i in range(1, 6)]
    samples += [sample(7, 2.5, 5000), sample(8, 3.5, 5000)]  # follow-up and audit: CPU, no new holds
    c = cost_of(samples, "granted")
    check(c is not None, "a cost for five seconds of holds")
    eq(c["units"], 3000, "holds inside the window (whole intervals only)")
    check(abs(c["us_per_unit"]["redis"] - 200.0) < 1e-6, f"Redis us per hold: {c}")
    check(abs(c["us_per_unit"]["slotlockd"] - 400.0) < 1e-6, f"slotlockd us per hold: {c}")
    check(abs(c["busy"]["redis"] - 0.2) < 1e-9 and abs(c["units_per_s"] - 1000) < 1e-9, f"rates: {c}")
    eq(cost_of(samples[:3], "granted"), None, "no cost from under two intervals of work")
    eq(cost_of([sample(i, i, 0) for i in range(5)], "granted"), None, "no cost when nothing was done")
    eq(cost_of([{"t": 0, "cpu": {}, "n": {}}], "granted"), None, "no cost without the counter")
    # A failed scrape (no counters) in the middle is skipped, not read as a restart from zero.
    gap = samples[:4] + [{"t": 3.5, "cpu": {"redis": 9.0, "slotlockd": 9.0}, "n": {}}] + samples[4:]
    eq(cost_of(gap, "granted"), c, "a sample without counters changes nothing")


@timeout(90)
def test_cpu_watch_charges_livez_answers_to_slotlockd():
    srv = server()
    redis_pid = int(re.search(r"process_id:(\d+)", redis_cli("INFO", "server")).group(1))
    data_dir = psql("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
    with open(os.path.join(data_dir, "postmaster.pid")) as f:
        pg_pid = int(f.readline())
    out = os.path.join(WORKDIR, f"cpu-{secrets.token_hex(4)}.jsonl")
    watch = subprocess.Popen([sys.executable, os.path.join(BENCH_DIR, "cpu_watch.py"), out, "--redis-pid",
                              str(redis_pid), "--redis-port", str(urlparse(srv.env()["REDIS_URL"]).port),
                              "--slotlockd-pid", str(srv.proc.pid), "--pg-pid", str(pg_pid), "--metrics",
                              f"http://127.0.0.1:{srv.port}/metrics", "--interval", "0.1"])
    try:
        time.sleep(0.5)
        run_ok("livez", "--requests", "100000000", "--duration", "3", "--connections", "8", audited=False)
        time.sleep(0.5)
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.wait(10)
    with open(out) as f:
        samples = [json.loads(line) for line in f]
    check(len(samples) >= 10, f"samples every 0.1 s over 4 s: {len(samples)}")
    c = cost_of(samples, "livez")
    check(c is not None, f"a cost for the /livez run: {samples[:3]} ... {samples[-3:]}")
    check(c["units"] > 1000 and c["units_per_s"] > 300, f"/livez answers counted: {c}")
    # slotlockd answered them: it used CPU for each; Redis and PostgreSQL did next to nothing per answer.
    check(0 < c["us_per_unit"]["slotlockd"] < 10000, f"slotlockd CPU per /livez answer: {c}")
    check(c["busy"]["slotlockd"] > 0.05, f"slotlockd was busy: {c}")
    check(c["us_per_unit"]["slotbench"] > 0, f"the load generator's CPU is counted: {c}")
    check(c["us_per_unit"]["redis"] < c["us_per_unit"]["slotlockd"], f"Redis is not charged the answers: {c}")
    # All requests answered (mixed's unit) count the /livez answers too, and the scrapes besides.
    every = cost_of(samples, "requests")
    check(every is not None and every["units"] >= c["units"], f"requests counted with every route: {every} vs {c}")
