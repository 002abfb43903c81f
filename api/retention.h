/*
 * retention.h — what `autopilot serve` deletes from the state database when
 * state.retention_days is set: runs that ended that many days ago (with
 * their agent runs) and inbox events received then, in small transactions
 * with the loop free between them (see store_prune()), 2 s after start and
 * then every hour.
 */
#ifndef AP_RETENTION_H
#define AP_RETENTION_H

struct ap_buf;
struct event_base;
struct retention;
struct store;

/* Borrows base and store. days 0: keeps everything (nothing scheduled,
 * the counters stay 0). Never NULL. */
struct retention *retention_create(struct event_base *base, struct store *store,
    unsigned days);
/* No batch after this one (shutdown). */
void retention_stop(struct retention *r);
/* Accepts NULL. */
void retention_free(struct retention *r);
/* Prometheus text: autopilot_retention_{runs,events}_deleted_total. */
void retention_metrics(struct ap_buf *out, const struct retention *r);

#endif
