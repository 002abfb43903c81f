/*
 * workq.c — worker threads for CPU work, done callbacks back on the loop.
 *
 * Two lists under one mutex: jobs to do (the workers wait on a condition)
 * and jobs done (the loop is woken through an eventfd when that list stops
 * being empty, and takes the whole list at once).
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "util.h"
#include "workq.h"

#define WORKQ_MAX_THREADS 4

struct job_list {
	struct workq_job *head, *tail;
};

struct workq {
	pthread_mutex_t lock;
	pthread_cond_t work_cv;		/* todo not empty, or stopping */
	pthread_cond_t idle_cv;		/* todo empty and no work running */
	struct job_list todo, done;
	unsigned ntodo;
	unsigned running;		/* jobs workers are doing */
	unsigned waiting;		/* workers waiting for work */
	bool stopping;

	int efd;			/* wakes the loop: done stopped being empty */
	struct event *ev;
	/* The loop's own: submitted this turn, queued together at its end. */
	struct job_list submitted;
	unsigned nsubmitted;
	struct event *push_ev;
	unsigned pending;		/* submitted, done not run */

	unsigned nthreads;
	pthread_t threads[WORKQ_MAX_THREADS];
};

/* Appends the chain first..last (last->next NULL). */
static void
list_append(struct job_list *l, struct workq_job *first, struct workq_job *last)
{
	if (l->tail != NULL)
		l->tail->next = first;
	else
		l->head = first;
	l->tail = last;
}

static struct workq_job *
list_take(struct job_list *l)
{
	struct workq_job *j = l->head;

	l->head = l->tail = NULL;
	return j;
}

/*
 * Workers take their share of what is queued at once and hand back what
 * they did at once: two lock round trips per batch rather than per job,
 * since the loop queues a turn's worth of jobs together.
 */
static void *
worker_main(void *arg)
{
	struct workq *wq = arg;
	struct workq_job *first, *last, *j;
	unsigned n, take;
	uint64_t one = 1;
	bool wake;

	pthread_mutex_lock(&wq->lock);
	for (;;) {
		while (wq->todo.head == NULL && !wq->stopping) {
			wq->waiting++;
			pthread_cond_wait(&wq->work_cv, &wq->lock);
			wq->waiting--;
		}
		if (wq->todo.head == NULL)
			break;
		take = (wq->ntodo + wq->nthreads - 1) / wq->nthreads;
		first = last = wq->todo.head;
		for (n = 1; n < take && last->next != NULL; n++)
			last = last->next;
		if ((wq->todo.head = last->next) == NULL)
			wq->todo.tail = NULL;
		last->next = NULL;
		wq->ntodo -= n;
		wq->running += n;
		/* Others may share what is left. */
		if (wq->todo.head != NULL && wq->waiting > 0)
			pthread_cond_signal(&wq->work_cv);
		pthread_mutex_unlock(&wq->lock);

		for (j = first; j != NULL; j = j->next)
			j->work(j);

		pthread_mutex_lock(&wq->lock);
		wq->running -= n;
		wake = wq->done.head == NULL;
		list_append(&wq->done, first, last);
		if (wq->running == 0 && wq->todo.head == NULL)
			pthread_cond_broadcast(&wq->idle_cv);
		if (wake) {
			/* Only the first of a batch writes; the loop takes them all. */
			while (write(wq->efd, &one, sizeof one) < 0 && errno == EINTR)
				;
		}
	}
	pthread_mutex_unlock(&wq->lock);
	return NULL;
}

/* Runs the done callbacks of everything finished so far; on the loop. */
static void
run_done(struct workq *wq)
{
	struct workq_job *j, *next;
	uint64_t n;

	/* Read first: a job finishing after the read either is in the list
	 * taken below or writes again. */
	while (read(wq->efd, &n, sizeof n) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&wq->lock);
	j = list_take(&wq->done);
	pthread_mutex_unlock(&wq->lock);
	for (; j != NULL; j = next) {
		next = j->next;
		wq->pending--;
		j->done(j);
	}
}

/* Queues what the loop submitted: one lock and at most one wake-up a turn. */
static void
push(struct workq *wq)
{
	if (wq->submitted.head == NULL)
		return;
	pthread_mutex_lock(&wq->lock);
	list_append(&wq->todo, wq->submitted.head, wq->submitted.tail);
	wq->ntodo += wq->nsubmitted;
	if (wq->waiting > 0)
		pthread_cond_signal(&wq->work_cv);
	pthread_mutex_unlock(&wq->lock);
	wq->submitted.head = wq->submitted.tail = NULL;
	wq->nsubmitted = 0;
}

static void
push_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	push(arg);
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	run_done(arg);
}

struct workq *
workq_create(struct event_base *base, unsigned nthreads)
{
	struct workq *wq;
	sigset_t all, old;
	long ncpu;
	unsigned i;

	if (nthreads == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = ncpu > 1 ? (unsigned)(ncpu - 1) : 1;
	}
	if (nthreads > WORKQ_MAX_THREADS)
		nthreads = WORKQ_MAX_THREADS;

	wq = ap_xcalloc(1, sizeof *wq);
	pthread_mutex_init(&wq->lock, NULL);
	pthread_cond_init(&wq->work_cv, NULL);
	pthread_cond_init(&wq->idle_cv, NULL);
	if ((wq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		goto fail;
	wq->ev = event_new(base, wq->efd, EV_READ | EV_PERSIST, wake_cb, wq);
	if (wq->ev == NULL || event_add(wq->ev, NULL) != 0)
		goto fail;
	if ((wq->push_ev = event_new(base, -1, 0, push_cb, wq)) == NULL)
		goto fail;

	/* Signals stay with the loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < nthreads; i++) {
		if (pthread_create(&wq->threads[i], NULL, worker_main, wq) != 0)
			break;
		wq->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (wq->nthreads == 0)
		goto fail;
	return wq;

fail:
	workq_free(wq);
	return NULL;
}

void
workq_submit(struct workq *wq, struct workq_job *job)
{
	if (wq == NULL) {
		job->work(job);
		job->done(job);
		return;
	}
	wq->pending++;
	/* Active events run after those of this turn already active. */
	if (wq->submitted.head == NULL)
		event_active(wq->push_ev, EV_TIMEOUT, 0);
	job->next = NULL;
	list_append(&wq->submitted, job, job);
	wq->nsubmitted++;
}

unsigned
workq_pending(const struct workq *wq)
{
	return wq != NULL ? wq->pending : 0;
}

void
workq_free(struct workq *wq)
{
	unsigned i;

	if (wq == NULL)
		return;
	/* A done callback may submit more: drain until nothing is left. */
	while (wq->pending > 0) {
		push(wq);
		pthread_mutex_lock(&wq->lock);
		while (wq->running > 0 || wq->todo.head != NULL)
			pthread_cond_wait(&wq->idle_cv, &wq->lock);
		pthread_mutex_unlock(&wq->lock);
		run_done(wq);
	}
	pthread_mutex_lock(&wq->lock);
	wq->stopping = true;
	pthread_cond_broadcast(&wq->work_cv);
	pthread_mutex_unlock(&wq->lock);
	for (i = 0; i < wq->nthreads; i++)
		pthread_join(wq->threads[i], NULL);
	if (wq->ev != NULL)
		event_free(wq->ev);
	if (wq->push_ev != NULL)
		event_free(wq->push_ev);
	if (wq->efd >= 0)
		close(wq->efd);
	pthread_cond_destroy(&wq->idle_cv);
	pthread_cond_destroy(&wq->work_cv);
	pthread_mutex_destroy(&wq->lock);
	free(wq);
}
