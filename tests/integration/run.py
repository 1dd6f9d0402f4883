#!/usr/bin/env python3
"""Runs the slotlock integration tests.

    python3 tests/integration/run.py --slotlockd build/slotlockd [-k PATTERN]

Needs REDIS_URL and DATABASE_URL pointing at a throw-away Redis and
PostgreSQL. Tests are the test_* functions of tests/integration/test_*.py,
run in file and definition order, each in a thread with a time limit. A
module may define setup_module()/teardown_module(). Prints each test with
ok/FAIL, and as its last line "N passed, N failed"; exits 0 only when
nothing failed.
"""

import argparse
import fnmatch
import glob
import importlib
import os
import signal
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

DEFAULT_TIMEOUT_S = 30.0


def out(line=""):
    print(line, flush=True)


def indent(text, prefix="    "):
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def matches(name, patterns):
    if not patterns:
        return True
    for p in patterns:
        if any(ch in p for ch in "*?["):
            if fnmatch.fnmatch(name, p) or fnmatch.fnmatch(name, f"*{p}*"):
                return True
        elif p in name:
            return True
    return False


def run_with_timeout(fn, limit):
    """Runs fn in a daemon thread. Returns (error_text or None)."""
    result = {}

    def body():
        try:
            fn()
        except BaseException:  # report everything, including SystemExit from a test
            result["error"] = traceback.format_exc()

    th = threading.Thread(target=body, daemon=True)
    th.start()
    th.join(limit)
    if th.is_alive():
        return f"timed out after {limit} s (the test thread was abandoned)"
    return result.get("error")


def discover(patterns):
    """[(module_name, module or import error text, [(test_name, fn)])]"""
    found = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        modname = os.path.splitext(os.path.basename(path))[0]
        try:
            mod = importlib.import_module(modname)
        except BaseException:
            err = traceback.format_exc()
            name = f"{modname}::<import>"
            if matches(name, patterns) or matches(modname, patterns):
                found.append((modname, err, [(name, None)]))
            continue
        tests = [
            (f"{modname}::{k}", v)
            for k, v in vars(mod).items()
            if k.startswith("test_") and callable(v) and getattr(v, "__module__", None) == modname
        ]
        tests = [(n, f) for n, f in tests if matches(n, patterns)]
        if tests:
            found.append((modname, mod, tests))
    return found


def report_failure(name, err, elapsed):
    out(f"{name} ... FAIL ({elapsed:.1f}s)")
    out(indent(err))
    for srv in harness.touched_servers():
        if f"--- {srv.name} log tail" not in err:
            out(indent(srv.log_tail(30)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slotlockd", required=True, help="path of the slotlockd binary")
    ap.add_argument("-k", action="append", default=[], metavar="PATTERN",
                    help="run tests whose 'module::name' contains PATTERN (or matches a glob); repeatable")
    ap.add_argument("--list", action="store_true", help="list the selected tests and exit")
    args = ap.parse_args()

    harness.SLOTLOCKD = os.path.abspath(args.slotlockd)
    for var in ("REDIS_URL", "DATABASE_URL"):
        if not os.environ.get(var):
            out(f"warning: {var} is not set; tests that need it will fail")

    suite = discover(args.k)
    if args.list:
        for _, _, tests in suite:
            for name, _ in tests:
                out(name)
        return 0

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # Leave no server or redis-server behind when we are told to stop.
    signal.signal(signal.SIGTERM, on_sigterm)

    passed = failed = 0
    t_start = time.monotonic()
    try:
        for modname, mod, tests in suite:
            if isinstance(mod, str):  # import error
                report_failure(tests[0][0], mod, 0.0)
                failed += 1
                continue
            setup_err = None
            setup = getattr(mod, "setup_module", None)
            if setup is not None:
                harness.reset_touched()
                setup_err = run_with_timeout(setup, 120)
            for name, fn in tests:
                harness.reset_touched()
                t0 = time.monotonic()
                if setup_err is not None:
                    err = f"setup_module failed:\n{setup_err}"
                else:
                    err = run_with_timeout(fn, getattr(fn, "timeout", DEFAULT_TIMEOUT_S))
                elapsed = time.monotonic() - t0
                if err is None:
                    out(f"{name} ... ok ({elapsed:.1f}s)")
                    passed += 1
                else:
                    report_failure(name, err, elapsed)
                    failed += 1
            teardown = getattr(mod, "teardown_module", None)
            if teardown is not None:
                harness.reset_touched()
                t0 = time.monotonic()
                err = run_with_timeout(teardown, 60)
                if err is not None:
                    report_failure(f"{modname}::<teardown_module>", err, time.monotonic() - t0)
                    failed += 1
        # The shared server must shut down cleanly too (ASan leak reports
        # show up as a non-zero exit code).
        harness.reset_touched()
        t0 = time.monotonic()
        verdict = harness.shutdown_shared()
        if verdict is not None:
            name = "shared_server::sigterm_exit_0"
            if verdict == "":
                out(f"{name} ... ok ({time.monotonic() - t0:.1f}s)")
                passed += 1
            else:
                out(f"{name} ... FAIL ({time.monotonic() - t0:.1f}s)")
                out(indent(verdict))
                failed += 1
    except KeyboardInterrupt as e:
        out(f"interrupted ({e or 'SIGINT'}); stopping the servers started")
        failed += 1
    finally:
        harness.kill_leftovers()

    if passed + failed == 0:
        out("no tests selected")
        failed_exit = True
    else:
        failed_exit = failed > 0
    out(f"(suite took {time.monotonic() - t_start:.1f}s; logs in {harness.WORKDIR})")
    out(f"{passed} passed, {failed} failed")
    return 1 if failed_exit else 0


if __name__ == "__main__":
    sys.exit(main())
