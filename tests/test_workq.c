/* test_workq.c — worker threads: every job's work off the loop, its done on it, once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "util.h"
#include "workq.h"

#define NJOBS 2000

struct tjob {
	struct workq_job job;		/* first: the callbacks cast back */
	unsigned n;
	uint64_t sum;			/* set by work */
	pthread_t worker;
	int worked, done;
	struct workq *wq;		/* resubmits once when set */
};

static pthread_t loop_thread;
static unsigned done_count;

static void
tjob_work(struct workq_job *j)
{
	struct tjob *t = (struct tjob *)j;
	unsigned i;

	t->worker = pthread_self();
	for (i = 0, t->sum = 0; i <= t->n; i++)
		t->sum += i;
	t->worked++;
}

static void
tjob_done(struct workq_job *j)
{
	struct tjob *t = (struct tjob *)j;

	assert_true(pthread_equal(pthread_self(), loop_thread));
	t->done++;
	done_count++;
	if (t->wq != NULL) {
		struct workq *wq = t->wq;

		t->wq = NULL;
		workq_submit(wq, j);
	}
}

static void
tjob_init(struct tjob *t, unsigned n)
{
	memset(t, 0, sizeof *t);
	t->job.work = tjob_work;
	t->job.done = tjob_done;
	t->n = n;
}

static void
test_jobs_run_off_the_loop_and_finish_on_it(void **state)
{
	struct event_base *base = ap_event_base_new();
	struct workq *wq = workq_create(base, 2);
	struct tjob *jobs = ap_xcalloc(NJOBS, sizeof *jobs);
	unsigned i;

	(void)state;
	assert_non_null(wq);
	loop_thread = pthread_self();
	done_count = 0;
	for (i = 0; i < NJOBS; i++) {
		tjob_init(&jobs[i], i);
		workq_submit(wq, &jobs[i].job);
	}
	assert_true(workq_pending(wq) > 0);
	while (done_count < NJOBS)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(workq_pending(wq), 0);
	for (i = 0; i < NJOBS; i++) {
		assert_int_equal(jobs[i].worked, 1);
		assert_int_equal(jobs[i].done, 1);
		assert_true(jobs[i].sum == (uint64_t)i * (i + 1) / 2);
		assert_false(pthread_equal(jobs[i].worker, loop_thread));
	}
	workq_free(wq);
	event_base_free(base);
	free(jobs);
}

/* Freeing waits for the work still queued and runs every done callback,
 * including those of jobs a done callback submitted. */
static void
test_free_drains(void **state)
{
	struct event_base *base = ap_event_base_new();
	struct workq *wq = workq_create(base, 1);
	struct tjob *jobs = ap_xcalloc(NJOBS, sizeof *jobs);
	unsigned i;

	(void)state;
	loop_thread = pthread_self();
	done_count = 0;
	for (i = 0; i < NJOBS; i++) {
		tjob_init(&jobs[i], 1000);
		if (i % 2 == 0)
			jobs[i].wq = wq;
		workq_submit(wq, &jobs[i].job);
	}
	workq_free(wq);
	assert_int_equal(done_count, NJOBS + NJOBS / 2);
	for (i = 0; i < NJOBS; i++) {
		assert_int_equal(jobs[i].worked, i % 2 == 0 ? 2 : 1);
		assert_int_equal(jobs[i].done, jobs[i].worked);
	}
	event_base_free(base);
	free(jobs);
}

/* Without a queue the work and the done callback run at once. */
static void
test_null_queue_runs_inline(void **state)
{
	struct tjob t;

	(void)state;
	loop_thread = pthread_self();
	done_count = 0;
	tjob_init(&t, 10);
	workq_submit(NULL, &t.job);
	assert_int_equal(t.worked, 1);
	assert_int_equal(t.done, 1);
	assert_true(t.sum == 55);
	assert_true(pthread_equal(t.worker, loop_thread));
	assert_int_equal(workq_pending(NULL), 0);
	workq_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jobs_run_off_the_loop_and_finish_on_it),
		cmocka_unit_test(test_free_drains),
		cmocka_unit_test(test_null_queue_runs_inline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
