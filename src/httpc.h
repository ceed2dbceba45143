/*
 * httpc.h - a small asynchronous HTTP/1.1 client for the replicator.
 *
 * The replicator talks to each peer over one httpc_conn_t: one request at a
 * time, on an h2o_evloop_t the caller owns and runs.  The connection binds
 * its source address to the replica's own IP before connecting (so firewall
 * rules that cut a replica off also cut its outgoing traffic), keeps the
 * connection alive between requests, and enforces the per-request timeout
 * with a timer of its own: a peer behind an iptables DROP rule produces no
 * socket error, only silence.
 *
 * Contract:
 *   - The callback is called exactly once per accepted request, always from
 *     the event loop (never from inside httpc_request()), except that
 *     httpc_close() calls it synchronously with "canceled".  httpc_free()
 *     never calls it.
 *   - status > 0 is an HTTP status; 0 is a failure and err says why:
 *     "timeout", "connection refused", "connect failed" (any other connect
 *     error, e.g. bind() of src_ip), "connection closed", "bad response",
 *     "response too large", "canceled".  err is NULL on success.
 *   - body/len are valid only during the callback; body is never NULL and is
 *     NUL-terminated (body[len] == '\0') for convenience.
 *   - The callback may start the next request on the same connection, close
 *     it or free it.
 *   - The process must ignore SIGPIPE: h2o writes with writev(), which
 *     raises SIGPIPE on a connection the peer has reset.
 */
#ifndef KVSD_HTTPC_H
#define KVSD_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

typedef struct httpc_conn httpc_conn_t;

typedef void (*httpc_cb)(void *arg, int status, const char *body, size_t len, const char *err);

#define HTTPC_DEFAULT_MAX_BODY ((size_t)1 << 30)

/*
 * dst is "IPv4:PORT" or "[IPv6]:PORT"; src_ip (NULL: let the kernel choose)
 * must be of the same family.  Returns NULL on a malformed address.  No
 * connection is made until the first request.
 */
httpc_conn_t *httpc_new(h2o_loop_t *loop, const char *src_ip, const char *dst);

/*
 * Start one request.  extra_headers is NULL or raw "Name: value\r\n" lines;
 * Host (and Content-Length unless a GET/HEAD without body) are added here.
 * body (len bytes, may be NULL when len == 0) is copied (see
 * httpc_request_owned() for a body handed over instead).  timeout_ms > 0
 * bounds the whole request: connect, send and the full response.  Returns
 * -1 if a request is already in flight or an argument is malformed (then
 * the callback is not called), 0 otherwise.
 */
int httpc_request(httpc_conn_t *c,
                  const char *method,
                  const char *path,
                  const char *extra_headers,
                  const char *body,
                  size_t len,
                  uint64_t timeout_ms,
                  httpc_cb cb,
                  void *arg);

/* Like httpc_request(), but body is a malloc()ed buffer that httpc takes
 * over and frees (also when -1 is returned): it is written from where it
 * is, not copied. */
int httpc_request_owned(httpc_conn_t *c,
                        const char *method,
                        const char *path,
                        const char *extra_headers,
                        char *body,
                        size_t len,
                        uint64_t timeout_ms,
                        httpc_cb cb,
                        void *arg);

int httpc_busy(const httpc_conn_t *c);

/* Responses with a longer body fail with "response too large" (default 1 GiB). */
void httpc_set_max_body(httpc_conn_t *c, size_t max);

/*
 * Close the socket.  A request in flight is canceled: its callback is called
 * synchronously, before httpc_close() returns, with status 0 and "canceled".
 * The next request opens a new connection.
 */
void httpc_close(httpc_conn_t *c);

/* Close and free; an in-flight request's callback is NOT called. */
void httpc_free(httpc_conn_t *c);

#endif
