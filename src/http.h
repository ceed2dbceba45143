/*
 * http.h - the request side of a worker: routing and response helpers.
 *
 * Handlers run inside a worker's libh2o event loop and answer
 * synchronously: reads under shm-RCU, writes under the store's writer
 * lock, never blocking on anything else.  The one exception is a kvs
 * request parked by --causal-wait: it is answered later, from a timer of
 * the same loop (http_kvs.c).
 */
#ifndef KVSD_HTTP_H
#define KVSD_HTTP_H

#include <time.h>

#include <h2o.h>

#include "config.h"
#include "shm.h"

struct http_env {
    shm_t *shm;
    const struct config *cfg;
    int slot; /* this process's RCU reader slot */
};

/* Register kvsd's handler (all paths) and error filter on hostconf. */
void http_register(h2o_globalconf_t *gconf, h2o_hostconf_t *hostconf, struct http_env *env);

/* Send body (owned by req->pool or static) with Content-Type
 * application/json and Content-Length. */
void http_send(h2o_req_t *req, int status, const char *body, size_t len);
void http_send_type(h2o_req_t *req, int status, const char *type, const char *body, size_t len);
#define http_send_lit(req, status, lit) http_send((req), (status), (lit), sizeof(lit) - 1)
void http_send_error(h2o_req_t *req, int status, const char *message); /* {"error": "message"} */

/* A response body built in req->pool.  The capacity is computed from the
 * parts before anything is written; appending past it writes nothing and
 * marks the body broken, and http_body_send() then answers 500 instead of
 * sending a truncated body. */
struct http_body {
    char *p;
    size_t len, cap;
    int broken;
};
void http_body_init(h2o_req_t *req, struct http_body *b, size_t cap);
void http_body_put(struct http_body *b, const char *s, size_t n);
#define http_body_lit(b, lit) http_body_put((b), (lit), sizeof(lit) - 1)
void http_body_str(struct http_body *b, const char *s);
/* Room for up to n bytes at the end (NULL if it does not fit); say how
 * many were used with http_body_commit(). */
char *http_body_reserve(struct http_body *b, size_t n);
void http_body_commit(struct http_body *b, size_t used);
void http_body_send(h2o_req_t *req, int status, struct http_body *b);

int http_method_is(h2o_req_t *req, const char *m, size_t len);
#define METHOD(req, lit) http_method_is((req), lit, sizeof(lit) - 1)

/* Poke the replicator: after a write only if it waits for that kind
 * (when = REPL_WAKE_OWN or REPL_WAKE_RELAY, repl.h); for rare events such as
 * view changes always (when = 0). */
void http_wake_replicator(struct http_env *env, uint32_t when);

/* A request answered later (a parked kvs request): http_defer() takes the
 * route and start time of the request being handled, so that it is not
 * counted now; http_resume() makes them current again just before the
 * answer, so the request is counted with its whole latency. */
struct http_acct {
    struct http_env *env;
    int route;
    struct timespec start;
};
void http_defer(struct http_acct *a);
void http_resume(const struct http_acct *a);

/* Set up parking of kvs requests (--causal-wait) on the worker's loop. */
void http_kvs_init(struct http_env *env, h2o_loop_t *loop);
/* The worker is shutting down: answer every parked request now (served if
 * its dependencies are applied, else 503), so the drain need not wait. */
void http_kvs_shutdown(void);
int http_kvs(struct http_env *env, h2o_req_t *req, const char *rawkey, size_t rawlen);
int http_view(struct http_env *env, h2o_req_t *req);
int http_internal(struct http_env *env, h2o_req_t *req, const char *path, size_t len);
int http_health(struct http_env *env, h2o_req_t *req, const char *path, size_t len);

#endif
