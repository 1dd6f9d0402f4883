"""Availability checked against a reference model (R-AVAIL, R-HOLD, R-PAY, R-CANCEL, blocks).

A seeded random sequence of holds, confirmations, cancels, failed payments,
expiries, late payments, blocks and unblocks is applied to one fresh
instructor. The test keeps its own tiny model of the instructor's time (which
grid unit is held, booked or blocked, and until when) and after every step
compares with the server:

- whether each hold / block attempt was accepted (201) or refused (409);
- the availability reply (free 60-minute starts) for the two days used,
  exactly and in order;
- the include_held reply: every candidate start with its state
  (free / held / booked / blocked) and, for held slots, hold_expires_at.

The model is deliberately naive (a dict of units, recomputed from the
operations and the clock) so that it is obviously right:

- time is a grid of 15-minute units in UTC (the instructor's zone is UTC);
- a hold or booking of [start, end) occupies the units of
  [start - buffer, end + buffer); a hold stops occupying them when now >=
  hold_expires_at, on cancel, on a failed payment; a succeeded payment makes
  them booked until the booking is cancelled;
- a late payment (hold already expired) confirms when all of the hold's units
  are still free, else 409 hold_expired;
- a block occupies every unit overlapping [start, end) (no buffer), all
  blocks of one request or none;
- a 60-minute start is offered when [start, start + 60) lies inside the
  weekly window (08:00-14:00 every day) and every unit of
  [start - buffer, start + 60 + buffer) is free.

Expiry is real time: holds last HOLD_SECONDS. The model decides "expired" by
now >= hold_expires_at as the server reported it; to stay clear of clock
skew between the test's clock sample and the server's, nothing is asked
while an expiry is within MARGIN_S of the moment (the test sleeps past it);
an availability query that straddled an expiry anyway is asked again, and a
hold / block / late payment that did is judged against the model both before
and after it. In a mixed slot (booked and blocked units) either state is
accepted: which one wins is not part of the contract.

Reproduce a failure with the seed it prints (the same choices; the timing is
real time, so expiries may land a step apart):
    MODEL_SEED=<seed> python3 tests/integration/run.py --slotlockd build/slotlockd -k model
MODEL_VERBOSE=1 prints what each run exercised.
"""

import datetime as dt
import json
import os
import random
import time

from harness import (DAYS, check, eq, expect_error, expect_ok, fail, iso, parse_ts, shared, timeout, uid,
                     utcnow)

GRID = 15  # minutes per unit
WINDOW = (8 * 60, 14 * 60)  # every day 08:00-14:00 UTC, minutes of the day
DURATION = 60  # the availability query's slot length
HOLD_SECONDS = 3
MARGIN_S = 0.5  # no state-dependent question is asked within this of an expiry
STEPS = 60
SLEEP_BUDGET_S = 13.0  # bounded real waiting per test (expiries and settling)

# Relative weights of the random operations.
OPS = {
    "hold": 34,
    "confirm": 14,
    "cancel": 9,
    "fail_payment": 6,
    "wait_expiry": 6,
    "late_payment": 5,
    "cancel_expired": 3,
    "block": 14,
    "unblock": 10,
}


def _minute(t):
    """Minutes since the epoch of an aware datetime (the unit key's number)."""
    return int(t.timestamp()) // 60


def _ts(minute):
    return iso(dt.datetime.fromtimestamp(minute * 60, dt.timezone.utc))


def _hhmm(minute):
    return f"{minute // 60 % 24:02}:{minute % 60:02}"


class Booking:
    """A hold as the model sees it: state 'held' (live until expires), 'booked' or 'gone'."""

    def __init__(self, uuid, student, start, end, units, expires):
        self.uuid = uuid
        self.student = student
        self.start, self.end = start, end  # minutes since the epoch
        self.units = units  # frozenset of unit minutes, buffer included
        self.expires = expires  # unix seconds (float), from hold_expires_at
        self.state = "held"

    def live_hold(self, now):
        return self.state == "held" and now < self.expires

    def expired_hold(self, now):
        return self.state == "held" and now >= self.expires

    def __repr__(self):
        return f"{self.uuid[:8]} {_hhmm(self.start)}-{_hhmm(self.end)} {self.state}"


class Model:
    """The reference: which unit is taken by what, at a given instant."""

    def __init__(self, buffer, days):
        self.buffer = buffer
        self.days = days  # midnights (minutes since the epoch) of the days used
        self.bookings = []
        self.blocks = {}  # block uuid -> frozenset of unit minutes

    # -- units

    def hold_units(self, start, end):
        return frozenset(range(start - self.buffer, end + self.buffer, GRID))

    @staticmethod
    def block_units(start, end):
        """Every grid unit overlapping [start, end) (minutes; the edges need not be on the grid)."""
        return frozenset(range(start // GRID * GRID, end, GRID))

    def occupancy(self, now):
        """unit -> ('held', expires) | ('booked', None) | ('blocked', None)."""
        occ = {}

        def put(u, what):
            check(u not in occ, f"model bug: unit {_ts(u)} taken twice ({occ.get(u)} and {what})")
            occ[u] = what

        for b in self.bookings:
            if b.live_hold(now):
                for u in b.units:
                    put(u, ("held", b.expires))
            elif b.state == "booked":
                for u in b.units:
                    put(u, ("booked", None))
        for units in self.blocks.values():
            for u in units:
                put(u, ("blocked", None))
        return occ

    def taken(self, units, now):
        occ = self.occupancy(now)
        return sorted(u for u in units if u in occ)

    # -- availability

    def candidate_starts(self):
        for midnight in self.days:
            for s in range(midnight + WINDOW[0], midnight + WINDOW[1] - DURATION + 1, GRID):
                yield s

    def slot_state(self, s, occ):
        """(set of acceptable states, hold expiry or None) of the slot starting at s.

        The order between 'booked' and 'blocked' when a slot meets both is not
        part of the contract, so either is accepted then."""
        found = [occ[u] for u in range(s - self.buffer, s + DURATION + self.buffer, GRID) if u in occ]
        hard = {kind for kind, _ in found if kind != "held"}
        if hard:
            return hard, None
        if found:
            return {"held"}, max(exp for _, exp in found)
        return {"free"}, None

    def expected(self, now):
        occ = self.occupancy(now)
        return [(s, *self.slot_state(s, occ)) for s in self.candidate_starts()]

    def free_starts(self, now):
        return [s for s, states, _ in self.expected(now) if states == {"free"}]

    # -- expiry timing

    def expiries(self):
        return [b.expires for b in self.bookings if b.state == "held"]

    def quiet(self, t0, t1):
        """True when no hold expires within MARGIN_S of [t0, t1]: the model's answer is the same throughout."""
        return not any(t0 - MARGIN_S <= e <= t1 + MARGIN_S for e in self.expiries())


class Run:
    """One random run against one fresh instructor on the shared server."""

    def __init__(self, buffer):
        self.seed = int(os.environ.get("MODEL_SEED") or random.SystemRandom().randrange(1 << 32))
        self.rnd = random.Random(self.seed)
        self.srv = shared()
        self.client = self.srv.client()
        self.ins = self.srv.put_instructor(
            timezone="UTC", granularity_minutes=GRID, buffer_minutes=buffer, hold_seconds=HOLD_SECONDS,
            weekly=[{"day": d, "start": _hhmm(WINDOW[0]), "end": _hhmm(WINDOW[1])} for d in DAYS],
            client=self.client)
        first = utcnow().date() + dt.timedelta(days=7)
        self.dates = [first, first + dt.timedelta(days=1)]
        self.model = Model(buffer, [_minute(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc))
                                    for d in self.dates])
        self.slept = 0.0
        self.log = []  # what each step did, for the failure message
        self.counts = {}  # op -> outcomes, a sanity check that the run exercised things

    # -- plumbing

    def sleep_until(self, t):
        delay = t - time.time()
        if delay > 0:
            time.sleep(delay)
            self.slept += delay

    def settle(self):
        """Waits until no hold expires within MARGIN_S of now."""
        while True:
            now = time.time()
            close = [e for e in self.model.expiries() if now - MARGIN_S <= e <= now + MARGIN_S]
            if not close:
                return
            self.sleep_until(max(close) + MARGIN_S + 0.05)

    def timed(self, fn):
        t0 = time.time()
        r = fn()
        return r, t0, time.time()

    def note(self, text):
        self.log.append(text)

    def count(self, key):
        self.counts[key] = self.counts.get(key, 0) + 1

    def student_token(self, student):
        return self.srv.py_token(student, "student")

    def pick(self, items):
        return self.rnd.choice(items) if items else None

    # -- operations. Each returns False when it does not apply now (nothing to act on).

    def op_hold(self):
        m = self.model
        midnight = self.rnd.choice(m.days)
        length = self.rnd.choice((30, 60, 90))
        starts = list(range(midnight + WINDOW[0], midnight + WINDOW[1] - length + 1, GRID))
        now = time.time()
        if self.rnd.random() < 0.5:
            # Half the time aim at a start the model thinks free, so that holds keep succeeding.
            free = [s for s in starts if not m.taken(m.hold_units(s, s + length), now)]
            starts = free or starts
        start = self.rnd.choice(starts)
        end = start + length
        units = m.hold_units(start, end)
        student = uid("stu")
        body = self.srv.booking_body(self.ins, _ts(start), _ts(end), student)
        r, t0, t1 = self.timed(lambda: self.client.post("/api/v1/bookings", body, token=self.student_token(student)))
        # Accepted iff none of its units (buffer included) is taken; judged at both ends of the request.
        may_take = {not m.taken(units, t0 - MARGIN_S), not m.taken(units, t1 + MARGIN_S)}
        what = f"hold {_ts(start)}-{_hhmm(end)}"
        if r.status == 201:
            check(True in may_take, f"{what}: accepted, but the model has units taken "
                                    f"{[_ts(u) for u in m.taken(units, t0)]}: {r}")
            data = expect_ok(r, 201)
            eq(data.get("status"), "payment_required", f"{what}: status")
            expires = parse_ts(data.get("hold_expires_at"), "hold_expires_at").timestamp()
            check(t0 + HOLD_SECONDS - 1 <= expires <= t1 + HOLD_SECONDS + 1,
                  f"{what}: hold_expires_at {data.get('hold_expires_at')} is not about {HOLD_SECONDS} s from now")
            m.bookings.append(Booking(data["uuid"], student, start, end, units, expires))
            self.note(f"{what} -> 201 {data['uuid'][:8]} expires {data['hold_expires_at']}")
            self.count("hold accepted")
        else:
            check(False in may_take, f"{what}: refused, but the model has all its units "
                                     f"{_hhmm(min(units))}-{_hhmm(max(units) + GRID)} free: {r}")
            details = expect_error(r, 409, "slot_unavailable")
            # The reply names the taken range: inside the request's units, starting and ending on taken ones.
            lo = _minute(parse_ts(details.get("start_time"), "details.start_time"))
            hi = _minute(parse_ts(details.get("end_time"), "details.end_time"))
            taken = set(m.taken(units, t0)) | set(m.taken(units, t1))
            check(lo in taken and hi - GRID in taken and min(units) <= lo < hi <= max(units) + GRID,
                  f"{what}: 409 names {_ts(lo)}-{_ts(hi)}, model's taken units are "
                  f"{sorted(_hhmm(u) for u in taken)}")
            self.note(f"{what} -> 409 ({_hhmm(lo)}-{_hhmm(hi)} taken)")
            self.count("hold refused")
        return True

    def live_pick(self, states):
        """A random booking in one of states; a hold only when it has a good second left to live."""
        soon = time.time() + 2 * MARGIN_S
        return self.pick([b for b in self.model.bookings if
                          (b.state == "booked" and "booked" in states) or (b.live_hold(soon) and "held" in states)])

    def assert_still_live(self, b, t1, what):
        # The server saw the request before t1; only a request slower than live_pick's margin can get here.
        check(b.state != "held" or b.expires > t1,
              f"{what}: the request ended {t1 - b.expires:.2f} s after the hold's expiry: "
              f"too slow for the test to judge (timing margin {2 * MARGIN_S} s)")

    def op_confirm(self):
        b = self.live_pick({"held"})
        if b is None:
            return False
        r, t0, t1 = self.timed(lambda: self.srv.callback(b.uuid, "succeeded", client=self.client))
        what = f"confirm {b}"
        self.assert_still_live(b, t1, what)
        eq(expect_ok(r, 200).get("status"), "confirmed", f"{what}: status")
        b.state = "booked"
        self.note(f"{what} -> confirmed")
        self.count("confirmed")
        return True

    def op_fail_payment(self):
        b = self.live_pick({"held"})
        if b is None:
            return False
        r, t0, t1 = self.timed(lambda: self.srv.callback(b.uuid, "failed", client=self.client))
        what = f"failed payment {b}"
        self.assert_still_live(b, t1, what)
        eq(expect_ok(r, 200).get("status"), "payment_failed", f"{what}: status")
        b.state = "gone"
        self.note(f"{what} -> payment_failed")
        self.count("payment failed")
        return True

    def op_cancel(self):
        b = self.live_pick({"held", "booked"})
        if b is None:
            return False
        what = f"cancel {b}"
        r, t0, t1 = self.timed(lambda: self.srv.action(b.uuid, "cancel", self.student_token(b.student),
                                                       client=self.client))
        self.assert_still_live(b, t1, what)
        eq(expect_ok(r, 200).get("status"), "cancelled", f"{what}: status")
        self.count(f"cancelled {b.state}")
        b.state = "gone"
        self.note(f"{what} -> cancelled")
        return True

    def op_wait_expiry(self):
        now = time.time()
        b = self.pick([x for x in self.model.bookings if x.live_hold(now)])
        if b is None or self.slept + (b.expires - time.time()) + MARGIN_S > SLEEP_BUDGET_S:
            return False
        self.sleep_until(b.expires + MARGIN_S + 0.05)
        self.note(f"waited past the expiry of {b.uuid[:8]} ({_hhmm(b.start)}-{_hhmm(b.end)})")
        self.count("waited for an expiry")
        return True

    def op_late_payment(self):
        """Succeeded callback on an expired hold: confirmed if its units are still free, else hold_expired."""
        now = time.time()
        b = self.pick([x for x in self.model.bookings if x.expired_hold(now)])
        if b is None:
            return False
        m = self.model
        r, t0, t1 = self.timed(lambda: self.srv.callback(b.uuid, "succeeded", client=self.client))
        may_confirm = {not m.taken(b.units, t0 - MARGIN_S), not m.taken(b.units, t1 + MARGIN_S)}
        what = f"late payment {b}"
        if r.status == 200:
            check(True in may_confirm, f"{what}: confirmed, but its units are taken "
                                       f"{[_ts(u) for u in m.taken(b.units, t0)]}: {r}")
            eq(expect_ok(r, 200).get("status"), "confirmed", f"{what}: status")
            b.state = "booked"
            self.note(f"{what} -> confirmed (units were free)")
            self.count("late payment confirmed")
        else:
            check(False in may_confirm, f"{what}: refused, but all its units are free: {r}")
            expect_error(r, 409, "hold_expired")
            b.state = "gone"
            self.note(f"{what} -> 409 hold_expired")
            self.count("late payment refused")
        return True

    def op_cancel_expired(self):
        """Cancelling a hold that already expired is an invalid transition and changes nothing."""
        now = time.time()
        b = self.pick([x for x in self.model.bookings if x.expired_hold(now)])
        if b is None:
            return False
        r = self.srv.action(b.uuid, "cancel", self.student_token(b.student), client=self.client)
        details = expect_error(r, 409, "invalid_transition")
        eq(details.get("status"), "expired", f"cancel expired {b}: details.status")
        self.note(f"cancel expired {b} -> 409 invalid_transition")
        self.count("cancel of an expired hold refused")
        return True

    def random_block_range(self, midnight):
        # Anywhere from 07:00 to 15:00 (also outside the window: buffers reach there), on a 5-minute
        # resolution so that off-grid edges exercise "every unit overlapping the range".
        start = midnight + 7 * 60 + 5 * self.rnd.randrange(0, 8 * 12)
        end = start + 5 * self.rnd.randint(1, 24)
        return start, end

    def op_block(self):
        m = self.model
        ranges = [self.random_block_range(self.rnd.choice(m.days))]
        if self.rnd.random() < 0.5:
            # Half the time aim at a range the model thinks free, so that blocks keep succeeding.
            now = time.time()
            for _ in range(10):
                if not m.taken(m.block_units(*ranges[0]), now):
                    break
                ranges = [self.random_block_range(self.rnd.choice(m.days))]
        if self.rnd.random() < 0.3:
            # Two blocks in one request: all or nothing. Keep them on distinct units (overlapping blocks
            # within one request are not what this test is about).
            second = self.random_block_range(self.rnd.choice(m.days))
            if not m.block_units(*second) & m.block_units(*ranges[0]):
                ranges.append(second)
        units = [m.block_units(s, e) for s, e in ranges]
        body = {"blocks": [{"start_time": _ts(s), "end_time": _ts(e), "reason": "model"} for s, e in ranges]}
        path = f"/api/v1/instructors/{self.ins}/availability/block"
        r, t0, t1 = self.timed(lambda: self.client.post(path, body, token=self.srv.admin()))

        def first_conflict(at):
            return next((i for i, us in enumerate(units) if m.taken(us, at)), None)

        may = {first_conflict(t0 - MARGIN_S), first_conflict(t1 + MARGIN_S)}
        what = "block " + ", ".join(f"{_ts(s)}-{_hhmm(e)}" for s, e in ranges)
        if r.status == 201:
            check(None in may, f"{what}: accepted, but block {may} meets taken units: {r}")
            got = expect_ok(r, 201).get("blocks")
            check(isinstance(got, list) and len(got) == len(ranges), f"{what}: blocks in reply: {r}")
            for (s, e), us, blk in zip(ranges, units, got):
                eq((blk.get("start_time"), blk.get("end_time")), (_ts(s), _ts(e)), f"{what}: block echoed")
                m.blocks[blk["uuid"]] = us
            self.note(f"{what} -> 201 {[blk['uuid'][:8] for blk in got]}")
            self.count("block accepted")
        else:
            details = expect_error(r, 409, "slot_unavailable")
            idx = details.get("block_index")
            check(idx is not None and idx in may, f"{what}: refused naming block {idx}, model says "
                                                  f"first conflict is {may - {None} or 'none'}: {r}")
            lo = _minute(parse_ts(details.get("start_time"), "details.start_time"))
            check(lo in units[idx] and lo in set(m.taken(units[idx], t0)) | set(m.taken(units[idx], t1)),
                  f"{what}: 409 names {details.get('start_time')}, not a taken unit of block {idx}")
            self.note(f"{what} -> 409 (block {idx} at {_hhmm(lo)})")
            self.count("block refused")
        return True

    def op_unblock(self):
        if not self.model.blocks:
            return False
        block = self.rnd.choice(sorted(self.model.blocks))
        r = self.client.request("DELETE", f"/api/v1/instructors/{self.ins}/availability/block/{block}",
                                token=self.srv.admin())
        expect_ok(r, 200)
        del self.model.blocks[block]
        self.note(f"unblock {block[:8]} -> 200")
        self.count("unblocked")
        return True

    # -- the comparison after each step

    def availability(self, include_held):
        qs = f"from={self.dates[0].isoformat()}&to={self.dates[1].isoformat()}&duration_minutes={DURATION}"
        if include_held:
            qs += "&include_held=true"
        r = self.client.get(f"/api/v1/instructors/{self.ins}/availability?{qs}", token=self.srv.admin())
        slots = expect_ok(r, 200).get("slots")
        check(isinstance(slots, list), f"no slots list: {r}")
        for s in slots:
            start = parse_ts(s.get("start_time"), "slot start_time")
            end = parse_ts(s.get("end_time"), "slot end_time")
            eq(end - start, dt.timedelta(minutes=DURATION), f"slot length of {s}")
        return slots

    def compare(self):
        for _ in range(5):
            self.settle()
            t0 = time.time()
            free = self.availability(False)
            full = self.availability(True)
            t1 = time.time()
            if self.model.quiet(t0, t1):
                break
        else:
            fail("could not query availability away from hold expiries (requests too slow?)")
        m = self.model

        # 1. The free starts, exactly.
        got_free = [_minute(parse_ts(s["start_time"])) for s in free]
        want_free = m.free_starts(t0)
        if got_free != want_free:
            extra = sorted(set(got_free) - set(want_free))
            missing = sorted(set(want_free) - set(got_free))
            fail(f"free slots differ from the model: offered but taken {[_ts(s) for s in extra]}, "
                 f"free but not offered {[_ts(s) for s in missing]}"
                 + ("" if extra or missing else f" (order or duplicates: {[_ts(s) for s in got_free]})"))

        # 2. include_held: every candidate start, with its state.
        want = m.expected(t0)
        got = [(_minute(parse_ts(s["start_time"])), s.get("state"), s.get("hold_expires_at")) for s in full]
        eq([s for s, _, _ in got], [s for s, _, _ in want], "include_held starts (every candidate start)")
        bad = []
        for (s, state, exp), (_, states, want_exp) in zip(got, want):
            if state not in states:
                bad.append(f"{_ts(s)}: state {state!r}, model {sorted(states)}")
            elif state == "held":
                got_exp = parse_ts(exp, f"hold_expires_at of {_ts(s)}").timestamp() if exp else None
                if got_exp is None or abs(got_exp - want_exp) > 1.0:
                    want_iso = iso(dt.datetime.fromtimestamp(want_exp, dt.timezone.utc))
                    bad.append(f"{_ts(s)}: hold_expires_at {exp}, model {want_iso} (latest hold over its units)")
        check(not bad, "include_held states differ from the model:\n  " + "\n  ".join(bad))

    # -- the run

    def describe_failure(self, step, err):
        steps = "\n  ".join(f"{i + 1}. {line}" for i, line in enumerate(self.log))
        blocks = {k[:8]: sorted(_hhmm(u) for u in v) for k, v in self.model.blocks.items()}
        return (f"model test failed at step {step} (seed {self.seed}; rerun with MODEL_SEED={self.seed}), "
                f"instructor {self.ins}, buffer {self.model.buffer} min, days {self.dates[0]} and {self.dates[1]}:\n"
                f"{err}\nsteps so far:\n  {steps}\nmodel bookings: {self.model.bookings}\n"
                f"model blocks (units): {json.dumps(blocks)}")

    def run(self):
        names = list(OPS)
        weights = [OPS[n] for n in names]
        step = 0
        try:
            self.compare()  # a fresh instructor: everything in the windows is free
            for step in range(1, STEPS + 1):
                self.settle()
                # Steps are fast, so holds expire only when the run waits: make sure the second half of
                # every run lives through at least one expiry.
                forced = step > STEPS // 2 and not self.counts.get("waited for an expiry") and self.op_wait_expiry()
                if not forced:
                    for _ in range(20):  # until an operation applies (a hold always does)
                        if getattr(self, "op_" + self.rnd.choices(names, weights)[0])():
                            break
                self.compare()
        except AssertionError as e:
            raise AssertionError(self.describe_failure(step, e)) from None
        finally:
            self.client.close()
        if os.environ.get("MODEL_VERBOSE"):
            print(f"seed {self.seed}, buffer {self.model.buffer}: slept {self.slept:.1f} s, {self.counts}",
                  flush=True)
        # The run must have exercised the interesting paths, else it proves little.
        for keys in (("hold accepted",), ("hold refused",), ("confirmed", "late payment confirmed"),
                     ("block accepted",), ("waited for an expiry",)):
            check(any(self.counts.get(k) for k in keys), f"seed {self.seed}: the run never did {keys}: {self.counts}")
        return self.counts


@timeout(90)
def test_model_availability_with_15_minute_buffer():
    Run(buffer=15).run()


@timeout(90)
def test_model_availability_without_buffer():
    Run(buffer=0).run()
