/*
 * The pg-rowlock baseline's audit verdict: given what the replies said
 * (winners per slot) and what the table says after the run, does it pass?
 * The verdict is what makes `slotbench burst --baseline pg-rowlock` exit
 * non-zero, so each way the design could go wrong must fail it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "../../bench/baseline_pg.c"

#define K 4

/* Every slot tried, won once, and confirmed by its winner: the good outcome. */
static void good_run(struct pg_slot *slots)
{
    memset(slots, 0, K * sizeof(*slots));
    for (int i = 0; i < K; i++) {
        slots[i].attempts = 100;
        slots[i].winners = 1;
        slots[i].confirmed = true;
        snprintf(slots[i].winner, sizeof(slots[i].winner), "c%d-a%d", i + 1, i + 1);
        slots[i].in_table = true;
        strcpy(slots[i].status, "confirmed");
        strcpy(slots[i].holder, slots[i].winner);
    }
}

static void test_one_confirmed_winner_per_slot_passes(void **state)
{
    (void)state;
    struct pg_slot slots[K];
    struct bench_audit a;
    memset(&a, 0xff, sizeof(a)); /* judge must set every field it owns */
    good_run(slots);
    judge(&a, slots, K);
    assert_true(a.ran);
    assert_true(a.passed);
    assert_string_equal(a.failure, "");
    assert_true(a.winners_checked);
    assert_int_equal(a.hot_slots, K);
    assert_int_equal(a.double_bookings, 0);
    assert_int_equal(a.confirmed_missing, 0);
    assert_int_equal(a.leaked_holds, 0);
    for (int i = 0; i < K; i++)
        assert_int_equal(a.winners[i], 1);
}

static void test_two_winners_on_a_slot_is_a_double_booking(void **state)
{
    (void)state;
    struct pg_slot slots[K];
    struct bench_audit a;
    good_run(slots);
    slots[2].winners = 2;
    judge(&a, slots, K);
    assert_false(a.passed);
    assert_int_equal(a.double_bookings, 1);
    assert_int_equal(a.winners[2], 2);
    assert_string_equal(a.failure, "slot 3: 2 winners");
}

static void test_a_tried_slot_without_winner_fails(void **state)
{
    (void)state;
    struct pg_slot slots[K];
    struct bench_audit a;
    good_run(slots);
    slots[0].winners = 0;
    slots[0].winner[0] = '\0';
    strcpy(slots[0].status, "free");
    slots[0].holder[0] = '\0';
    judge(&a, slots, K);
    assert_false(a.passed);
    assert_non_null(strstr(a.failure, "slot 1: no winner out of 100 attempts"));
}

static void test_an_untried_slot_must_stay_free(void **state)
{
    (void)state;
    struct pg_slot slots[K];
    struct bench_audit a;
    good_run(slots);
    slots[3].attempts = 0;
    slots[3].winners = 0;
    slots[3].winner[0] = '\0';
    strcpy(slots[3].status, "free");
    slots[3].holder[0] = '\0';
    judge(&a, slots, K);
    assert_true(a.passed);

    /* Taken in the table although no reply said so: a lost or phantom write. */
    strcpy(slots[3].status, "held");
    strcpy(slots[3].holder, "c9-a9");
    judge(&a, slots, K);
    assert_false(a.passed);
    assert_int_equal(a.leaked_holds, 1);
    assert_non_null(strstr(a.failure, "slot 4: no winner replied"));
}

static void test_the_table_must_show_the_winner_confirmed(void **state)
{
    (void)state;
    struct pg_slot slots[K];
    struct bench_audit a;

    /* The confirm never landed: the row is still held. */
    good_run(slots);
    slots[1].confirmed = false;
    strcpy(slots[1].status, "held");
    judge(&a, slots, K);
    assert_false(a.passed);
    assert_int_equal(a.confirmed_missing, 1);
    assert_int_equal(a.leaked_holds, 1);
    assert_non_null(strstr(a.failure, "slot 2:"));

    /* Confirmed, but by someone the replies did not name as the winner. */
    good_run(slots);
    strcpy(slots[1].holder, "c7-a99");
    judge(&a, slots, K);
    assert_false(a.passed);
    assert_int_equal(a.confirmed_missing, 1);
    assert_non_null(strstr(a.failure, "c7-a99"));

    /* The row is gone altogether. */
    good_run(slots);
    slots[0].in_table = false;
    judge(&a, slots, K);
    assert_false(a.passed);
    assert_int_equal(a.confirmed_missing, 1);
    assert_string_equal(a.failure, "slot 1: missing from slotbench_slots");
}

static void test_the_first_reason_is_kept(void **state)
{
    (void)state;
    struct pg_slot slots[K];
    struct bench_audit a;
    good_run(slots);
    slots[1].winners = 3;
    slots[3].winners = 2;
    judge(&a, slots, K);
    assert_false(a.passed);
    assert_int_equal(a.double_bookings, 3);
    assert_string_equal(a.failure, "slot 2: 3 winners");

    /* A later good verdict clears the earlier failure text. */
    good_run(slots);
    judge(&a, slots, K);
    assert_true(a.passed);
    assert_string_equal(a.failure, "");
}

/* The seeded generator must reach every slot, and replay for the same seed. */
static void test_slots_are_spread_and_reproducible(void **state)
{
    (void)state;
    uint64_t s1 = 42, s2 = 42;
    int hits[10] = {0};
    for (int i = 0; i < 10000; i++) {
        uint64_t v = next_random(&s1);
        assert_int_equal(v, next_random(&s2));
        hits[v % 10]++;
    }
    for (int i = 0; i < 10; i++) {
        assert_true(hits[i] > 800);
        assert_true(hits[i] < 1200);
    }
}

/* Clicks join the line for a connection until the request budget or the time bound is spent. */
static void test_clicks_stop_at_the_budget_and_the_deadline(void **state)
{
    (void)state;
    uint64_t line[3];
    struct pg_run run = {.requests = 5, .deadline_us = 1000, .line = line, .line_cap = 3};
    click(&run, 10);
    click(&run, 20);
    click(&run, 30);
    click(&run, 40); /* the line is full: every client is waiting already */
    assert_int_equal(run.line_len, 3);
    assert_int_equal(run.clicked, 3);
    assert_int_equal(line[0], 10);
    run.line_head = 1; /* one attempt taken by a connection */
    run.line_len = 2;
    click(&run, 50);
    assert_int_equal(line[0], 50); /* wrapped around the ring */
    assert_int_equal(run.clicked, 4);
    run.line_head = 2;
    run.line_len = 1;
    click(&run, 1000); /* at the deadline: no new attempt */
    assert_int_equal(run.clicked, 4);
    click(&run, 60);
    click(&run, 70); /* the fifth was the last one asked for */
    assert_int_equal(run.clicked, 5);
    assert_int_equal(run.line_len, 2);
}

static void test_bad_options_are_refused_before_connecting(void **state)
{
    (void)state;
    struct bench_result *out = calloc(1, sizeof(*out));
    assert_non_null(out);
    struct bench_pg_options o = {.conninfo = "", .clients = 10, .requests = 10, .slots = 10, .max_seconds = 1};
    assert_int_equal(bench_baseline_pg_rowlock(&o, out), -1);
    o.conninfo = "postgresql://postgres@127.0.0.1:1/none";
    o.slots = 0;
    assert_int_equal(bench_baseline_pg_rowlock(&o, out), -1);
    o.slots = BENCH_MAX_HOT_SLOTS + 1;
    assert_int_equal(bench_baseline_pg_rowlock(&o, out), -1);
    o.slots = 10;
    o.clients = 0;
    assert_int_equal(bench_baseline_pg_rowlock(&o, out), -1);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_confirmed_winner_per_slot_passes),
        cmocka_unit_test(test_two_winners_on_a_slot_is_a_double_booking),
        cmocka_unit_test(test_a_tried_slot_without_winner_fails),
        cmocka_unit_test(test_an_untried_slot_must_stay_free),
        cmocka_unit_test(test_the_table_must_show_the_winner_confirmed),
        cmocka_unit_test(test_the_first_reason_is_kept),
        cmocka_unit_test(test_slots_are_spread_and_reproducible),
        cmocka_unit_test(test_clicks_stop_at_the_budget_and_the_deadline),
        cmocka_unit_test(test_bad_options_are_refused_before_connecting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
