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
	unsigned running;		/* jobs a worker is doing */
	bool stopping;

	int efd;			/* wakes the loop: done stopped being empty */
	struct event *ev;
	unsigned pending;		/* submitted, done not run (loop only) */

	unsigned nthreads;
	pthread_t threads[WORKQ_MAX_THREADS];
};

static void
list_push(struct job_list *l, struct workq_job *j)
{
	j->next = NULL;
	if (l->tail != NULL)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static struct workq_job *
list_take(struct job_list *l)
{
	struct workq_job *j = l->head;

	l->head = l->tail = NULL;
	return j;
}

static void *
worker_main(void *arg)
{
	struct workq *wq = arg;
	struct workq_job *j;
	uint64_t one = 1;
	bool wake;

	pthread_mutex_lock(&wq->lock);
	for (;;) {
		while (wq->todo.head == NULL && !wq->stopping)
			pthread_cond_wait(&wq->work_cv, &wq->lock);
		if (wq->todo.head == NULL)
			break;
		j = wq->todo.head;
		if ((wq->todo.head = j->next) == NULL)
			wq->todo.tail = NULL;
		wq->running++;
		pthread_mutex_unlock(&wq->lock);

		j->work(j);

		pthread_mutex_lock(&wq->lock);
		wq->running--;
		wake = wq->done.head == NULL;
		list_push(&wq->done, j);
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
	pthread_mutex_lock(&wq->lock);
	list_push(&wq->todo, job);
	pthread_cond_signal(&wq->work_cv);
	pthread_mutex_unlock(&wq->lock);
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
	if (wq->efd >= 0)
		close(wq->efd);
	pthread_cond_destroy(&wq->idle_cv);
	pthread_cond_destroy(&wq->work_cv);
	pthread_mutex_destroy(&wq->lock);
	free(wq);
}
