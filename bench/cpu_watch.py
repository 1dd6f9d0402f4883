#!/usr/bin/env python3
"""cpu_watch.py: what one unit of work costs each process of a bench/compare run.

    cpu_watch.py OUT --redis-pid P --redis-port N --slotlockd-pid P --pg-pid P --metrics URL

Twice a second until SIGTERM, appends one JSON line to OUT: the CPU seconds
that Redis, slotlockd, PostgreSQL (the postmaster and its children),
slotbench and redis-benchmark have used so far (utime + stime of every
thread, from /proc), and the counters of the work done so far (holds granted
and refused from slotlockd's /metrics, /livez answers, all requests answered, Redis' EVALSHA calls).
bench/compare divides the CPU used by the work done over the seconds in which
the work counter moved (cost_of below), so set-up, follow-up and audit are
left out.
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import time
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")
COUNTERS = {
    "granted": re.compile(r'^slotlock_holds_total\{outcome="granted"\} (\d+)', re.M),
    "taken": re.compile(r'^slotlock_holds_total\{outcome="taken"\} (\d+)', re.M),
    "livez": re.compile(r'^slotlock_http_requests_total\{route="livez",status="200"\} (\d+)', re.M),
}
# Every request answered, whatever its route and status (mixed's unit of work).
REQUESTS = re.compile(r'^slotlock_http_requests_total\{[^}]*\} (\d+)', re.M)


def proc_stats():
    """(pid, comm, ppid, cpu seconds) of every process."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                text = f.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        # fields[0] is state (stat field 3): ppid is field 4, utime 14, stime 15.
        yield int(pid), comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def cpu_by_role(a):
    """CPU seconds per role. A process that exits takes its CPU with it: PostgreSQL's backends are long-lived
    here (slotlockd's pool), and cost_of only reads windows in which the work kept moving."""
    cpu = {"redis": 0.0, "slotlockd": 0.0, "postgres": 0.0, "slotbench": 0.0, "redis-benchmark": 0.0}
    for pid, comm, ppid, seconds in proc_stats():
        if pid == a.redis_pid:
            cpu["redis"] += seconds
        elif pid == a.slotlockd_pid:
            cpu["slotlockd"] += seconds
        elif pid == a.pg_pid or ppid == a.pg_pid:
            cpu["postgres"] += seconds
        elif comm in ("slotbench", "redis-benchmark"):
            cpu[comm] += seconds
    return cpu


def metrics(url):
    """The work counters; a series /metrics does not list yet has counted nothing. {} when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            text = r.read().decode()
    except (OSError, http.client.HTTPException, ValueError):
        return {}
    out = {}
    for name, pattern in COUNTERS.items():
        m = pattern.search(text)
        out[name] = int(m.group(1)) if m else 0
    out["requests"] = sum(int(n) for n in REQUESTS.findall(text))
    return out


def evalsha_calls(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"INFO commandstats\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                m = re.match(rb"\$(\d+)\r\n", data)
                if m and len(data) >= m.end() + int(m.group(1)):
                    break
    except OSError:
        return None
    m = re.search(rb"cmdstat_evalsha:calls=(\d+)", data)
    return int(m.group(1)) if m else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--redis-pid", type=int, required=True)
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--slotlockd-pid", type=int, required=True)
    p.add_argument("--pg-pid", type=int, required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--interval", type=float, default=0.5)
    a = p.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(a.out, "a") as out:
        while not stop:
            n = metrics(a.metrics)
            calls = evalsha_calls(a.redis_port)
            if calls is not None:
                n["evalsha"] = calls
            sample = {"t": time.monotonic(), "cpu": cpu_by_role(a), "n": n}
            out.write(json.dumps(sample) + "\n")
            out.flush()
            time.sleep(a.interval)


def cost_of(samples, counter):
    """CPU seconds per unit of `counter`, per process, over the samples in which the counter kept moving.

    The window starts at the first sample where the counter had moved and ends at the last one before it
    reached its final value, so it holds only whole intervals of work. Samples without the counter (a
    scrape that failed) are skipped. None when the window spans under two intervals."""
    samples = [s for s in samples if s["n"].get(counter) is not None]
    vals = [s["n"][counter] for s in samples]
    if not vals:
        return None
    first = next((i for i, v in enumerate(vals) if v > vals[0]), None)
    last = next((i for i, v in enumerate(vals) if v == vals[-1]), None) - 1
    if first is None or last - first < 2 or vals[last] <= vals[first]:
        return None
    a, b = samples[first], samples[last]
    units = vals[last] - vals[first]
    seconds = b["t"] - a["t"]
    return {
        "units": units,
        "seconds": seconds,
        "units_per_s": units / seconds,
        "us_per_unit": {k: (b["cpu"][k] - a["cpu"][k]) * 1e6 / units for k in a["cpu"]},
        "busy": {k: (b["cpu"][k] - a["cpu"][k]) / seconds for k in a["cpu"]},
    }


if __name__ == "__main__":
    main()
