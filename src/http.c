/*
 * http.c - routing, response helpers, and the filter that turns libh2o's
 * own plain-text errors (a body over the limit, a broken chunked body)
 * into the JSON errors of the API.
 */
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "repl.h"
#include "stats.h"
#include <time.h>

struct kvsd_handler {
    h2o_handler_t super;
    struct http_env *env;
};

static int access_log;

/* The request being handled.  Handlers answer synchronously, so one per
 * worker is enough: on_req() sets it, http_send_type() counts it.  A
 * parked request takes it along (http_defer) and brings it back. */
static struct {
    struct http_env *env;
    int route;
    struct timespec start;
} current;

/* One line per request: who, what, the answer and how long it took.
 * Requests to /internal/ (peers' batches and heartbeats, several a second
 * per peer) only with --access-log=all. */
static void log_access(h2o_req_t *req, int status, size_t len, double duration_ms)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    char host[NI_MAXHOST] = "-";

    if (current.route == ROUTE_INTERNAL && access_log != ACCESS_LOG_ALL)
        return;
    if ((sslen = req->conn->callbacks->get_peername(req->conn, (void *)&ss)) != 0)
        h2o_socket_getnumerichost((void *)&ss, sslen, host);
    log_info("access client=%s method=%.*s path=%.*s status=%d bytes=%zu duration_ms=%.3f",
             host,
             (int)req->method.len,
             req->method.base,
             (int)req->path.len,
             req->path.base,
             status,
             len,
             duration_ms);
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 500:
        return "Internal Server Error";
    case 507:
        return "Insufficient Storage";
    default:
        return "Error";
    }
}

void http_send(h2o_req_t *req, int status, const char *body, size_t len)
{
    http_send_type(req, status, "application/json", body, len);
}

void http_send_type(h2o_req_t *req, int status, const char *type, const char *body, size_t len)
{
    static h2o_generator_t generator = { NULL, NULL };
    h2o_iovec_t buf = h2o_iovec_init(body, len);

    if (current.env != NULL) {
        struct timespec now;
        uint64_t us;
        clock_gettime(CLOCK_MONOTONIC, &now);
        us = (uint64_t)((now.tv_sec - current.start.tv_sec) * 1000000 + (now.tv_nsec - current.start.tv_nsec) / 1000);
        stats_request(current.env->shm->stats, current.env->slot, current.route, status, us);
        if (access_log)
            log_access(req, status, len, (double)us / 1000);
        current.env = NULL;
    } else if (access_log) {
        log_access(req, status, len, 0);
    }
    req->res.status = status;
    req->res.reason = reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_start_response(req, &generator);
    if (METHOD(req, "HEAD"))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

void http_defer(struct http_acct *a)
{
    a->env = current.env;
    a->route = current.route;
    a->start = current.start;
    current.env = NULL;
}

void http_resume(const struct http_acct *a)
{
    current.env = a->env;
    current.route = a->route;
    current.start = a->start;
}

void http_body_init(h2o_req_t *req, struct http_body *b, size_t cap)
{
    b->p = h2o_mem_alloc_pool(&req->pool, cap ? cap : 1);
    b->len = 0;
    b->cap = cap;
    b->broken = 0;
}

char *http_body_reserve(struct http_body *b, size_t n)
{
    if (b->broken || n > b->cap - b->len) {
        b->broken = 1;
        return NULL;
    }
    return b->p + b->len;
}

void http_body_commit(struct http_body *b, size_t used)
{
    if (!b->broken)
        b->len += used;
}

void http_body_put(struct http_body *b, const char *s, size_t n)
{
    char *dst = http_body_reserve(b, n);

    if (dst != NULL) {
        memcpy(dst, s, n);
        b->len += n;
    }
}

void http_body_str(struct http_body *b, const char *s)
{
    http_body_put(b, s, strlen(s));
}

void http_body_send(h2o_req_t *req, int status, struct http_body *b)
{
    if (b->broken) {
        /* a capacity computed wrong: a bug, but never a truncated body */
        log_error("response body larger than its computed capacity (%zu bytes)", b->cap);
        http_send_lit(req, 500, "{\"error\": \"Internal error\"}");
        return;
    }
    http_send(req, status, b->p, b->len);
}

void http_send_error(h2o_req_t *req, int status, const char *message)
{
    static const char head[] = "{\"error\": \"", tail[] = "\"}";
    size_t mlen = strlen(message);
    struct http_body b;

    http_body_init(req, &b, sizeof(head) - 1 + mlen + sizeof(tail) - 1);
    http_body_lit(&b, head);
    http_body_put(&b, message, mlen);
    http_body_lit(&b, tail);
    http_body_send(req, status, &b);
}

int http_method_is(h2o_req_t *req, const char *m, size_t len)
{
    return h2o_memis(req->method.base, req->method.len, m, len);
}

void http_wake_replicator(struct http_env *env, uint32_t when)
{
    uint64_t one = 1;

    if (when == 0) {
        (void)!write(env->shm->wake_fd, &one, sizeof(one));
        return;
    }
    /* pairs with the replicator's fence between setting repl->sleeping and
     * its last look at the log head */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if ((__atomic_load_n(&env->shm->repl->sleeping, __ATOMIC_ACQUIRE) & when) && env->shm->wake_fd >= 0)
        (void)!write(env->shm->wake_fd, &one, sizeof(one));
}

/* libh2o 2.2 accepts a request head of up to ~408 KB; kvsd needs far
 * less, so like nginx it refuses long URIs and large headers itself (and
 * closes the connection).  Heads libh2o cannot parse at all (over its
 * limits, or more than 100 headers) it answers itself, in plain text,
 * before any request exists. */
#define HTTP_MAX_URI 8192
#define HTTP_MAX_HEADER_BYTES 16384

static int head_too_large(h2o_req_t *req)
{
    size_t i, n = 0;

    if (req->path.len > HTTP_MAX_URI) {
        req->http1_is_persistent = 0;
        http_send_lit(req, 414, "{\"error\": \"Request URI too long\"}");
        return 1;
    }
    for (i = 0; i < req->headers.size; ++i)
        n += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    if (n > HTTP_MAX_HEADER_BYTES) {
        req->http1_is_persistent = 0;
        http_send_lit(req, 431, "{\"error\": \"Request header fields too large\"}");
        return 1;
    }
    return 0;
}

/* Count the Content-Length and Transfer-Encoding lines of a raw HTTP/1
 * head (already accepted by libh2o's parser); -1 if no whole head is there. */
static int count_framing_headers(const char *p, size_t n, size_t *ncl, size_t *nte)
{
    const char *end = p + n, *line = memchr(p, '\n', n);

    *ncl = *nte = 0;
    if (line == NULL)
        return -1;
    for (++line; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line)), *colon;
        size_t len;
        if (eol == NULL)
            return -1;
        len = (size_t)(eol - line);
        if (len > 0 && line[len - 1] == '\r')
            --len;
        if (len == 0)
            return 0; /* the blank line that ends the head */
        if ((colon = memchr(line, ':', len)) != NULL) {
            size_t nlen = (size_t)(colon - line);
            if (nlen == 14 && strncasecmp(line, "content-length", 14) == 0)
                ++*ncl;
            else if (nlen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0)
                ++*nte;
        }
        line = eol + 1;
    }
    return -1;
}

/* A request whose length two headers may state differently -- two
 * Content-Length headers, two Transfer-Encoding headers, or one of each --
 * is how requests are smuggled past a proxy that reads the other one.
 * libh2o 2.2 picks one, carries on, and does not even keep these headers
 * in req->headers; so look at the raw head, which is still at the start
 * of the connection's input buffer while the request is handled (libh2o
 * consumes it only after the response).  Like nginx, refuse every such
 * request, identical duplicates too, and close the connection, since
 * where this request ends in the stream is exactly what is in doubt. */
static int framing_ambiguous(h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    size_t ncl, nte;

    /* only an HTTP/1 head that starts with this request's method is ours to read */
    if (sock == NULL || req->version >= 0x200 || sock->input->size <= req->method.len ||
        memcmp(sock->input->bytes, req->method.base, req->method.len) != 0 ||
        sock->input->bytes[req->method.len] != ' ')
        return 0;
    if (count_framing_headers(sock->input->bytes, sock->input->size, &ncl, &nte) != 0 || ncl + nte <= 1)
        return 0;
    req->http1_is_persistent = 0;
    http_send_lit(req, 400, "{\"error\": \"Bad request\"}");
    return 1;
}

#define PATH_IS(p, n, lit) ((n) == sizeof(lit) - 1 && memcmp((p), lit, sizeof(lit) - 1) == 0)
#define PATH_HAS_PREFIX(p, n, lit) ((n) >= sizeof(lit) - 1 && memcmp((p), lit, sizeof(lit) - 1) == 0)

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct http_env *env = ((struct kvsd_handler *)self)->env;
    const char *path = req->path.base;
    size_t len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;

    current.env = env;
    clock_gettime(CLOCK_MONOTONIC, &current.start);
    current.route = ROUTE_OTHER;
    if (head_too_large(req) || framing_ambiguous(req))
        return 0;
    if (PATH_HAS_PREFIX(path, len, "/kvs/") && len > 5) {
        current.route = METHOD(req, "GET")      ? ROUTE_KVS_GET
                        : METHOD(req, "PUT")    ? ROUTE_KVS_PUT
                        : METHOD(req, "DELETE") ? ROUTE_KVS_DELETE
                                                : ROUTE_OTHER;
        return http_kvs(env, req, path + 5, len - 5);
    }
    if (PATH_IS(path, len, "/view")) {
        current.route = ROUTE_VIEW;
        return http_view(env, req);
    }
    if (PATH_HAS_PREFIX(path, len, "/internal/")) {
        current.route = ROUTE_INTERNAL;
        return http_internal(env, req, path, len);
    }
    current.route = ROUTE_OPS;
    if (http_health(env, req, path, len) == 0)
        return 0;
    current.route = ROUTE_OTHER;
    http_send_lit(req, 404, "{\"error\": \"Not found\"}");
    return 0;
}

/* --- JSON bodies for libh2o's own errors ------------------------------- */

struct json_error_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
};

static void json_error_do_send(h2o_ostream_t *self,
                               h2o_req_t *req,
                               h2o_iovec_t *bufs,
                               size_t bufcnt,
                               h2o_send_state_t state)
{
    struct json_error_ostream *os = (void *)self;
    h2o_iovec_t body = os->body;

    /* libh2o sends its error text in one final call; replace it */
    os->body = h2o_iovec_init(NULL, 0);
    h2o_ostream_send_next(&os->super, req, &body, body.len ? 1 : 0, state);
}

static void json_error_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    struct json_error_ostream *os;
    const char *msg;

    if (req->res.status == 413)
        msg = "{\"error\": \"Request body too large\"}";
    else if (req->res.status == 400)
        msg = "{\"error\": \"Bad request\"}";
    else if (req->res.status == 408)
        msg = "{\"error\": \"Request timeout\"}";
    else
        msg = "{\"error\": \"Not found\"}";
    memset(&req->res.headers, 0, sizeof(req->res.headers));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    req->res.content_length = strlen(msg);
    os = (void *)h2o_add_ostream(req, sizeof(*os), slot);
    os->super.do_send = json_error_do_send;
    os->body = h2o_iovec_init(msg, strlen(msg));
    h2o_setup_next_ostream(req, &os->super.next);
}

void http_register(h2o_globalconf_t *gconf, h2o_hostconf_t *hostconf, struct http_env *env)
{
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    struct kvsd_handler *h = (void *)h2o_create_handler(pathconf, sizeof(*h));
    h2o_filter_t *filter;

    h->super.on_req = on_req;
    h->env = env;
    access_log = env->cfg->access_log;
    /* libh2o answers requests it rejects before routing (body too large,
     * broken chunked encoding) on the host's fallback path */
    filter = h2o_create_filter(&hostconf->fallback_path, sizeof(*filter));
    filter->on_setup_ostream = json_error_setup;
}
