/*
 * httpc.c - the replicator's HTTP/1.1 client (see httpc.h for the contract).
 *
 * Only the replicator process uses it (doc/design.md, "Replication"): to
 * ship log batches and heartbeats, probe evicted peers and pull snapshots.
 * One httpc_conn_t is one peer: at most one TCP connection and one request
 * in flight.  The TCP socket is created, bound to the replica's own address
 * and connected here (h2o's own h2o_socket_connect() cannot bind), then
 * handed to the caller's h2o event loop; all I/O after that goes through
 * h2o_socket_t.  Responses are parsed with the picohttpparser that libh2o
 * exports, bodies are collected in an h2o_buffer_t.
 *
 * The request timeout is a timerfd registered with the same event loop
 * rather than an h2o_timeout_t: an h2o_timeout_t cannot be disposed from
 * inside its own callback (the loop is still walking the list it is on),
 * and the user's callback - run from the timeout - may well httpc_free()
 * the connection.  A socket can be closed from inside its own callback.
 * The timerfd also runs on CLOCK_MONOTONIC with the deadline taken when
 * httpc_request() is called, not at the loop's cached "now".  The same
 * timer, fired at once, delivers failures detected inside httpc_request()
 * so that the callback never runs from inside it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "httpc.h"
#include "util.h"

#if defined(__has_include)
#if __has_include(<picohttpparser.h>)
#include <picohttpparser.h>
#define HTTPC_HAVE_PICOHTTPPARSER_H 1
#endif
#endif
#ifndef HTTPC_HAVE_PICOHTTPPARSER_H
/*
 * Debian's libh2o-evloop exports picohttpparser (h2o 2.2.5 bundles it) but
 * does not install its header; these declarations match that version's ABI.
 */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};
int phr_parse_response(const char *buf,
                       size_t len,
                       int *minor_version,
                       int *status,
                       const char **msg,
                       size_t *msg_len,
                       struct phr_header *headers,
                       size_t *num_headers,
                       size_t last_len);
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);
#endif

#define HTTPC_MAX_HEAD (64 * 1024)
#define HTTPC_MAX_HEADERS 64
#define HTTPC_MAX_TIMEOUT_MS ((uint64_t)30 * 24 * 3600 * 1000)

static const char ERR_TIMEOUT[] = "timeout";
static const char ERR_REFUSED[] = "connection refused";
static const char ERR_CONNECT[] = "connect failed";
static const char ERR_CLOSED[] = "connection closed";
static const char ERR_BAD[] = "bad response";
static const char ERR_TOO_LARGE[] = "response too large";
static const char ERR_CANCELED[] = "canceled";

/*
 * Response bodies are plain malloc'ed buffers: no recycling (max 0 keeps
 * this prototype immutable, so it is safe to share) and no mmap'ed temp
 * files for large snapshots, unlike h2o's socket buffer prototype.
 */
static h2o_buffer_prototype_t body_prototype = { .allocator = { .max = 0 }, ._initial_buf = { .capacity = 4096 } };

enum httpc_state { RES_HEAD, RES_BODY_LENGTH, RES_BODY_CHUNKED, RES_BODY_EOF, RES_DONE };

struct httpc_conn {
    h2o_loop_t *loop;
    struct sockaddr_storage dst, src;
    socklen_t dst_len, src_len; /* src_len 0: do not bind */
    char host[INET6_ADDRSTRLEN + 8];
    size_t max_body;
    h2o_socket_t *sock;  /* the TCP connection, NULL when closed */
    h2o_socket_t *timer; /* timerfd: request deadline and deferred failures */
    uint64_t armed_ns;   /* when the timerfd fires next, 0 if disarmed */

    /* the request in flight (busy) */
    int busy;
    httpc_cb cb;
    void *arg;
    char *req; /* head (and a copied body), kept until done: a retry resends it */
    size_t req_len;
    char *body_own; /* a body handed over (httpc_request_owned()), or NULL */
    size_t body_len;
    /* The last request's buffers while h2o may still write from them: an
     * answer can be complete before the request is (an early 413, say). */
    char *wr_req, *wr_body;
    int head_only;
    uint64_t deadline_ns;
    const char *pending_err; /* failure to deliver from the timer */
    int reused;              /* sent on a connection kept alive */
    int send_queued;         /* waits for the last request's write report */
    int retried;
    int got_bytes; /* any response byte seen on this connection */

    /* response parser */
    enum httpc_state state;
    int status;
    int keepalive;
    size_t remaining; /* RES_BODY_LENGTH */
    struct phr_chunked_decoder chunked;
    h2o_buffer_t *body;
};

static void on_read(h2o_socket_t *sock, const char *err);
static void start_connect(httpc_conn_t *c);
static void send_request(httpc_conn_t *c);

/* Make the timer fire at absolute monotonic time at_ns or earlier.  It is
 * armed lazily: an earlier expiry already set stays (on_timer() finds
 * the deadline not reached and re-arms), and a finished request leaves it
 * armed, so a busy connection costs no timerfd_settime() per request,
 * only one per timeout period. */
static void timer_set(httpc_conn_t *c, uint64_t at_ns)
{
    struct itimerspec its;

    if (c->armed_ns != 0 && c->armed_ns <= at_ns)
        return;
    c->armed_ns = at_ns;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = at_ns / 1000000000;
    its.it_value.tv_nsec = at_ns % 1000000000;
    timerfd_settime(h2o_socket_get_fd(c->timer), TFD_TIMER_ABSTIME, &its, NULL);
}

/* Deliver err from the loop: a time in the past fires at once. */
static void defer_failure(httpc_conn_t *c, const char *err)
{
    c->pending_err = err;
    timer_set(c, 1);
}

/* h2o has reported the last write done, or will never write again. */
static void release_written(httpc_conn_t *c)
{
    free(c->wr_req);
    free(c->wr_body);
    c->wr_req = c->wr_body = NULL;
}

static void close_sock(httpc_conn_t *c)
{
    c->send_queued = 0;
    if (c->sock != NULL) {
        h2o_socket_close(c->sock);
        c->sock = NULL;
    }
    release_written(c);
}

/* Close with a reset (SO_LINGER 0): the kernel drops whatever it still
 * had queued for the peer.  Used when we give up on a peer, so that after
 * a partition heals a retransmission can never deliver a request we
 * abandoned. */
static void abort_sock(httpc_conn_t *c)
{
    struct linger lg = { 1, 0 };

    if (c->sock != NULL)
        setsockopt(h2o_socket_get_fd(c->sock), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close_sock(c);
}

static void reset_response(httpc_conn_t *c)
{
    c->state = RES_HEAD;
    c->status = 0;
    c->keepalive = 1;
    c->remaining = 0;
    memset(&c->chunked, 0, sizeof(c->chunked));
    c->chunked.consume_trailer = 1; /* else the final CRLF stays behind and spoils keep-alive */
    c->got_bytes = 0;
    h2o_buffer_dispose(&c->body);
    h2o_buffer_init(&c->body, &body_prototype);
}

/* An idle keep-alive connection should stay silent: any byte or EOF ends it. */
static void on_idle_read(h2o_socket_t *sock, const char *err)
{
    httpc_conn_t *c = sock->data;
    close_sock(c);
}

/*
 * End the request and call back.  Everything the callback may touch is
 * settled first and the body is detached, so that the callback can start a
 * new request, close or free c; nothing here touches c after it returns.
 */
static void finish(httpc_conn_t *c, int status, const char *err)
{
    httpc_cb cb = c->cb;
    void *arg = c->arg;
    h2o_buffer_t *body = c->body;
    const char *bytes = "";
    size_t len = 0;

    c->pending_err = NULL; /* the timer stays armed: see timer_set() */
    if (c->sock != NULL) {
        /* The response may be complete before h2o has reported the write
         * done (or before a body the server did not wait for is sent); the
         * connection stays usable, on_write() deals with the late report. */
        if (status > 0 && c->keepalive && c->sock->input->size == 0)
            h2o_socket_read_start(c->sock, on_idle_read);
        else
            close_sock(c);
    }
    if (c->sock != NULL && h2o_socket_is_writing(c->sock)) {
        release_written(c);
        c->wr_req = c->req, c->wr_body = c->body_own; /* freed on the report */
    } else {
        free(c->req);
        free(c->body_own);
    }
    c->req = c->body_own = NULL;
    h2o_buffer_init(&c->body, &body_prototype);
    c->busy = 0;
    c->cb = NULL;
    c->arg = NULL;
    if (status > 0 && body->size != 0) {
        h2o_buffer_reserve(&body, 1).base[0] = '\0';
        bytes = body->bytes;
        len = body->size;
    }
    cb(arg, status, bytes, len, err);
    h2o_buffer_dispose(&body);
}

static void fail(httpc_conn_t *c, const char *err)
{
    close_sock(c);
    finish(c, 0, err);
}

/* Append to the response body, enforcing max_body; -1 if too large. */
static int body_append(httpc_conn_t *c, const char *src, size_t n)
{
    if (c->body->size > c->max_body || n > c->max_body - c->body->size)
        return -1;
    if (n == 0)
        return 0;
    memcpy(h2o_buffer_reserve(&c->body, n).base, src, n);
    c->body->size += n;
    return 0;
}

static int header_is(const struct phr_header *h, const char *name)
{
    return h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0;
}

/* Does the comma-separated list value contain token (case-insensitive)? */
static int list_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token), i = 0, start, end;

    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            ++i;
        start = i;
        while (i < len && value[i] != ',')
            ++i;
        end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            --end;
        if (end - start == tlen && strncasecmp(value + start, token, tlen) == 0)
            return 1;
    }
    return 0;
}

/* Strict decimal: digits only, no sign, no overflow. */
static int parse_length(const char *s, size_t len, size_t *out)
{
    size_t v = 0, i;

    if (len == 0)
        return -1;
    for (i = 0; i != len; ++i) {
        if (s[i] < '0' || s[i] > '9' || v > (SIZE_MAX - 9) / 10)
            return -1;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/*
 * Parse the status line and headers at the start of the input and choose
 * how the body is framed.  Returns the bytes to consume, 0 if the head is
 * incomplete, -1 with *err on a response we cannot follow.
 */
static int parse_head(httpc_conn_t *c, const char **err)
{
    struct phr_header headers[HTTPC_MAX_HEADERS];
    size_t num_headers = HTTPC_MAX_HEADERS, msg_len, i, length = 0, v;
    int minor, status, r, has_length = 0, chunked = 0, conn_close = 0, conn_keepalive = 0;
    const char *msg;
    h2o_buffer_t *in = c->sock->input;

    *err = ERR_BAD;
    r = phr_parse_response(in->bytes, in->size, &minor, &status, &msg, &msg_len, headers, &num_headers, 0);
    if (r == -2)
        return in->size > HTTPC_MAX_HEAD ? -1 : 0;
    if (r <= 0 || status < 100 || status == 101)
        return -1;
    for (i = 0; i != num_headers; ++i) {
        struct phr_header *h = headers + i;
        if (h->name == NULL) /* obsolete line folding */
            return -1;
        if (header_is(h, "content-length")) {
            /* differing duplicates make the framing ambiguous */
            if (parse_length(h->value, h->value_len, &v) != 0 || (has_length && v != length))
                return -1;
            length = v;
            has_length = 1;
        } else if (header_is(h, "transfer-encoding")) {
            /* we can only frame "chunked" alone; anything else is unreadable */
            if (h->value_len != 7 || strncasecmp(h->value, "chunked", 7) != 0)
                return -1;
            chunked = 1;
        } else if (header_is(h, "connection")) {
            conn_close |= list_has_token(h->value, h->value_len, "close");
            conn_keepalive |= list_has_token(h->value, h->value_len, "keep-alive");
        }
    }
    if (status < 200) /* 100 Continue and friends: the real response follows */
        return r;
    c->status = status;
    c->keepalive = !conn_close && (minor >= 1 || conn_keepalive);
    if (c->head_only || status == 204 || status == 304) {
        c->state = RES_DONE;
    } else if (chunked) {
        c->state = RES_BODY_CHUNKED;
        if (has_length) /* RFC 7230 3.3.3: chunked wins, but do not trust the connection */
            c->keepalive = 0;
    } else if (has_length) {
        if (length > c->max_body) {
            *err = ERR_TOO_LARGE;
            return -1;
        }
        c->remaining = length;
        c->state = length == 0 ? RES_DONE : RES_BODY_LENGTH;
        /* allocate once (with room for the NUL finish() adds): length is at
         * most this request's max_body, a bound we configured (a state
         * transfer's is --memory), so a peer's header cannot claim more;
         * growing a 150 MB snapshot by doubling cost a quarter of a
         * joining replicator's time */
        if (length != 0)
            h2o_buffer_reserve(&c->body, length + 1);
    } else {
        c->state = RES_BODY_EOF;
        c->keepalive = 0;
    }
    return r;
}

/*
 * Consume what has arrived.  Returns 1 when the request has been finished
 * (callback done: c may be gone), 0 if more input is needed.
 */
static int process_input(httpc_conn_t *c)
{
    h2o_buffer_t **in = &c->sock->input;
    const char *err = ERR_BAD;
    size_t n;
    ssize_t ret;
    int r;

    while (c->state != RES_DONE) {
        switch (c->state) {
        case RES_HEAD:
            if ((r = parse_head(c, &err)) < 0)
                goto error;
            if (r == 0)
                return 0;
            h2o_buffer_consume(in, (size_t)r);
            break;
        case RES_BODY_LENGTH:
            n = (*in)->size < c->remaining ? (*in)->size : c->remaining;
            if (n == 0)
                return 0;
            if (body_append(c, (*in)->bytes, n) != 0)
                goto too_large;
            h2o_buffer_consume(in, n);
            if ((c->remaining -= n) == 0)
                c->state = RES_DONE;
            break;
        case RES_BODY_CHUNKED:
            if ((*in)->size == 0)
                return 0;
            /* decoded in place; the decoder keeps its own state across reads */
            n = (*in)->size;
            if ((ret = phr_decode_chunked(&c->chunked, (*in)->bytes, &n)) == -1)
                goto error;
            if (body_append(c, (*in)->bytes, n) != 0)
                goto too_large;
            if (ret >= 0) {
                c->state = RES_DONE;
                if (ret > 0) /* bytes after the response: the connection is out of step */
                    c->keepalive = 0;
            }
            h2o_buffer_consume(in, (*in)->size);
            break;
        case RES_BODY_EOF:
            if (body_append(c, (*in)->bytes, (*in)->size) != 0)
                goto too_large;
            h2o_buffer_consume(in, (*in)->size);
            return 0;
        case RES_DONE:
            break;
        }
    }
    finish(c, c->status, NULL);
    return 1;

too_large:
    err = ERR_TOO_LARGE;
error:
    fail(c, err);
    return 1;
}

/*
 * The connection ended (EOF, reset, write error) before the response did.
 * A kept-alive connection may have been closed by the peer just as we
 * reused it: then nothing was processed, and one retry is safe.
 */
static void on_conn_lost(httpc_conn_t *c)
{
    if (c->reused && !c->retried && !c->got_bytes) {
        close_sock(c);
        reset_response(c);
        c->reused = 0;
        c->retried = 1;
        start_connect(c);
        return;
    }
    fail(c, ERR_CLOSED);
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    httpc_conn_t *c = sock->data;

    if (c->send_queued) { /* a byte or EOF before we even sent: start afresh */
        on_conn_lost(c);
        return;
    }
    if (sock->input->size != 0) {
        c->got_bytes = 1;
        if (process_input(c))
            return;
    }
    if (err == NULL)
        return;
    if (c->state == RES_BODY_EOF) {
        c->state = RES_DONE;
        finish(c, c->status, NULL);
        return;
    }
    on_conn_lost(c);
}

static void on_write(h2o_socket_t *sock, const char *err)
{
    httpc_conn_t *c = sock->data;

    release_written(c);
    if (c->send_queued) { /* the late report httpc_request() waited for */
        c->send_queued = 0;
        if (err == NULL) {
            send_request(c);
        } else {
            close_sock(c);
            c->reused = 0;
            start_connect(c);
        }
        return;
    }
    if (!c->busy) { /* the late report of a finished request's write */
        if (err != NULL)
            close_sock(c);
        return;
    }
    if (err == NULL)
        return;
    /* once a response is arriving, the read side decides how it ends */
    if (!c->got_bytes)
        on_conn_lost(c);
}

static void send_request(httpc_conn_t *c)
{
    h2o_iovec_t buf[2] = { h2o_iovec_init(c->req, c->req_len), h2o_iovec_init(c->body_own, c->body_len) };

    h2o_socket_read_start(c->sock, on_read);
    h2o_socket_write(c->sock, buf, c->body_own != NULL ? 2 : 1, on_write);
}

/*
 * Writable after a non-blocking connect.  The socket was handed to h2o
 * without H2O_SOCKET_FLAG_IS_CONNECTING so that SO_ERROR is read here and
 * "refused" can be told apart from other failures.
 */
static void on_connect(h2o_socket_t *sock, const char *err)
{
    httpc_conn_t *c = sock->data;
    int so_err = 0;
    socklen_t len = sizeof(so_err);

    if (err == NULL && getsockopt(h2o_socket_get_fd(sock), SOL_SOCKET, SO_ERROR, &so_err, &len) != 0)
        so_err = errno;
    if (err != NULL || so_err != 0) {
        fail(c, so_err == ECONNREFUSED ? ERR_REFUSED : ERR_CONNECT);
        return;
    }
    send_request(c);
}

/* Bind to src (port 0) before connect, as h2o_socket_connect() cannot. */
static void start_connect(httpc_conn_t *c)
{
    int fd, on = 1, saved;

    if ((fd = socket(c->dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
        goto error;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (c->src_len != 0) {
#ifdef IP_BIND_ADDRESS_NO_PORT
        /* pick the ephemeral port at connect(), per destination */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof(on));
#endif
        if (bind(fd, (struct sockaddr *)&c->src, c->src_len) != 0)
            goto error;
    }
    if (connect(fd, (struct sockaddr *)&c->dst, c->dst_len) != 0 && errno != EINPROGRESS)
        goto error;
    c->sock = h2o_evloop_socket_create(c->loop, fd, 0);
    c->sock->data = c;
    h2o_socket_notify_write(c->sock, on_connect);
    return;

error:
    saved = errno;
    if (fd != -1)
        close(fd);
    defer_failure(c, saved == ECONNREFUSED ? ERR_REFUSED : ERR_CONNECT);
}

static void on_timer(h2o_socket_t *sock, const char *err)
{
    httpc_conn_t *c = sock->data;

    h2o_buffer_consume(&sock->input, sock->input->size);
    c->armed_ns = 0;
    if (!c->busy)
        return;
    if (c->pending_err != NULL) {
        fail(c, c->pending_err);
        return;
    }
    /* an expiry left over from an earlier arming is not ours: check the clock */
    if (now_ms() * 1000000 >= c->deadline_ns) {
        abort_sock(c);
        fail(c, ERR_TIMEOUT);
        return;
    }
    timer_set(c, c->deadline_ns);
}

/* Parse "a.b.c.d" or "::1" (port given separately) into ss. */
static int parse_ip(const char *ip, size_t iplen, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[INET6_ADDRSTRLEN];
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    if (iplen == 0 || iplen >= sizeof(buf))
        return -1;
    memcpy(buf, ip, iplen);
    buf[iplen] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, buf, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len = sizeof(*sin6);
        return 0;
    }
    return -1;
}

/* "IPv4:PORT" or "[IPv6]:PORT" */
static int parse_dst(const char *dst, struct sockaddr_storage *ss, socklen_t *len)
{
    const char *colon = strrchr(dst, ':'), *ip = dst, *ip_end = colon;
    size_t port;

    if (colon == NULL || parse_length(colon + 1, strlen(colon + 1), &port) != 0 || port == 0 || port > 65535)
        return -1;
    if (dst[0] == '[') {
        if (colon == dst || colon[-1] != ']')
            return -1;
        ++ip;
        --ip_end;
    } else if (memchr(dst, ':', (size_t)(colon - dst)) != NULL) {
        return -1; /* a bare IPv6 address is ambiguous */
    }
    if (ip_end < ip)
        return -1;
    return parse_ip(ip, (size_t)(ip_end - ip), (uint16_t)port, ss, len);
}

httpc_conn_t *httpc_new(h2o_loop_t *loop, const char *src_ip, const char *dst)
{
    httpc_conn_t *c = NULL;
    int tfd = -1;

    if (loop == NULL || dst == NULL || strlen(dst) >= sizeof(c->host))
        goto error;
    c = h2o_mem_alloc(sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->max_body = HTTPC_DEFAULT_MAX_BODY;
    strcpy(c->host, dst);
    if (parse_dst(dst, &c->dst, &c->dst_len) != 0)
        goto error;
    if (src_ip != NULL &&
        (parse_ip(src_ip, strlen(src_ip), 0, &c->src, &c->src_len) != 0 || c->src.ss_family != c->dst.ss_family))
        goto error;
    if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) == -1)
        goto error;
    c->timer = h2o_evloop_socket_create(loop, tfd, 0);
    c->timer->data = c;
    h2o_socket_read_start(c->timer, on_timer);
    h2o_buffer_init(&c->body, &body_prototype);
    return c;

error:
    free(c);
    return NULL;
}

/* RFC 7230 tchar */
static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; ++s)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s) != NULL))
            return 0;
    return 1;
}

static int is_path(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; ++s)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 0;
    return 1;
}

/* Whole "Name: value\r\n" lines, no bare CR/LF, no empty line: nothing can end the head early. */
static int is_header_lines(const char *s)
{
    size_t len = strlen(s), i;

    if (len == 0)
        return 1;
    if (len < 2 || s[0] == '\r' || strcmp(s + len - 2, "\r\n") != 0 || strstr(s, "\r\n\r\n") != NULL)
        return 0;
    for (i = 0; i != len; ++i) {
        if (s[i] == '\r' && s[i + 1] != '\n')
            return 0;
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
            return 0;
    }
    return 1;
}

/* The head, and after it a copy of body (len bytes) unless the body is
 * owned (c->body_own, sent as it is). */
static void build_request(httpc_conn_t *c,
                          const char *method,
                          const char *path,
                          const char *extra_headers,
                          const char *body,
                          size_t len)
{
    size_t copy = c->body_own != NULL ? 0 : len;
    char length[48] = "";
    int head_len;

    if (len != 0 || body != NULL || c->body_own != NULL ||
        (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0))
        snprintf(length, sizeof(length), "Content-Length: %zu\r\n", len);
    head_len =
      snprintf(NULL, 0, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n", method, path, c->host, extra_headers, length);
    c->req = h2o_mem_alloc((size_t)head_len + 1 + copy);
    snprintf(c->req,
             (size_t)head_len + 1,
             "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n",
             method,
             path,
             c->host,
             extra_headers,
             length);
    if (copy != 0)
        memcpy(c->req + head_len, body, copy);
    c->req_len = (size_t)head_len + copy;
}

static int start_request(httpc_conn_t *c,
                         const char *method,
                         const char *path,
                         const char *extra_headers,
                         const char *body,
                         char *owned,
                         size_t len,
                         uint64_t timeout_ms,
                         httpc_cb cb,
                         void *arg)
{
    if (extra_headers == NULL)
        extra_headers = "";
    if (c == NULL || c->busy || cb == NULL || method == NULL || path == NULL || !is_token(method) || !is_path(path) ||
        !is_header_lines(extra_headers) || (body == NULL && owned == NULL && len != 0) || timeout_ms == 0) {
        free(owned);
        return -1;
    }
    if (timeout_ms > HTTPC_MAX_TIMEOUT_MS)
        timeout_ms = HTTPC_MAX_TIMEOUT_MS;

    c->body_own = owned;
    c->body_len = owned != NULL ? len : 0;
    build_request(c, method, path, extra_headers, body, len);
    c->busy = 1;
    c->cb = cb;
    c->arg = arg;
    c->head_only = strcmp(method, "HEAD") == 0;
    c->pending_err = NULL;
    c->retried = 0;
    reset_response(c);
    c->deadline_ns = now_ms() * 1000000 + timeout_ms * 1000000;
    timer_set(c, c->deadline_ns);
    /* h2o allows one write at a time: on a connection whose last write has
     * not been reported done yet (its answer came first, see finish()) the
     * request goes out from on_write() */
    if (c->sock != NULL && h2o_socket_is_writing(c->sock)) {
        c->reused = 1;
        c->send_queued = 1;
        h2o_socket_read_start(c->sock, on_read);
    } else if (c->sock != NULL) {
        c->reused = 1;
        send_request(c);
    } else {
        c->reused = 0;
        start_connect(c);
    }
    return 0;
}

int httpc_request(httpc_conn_t *c,
                  const char *method,
                  const char *path,
                  const char *extra_headers,
                  const char *body,
                  size_t len,
                  uint64_t timeout_ms,
                  httpc_cb cb,
                  void *arg)
{
    return start_request(c, method, path, extra_headers, body, NULL, len, timeout_ms, cb, arg);
}

int httpc_request_owned(httpc_conn_t *c,
                        const char *method,
                        const char *path,
                        const char *extra_headers,
                        char *body,
                        size_t len,
                        uint64_t timeout_ms,
                        httpc_cb cb,
                        void *arg)
{
    return start_request(c, method, path, extra_headers, NULL, body, len, timeout_ms, cb, arg);
}

int httpc_busy(const httpc_conn_t *c)
{
    return c->busy;
}

void httpc_set_max_body(httpc_conn_t *c, size_t max)
{
    c->max_body = max;
}

void httpc_close(httpc_conn_t *c)
{
    abort_sock(c);
    if (c->busy)
        finish(c, 0, ERR_CANCELED);
}

void httpc_free(httpc_conn_t *c)
{
    if (c == NULL)
        return;
    close_sock(c);
    h2o_socket_close(c->timer); /* closes the timerfd */
    free(c->req);
    free(c->body_own);
    h2o_buffer_dispose(&c->body);
    free(c);
}
