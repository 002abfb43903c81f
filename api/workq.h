/*
 * workq.h — CPU work off the event loop.
 *
 * A job's work runs on one of the queue's threads; its done callback then
 * runs on the loop that created the queue, in a later turn. The work must
 * touch nothing the loop touches: it gets its input through the job and
 * leaves its output there. Jobs are owned by the caller, who keeps each
 * alive until its done callback has run, and are not cancelled: a caller
 * whose reason for the job went away marks that in the job and lets done
 * clean up. Done callbacks run in the order the work finished.
 */
#ifndef AP_WORKQ_H
#define AP_WORKQ_H

struct event_base;
struct workq;

struct workq_job {
	void (*work)(struct workq_job *);	/* on a worker thread */
	void (*done)(struct workq_job *);	/* on the loop, after work */
	struct workq_job *next;			/* the queue's */
};

/*
 * A queue with nthreads worker threads (0: one per online CPU beyond the
 * first, at least one, at most 4) whose done callbacks run on base. NULL
 * only if a thread or the loop's wake-up descriptor cannot be created; the
 * caller then does the work on the loop (workq_submit(NULL, ...)).
 */
struct workq *workq_create(struct event_base *base, unsigned nthreads);

/*
 * Queues job. With wq NULL, runs work and then done at once, on the
 * caller's stack: code that submits must be ready for done to have run when
 * workq_submit returns.
 */
void workq_submit(struct workq *wq, struct workq_job *job);

/* Jobs submitted whose done callback has not run yet. */
unsigned workq_pending(const struct workq *wq);

/*
 * Waits for every submitted job's work, runs their done callbacks, then
 * stops the threads and frees the queue. NULL is a no-op. Not from one of
 * the queue's own done callbacks.
 */
void workq_free(struct workq *wq);

#endif
