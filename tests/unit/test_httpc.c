/*
 * test_httpc.c - unit test of src/httpc.c, the replicator's HTTP client.
 *
 * A tiny HTTP server runs in a forked child (blocking sockets, one
 * grandchild per connection) on 127.0.0.60, with paths that each misbehave
 * in one way: never answer, answer late, send garbage, close early, chunk,
 * send 20 MB...  It counts accepted connections and records the last peer
 * address in a shared mapping, so the test can check keep-alive reuse and
 * the bound source address (127.0.0.61).  The client side runs an h2o
 * evloop in bounded loops.  The server's process group is killed and
 * reaped at exit, whatever happened.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httpc.h"
#include "tests/unit/tap.h"

#define SRV_IP "127.0.0.60"
#define CLI_IP "127.0.0.61"
#define BIG_LEN (20 * 1024 * 1024)

struct shared {
    int accepts;
    char peer[64];
};

static struct shared *sh;
static pid_t server_pid = -1;
static char srv_addr[64];
static h2o_loop_t *loop;

/* ---- the test server (child process) ---- */

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len != 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void big_pattern(char *buf, size_t len)
{
    for (size_t i = 0; i != len; ++i)
        buf[i] = (char)('a' + i % 26);
}

static int respond(int fd, int status, const char *headers, const char *body, size_t len, int head_only)
{
    char head[512];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status, len, headers);
    if (write_all(fd, head, (size_t)n) != 0)
        return -1;
    return head_only ? 0 : write_all(fd, body, len);
}

/*
 * Read one request into buf; returns its total length, 0 on EOF, -1 on
 * error.  "POST /early" returns after the head, with *unread body bytes
 * still to come, so the server can answer before the body is sent.
 */
static ssize_t read_request(int fd, char *buf, size_t cap, char **body, size_t *body_len, size_t *unread)
{
    size_t have = 0, need = 0;
    char *end, *cl;

    *unread = 0;
    for (;;) {
        ssize_t n;
        buf[have] = '\0';
        if (need == 0 && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            *body = end + 4;
            *body_len = 0;
            if ((cl = strcasestr(buf, "\r\ncontent-length:")) != NULL && cl < end)
                *body_len = strtoul(cl + 17, NULL, 10);
            need = (size_t)(*body - buf) + *body_len;
            if (strncmp(buf, "POST /early ", 12) == 0) {
                *unread = need - have;
                return (ssize_t)have;
            }
        }
        if (need != 0 && have >= need)
            return (ssize_t)need;
        if (have + 1 >= cap)
            return -1;
        n = read(fd, buf + have, cap - 1 - have);
        if (n <= 0)
            return n;
        have += (size_t)n;
    }
}

/*
 * "/size/N": N pattern bytes with Content-Length; "/sizechunked/N": in
 * chunks of 4093 bytes (crossing every power-of-two boundary);
 * "/sizeclose/N": delimited by close.
 */
static void serve_size(int fd, const char *what)
{
    size_t n = strtoul(strchr(what, '/') + 1, NULL, 10);
    char *b = malloc(n + 1), tmp[64];

    big_pattern(b, n);
    if (strncmp(what, "/", 1) == 0) {
        respond(fd, 200, "", b, n, 0);
    } else if (strncmp(what, "chunked/", 8) == 0) {
        const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        write_all(fd, h, strlen(h));
        for (size_t off = 0; off < n; off += 4093) {
            size_t m = n - off < 4093 ? n - off : 4093;
            int hl = snprintf(tmp, sizeof(tmp), "%zx\r\n", m);
            write_all(fd, tmp, (size_t)hl);
            write_all(fd, b + off, m);
            write_all(fd, "\r\n", 2);
        }
        write_all(fd, "0\r\n\r\n", 5);
    } else {
        const char *h = "HTTP/1.1 200 OK\r\n\r\n";
        write_all(fd, h, strlen(h));
        write_all(fd, b, n);
    }
    free(b);
}

static void serve_conn(int fd)
{
    size_t cap = 4 << 20, body_len, unread;
    char *buf = malloc(cap), *body, *big = NULL, method[16], path[256], tmp[64];
    ssize_t n;

    while ((n = read_request(fd, buf, cap, &body, &body_len, &unread)) > 0) {
        int head = 0;
        if (sscanf(buf, "%15s %255s", method, path) != 2)
            break;
        head = strcmp(method, "HEAD") == 0;
        if (strcmp(path, "/hello") == 0) {
            respond(fd, 200, "", "hello", 5, head);
        } else if (strcmp(path, "/early") == 0) {
            respond(fd, 200, "", "early", 5, head);
            while (unread != 0 && (n = read(fd, buf, unread < cap ? unread : cap)) > 0)
                unread -= (size_t)n; /* then drain the body, as HTTP requires */
        } else if (strcmp(path, "/echo") == 0) {
            respond(fd, 201, "", body, body_len, head);
        } else if (strcmp(path, "/head") == 0) {
            respond(fd, 200, "", buf, (size_t)(body - buf), head);
        } else if (strcmp(path, "/close-after") == 0) {
            respond(fd, 200, "", "bye", 3, head);
            break; /* a keep-alive response, then the peer goes away */
        } else if (strcmp(path, "/conn-close") == 0) {
            respond(fd, 200, "Connection: close\r\n", "cc", 2, head);
            break;
        } else if (strcmp(path, "/chunked") == 0) {
            const char *parts[] = { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
                                    "lo\r\n6;ext=1\r\n wor",
                                    "ld\r\n0\r\n",
                                    "X-Trailer: 1\r\n\r\n" };
            for (size_t i = 0; i != sizeof(parts) / sizeof(parts[0]); ++i) {
                write_all(fd, parts[i], strlen(parts[i]));
                usleep(20000); /* make the client see each piece in its own read */
            }
        } else if (strcmp(path, "/big") == 0 || strcmp(path, "/bigchunked") == 0) {
            big = malloc(BIG_LEN);
            big_pattern(big, BIG_LEN);
            if (strcmp(path, "/big") == 0) {
                respond(fd, 200, "", big, BIG_LEN, 0);
            } else {
                const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                write_all(fd, h, strlen(h));
                for (size_t off = 0; off < BIG_LEN; off += 65536) {
                    int m = snprintf(tmp, sizeof(tmp), "%x\r\n", 65536);
                    write_all(fd, tmp, (size_t)m);
                    write_all(fd, big + off, 65536);
                    write_all(fd, "\r\n", 2);
                }
                write_all(fd, "0\r\n\r\n", 5);
            }
            free(big);
            big = NULL;
        } else if (strncmp(path, "/size", 5) == 0) {
            serve_size(fd, path + 5);
            if (strncmp(path, "/sizeclose/", 11) == 0)
                break;
        } else if (strcmp(path, "/nolength") == 0) {
            const char *r = "HTTP/1.1 200 OK\r\n\r\nuntil close";
            write_all(fd, r, strlen(r));
            break;
        } else if (strcmp(path, "/nolength-big") == 0) {
            const char *r = "HTTP/1.1 200 OK\r\n\r\n";
            char b[4000];
            memset(b, 'x', sizeof(b));
            write_all(fd, r, strlen(r));
            write_all(fd, b, sizeof(b));
            break;
        } else if (strcmp(path, "/toolarge") == 0) {
            char b[2000];
            memset(b, 'x', sizeof(b));
            respond(fd, 200, "", b, sizeof(b), head);
        } else if (strcmp(path, "/garbage") == 0) {
            const char *r = "garbage, not HTTP\r\n\r\n";
            write_all(fd, r, strlen(r));
        } else if (strcmp(path, "/badlength") == 0) {
            const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\nhello";
            write_all(fd, r, strlen(r));
        } else if (strcmp(path, "/truncated") == 0) {
            const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
            write_all(fd, r, strlen(r));
            break;
        } else if (strcmp(path, "/continue") == 0) {
            const char *r = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            write_all(fd, r, strlen(r));
        } else if (strcmp(path, "/slow") == 0) {
            usleep(500000);
            respond(fd, 200, "", "slow", 4, head);
        } else if (strcmp(path, "/sleep") == 0) {
            char c;
            while (read(fd, &c, 1) > 0) /* never answer; leave when the client closes */
                ;
            break;
        } else {
            respond(fd, 404, "", "", 0, head);
        }
    }
    close(fd);
    free(buf);
    _exit(0);
}

static void server_loop(int lfd)
{
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof(peer);
        int fd = accept(lfd, (struct sockaddr *)&peer, &len);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        inet_ntop(AF_INET, &peer.sin_addr, sh->peer, sizeof(sh->peer));
        __atomic_add_fetch(&sh->accepts, 1, __ATOMIC_SEQ_CST);
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(lfd);
            serve_conn(fd);
        }
        close(fd);
    }
}

static void stop_server(void)
{
    if (server_pid > 0) {
        kill(-server_pid, SIGKILL);
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
}

static int listen_on(const char *ip, int do_listen, int *port)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0), on = 1;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &sin.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || (do_listen && listen(fd, 64) != 0) ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

static int start_server(void)
{
    int port, lfd;

    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || (lfd = listen_on(SRV_IP, 1, &port)) < 0)
        return -1;
    snprintf(srv_addr, sizeof(srv_addr), "%s:%d", SRV_IP, port);
    if ((server_pid = fork()) == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGCHLD, SIG_IGN); /* reap connection handlers automatically */
        server_loop(lfd);
    }
    setpgid(server_pid, server_pid);
    close(lfd);
    atexit(stop_server);
    return server_pid > 0 ? 0 : -1;
}

/* ---- the client side ---- */

struct result {
    int called;
    int status;
    char *body;
    size_t len;
    const char *err;
    uint64_t at_ms;
    /* optional follow-ups run inside the callback */
    httpc_conn_t *conn;
    int chain;     /* issue another GET /hello on conn while > 0 */
    int free_conn; /* httpc_free(conn) from inside the callback */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_done(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct result *r = arg;

    ++r->called;
    r->status = status;
    r->err = err;
    r->at_ms = now_ms();
    free(r->body);
    r->body = malloc(len + 1);
    memcpy(r->body, body, len);
    r->body[len] = '\0';
    r->len = len;
    if (body[len] != '\0')
        r->status = -1; /* the NUL terminator is part of the contract */
    if (r->chain > 0) {
        --r->chain;
        r->called = 0;
        if (httpc_request(r->conn, "GET", "/hello", NULL, NULL, 0, 2000, on_done, r) != 0)
            r->called = 99;
    }
    if (r->free_conn)
        httpc_free(r->conn);
}

static void reset(struct result *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Run the loop until the callback has been called or max_ms passed. */
static void run_until(struct result *r, uint64_t max_ms)
{
    uint64_t start = now_ms();
    for (int i = 0; i < 100000 && !r->called && now_ms() - start < max_ms; ++i)
        h2o_evloop_run(loop, 10);
}

static void run_for(uint64_t ms)
{
    uint64_t start = now_ms();
    for (int i = 0; i < 100000 && now_ms() - start < ms; ++i)
        h2o_evloop_run(loop, 10);
}

static int accepts(void)
{
    return __atomic_load_n(&sh->accepts, __ATOMIC_SEQ_CST);
}

/* One GET on c, run to completion. */
static void get(httpc_conn_t *c, const char *path, uint64_t timeout_ms, struct result *r)
{
    reset(r);
    if (httpc_request(c, "GET", path, NULL, NULL, 0, timeout_ms, on_done, r) != 0) {
        r->called = -1;
        return;
    }
    run_until(r, timeout_ms + 2000);
}

static void test_basic(void)
{
    struct result r = { 0 };
    httpc_conn_t *c = httpc_new(loop, NULL, srv_addr);
    char *post = malloc(100000);

    ok(c != NULL, "httpc_new");
    ok(httpc_new(loop, NULL, "127.0.0.60") == NULL, "httpc_new rejects a dst without port");
    ok(httpc_new(loop, "::1", srv_addr) == NULL, "httpc_new rejects a src of another family");
    {
        httpc_conn_t *c6 = httpc_new(loop, "::1", "[::1]:8090");
        ok(c6 != NULL, "httpc_new accepts [IPv6]:port");
        httpc_free(c6);
    }

    ok(httpc_request(c, "GET", "/hello", NULL, NULL, 0, 2000, on_done, &r) == 0, "GET started");
    is_int(r.called, 0, "callback not called from inside httpc_request");
    ok(httpc_busy(c), "busy while in flight");
    is_int(httpc_request(c, "GET", "/hello", NULL, NULL, 0, 2000, on_done, &r), -1, "second request while busy: -1");
    run_until(&r, 3000);
    is_int(r.called, 1, "GET callback called once");
    is_int(r.status, 200, "GET status");
    ok(r.len == 5 && strcmp(r.body, "hello") == 0, "GET body");
    ok(r.err == NULL, "no error on success");
    ok(!httpc_busy(c), "not busy after the callback");

    for (int i = 0; i < 100000; ++i)
        post[i] = (char)(i * 7);
    reset(&r);
    ok(httpc_request(c, "POST", "/echo", "X-Test: 1\r\n", post, 100000, 2000, on_done, &r) == 0, "POST started");
    run_until(&r, 3000);
    is_int(r.status, 201, "POST status");
    ok(r.len == 100000 && memcmp(r.body, post, 100000) == 0, "POST body echoed");

    /* a response complete while the body is still being sent */
    {
        size_t big_len = 16 << 20;
        char *big = calloc(1, big_len);
        reset(&r);
        ok(httpc_request(c, "POST", "/early", NULL, big, big_len, 5000, on_done, &r) == 0, "POST /early started");
        run_until(&r, 6000);
        ok(r.status == 200 && strcmp(r.body, "early") == 0, "response before the body was sent");
        free(big);
        get(c, "/hello", 5000, &r);
        ok(r.status == 200 && strcmp(r.body, "hello") == 0, "next request after an early response");

        /* the same with a body handed over: httpc frees it only once h2o
         * has written it (ASan would see a use after free otherwise) */
        reset(&r);
        ok(httpc_request_owned(c, "POST", "/early", NULL, calloc(1, big_len), big_len, 5000, on_done, &r) == 0,
           "owned POST /early started");
        run_until(&r, 6000);
        ok(r.status == 200 && strcmp(r.body, "early") == 0, "owned body: response before the body was sent");
        get(c, "/hello", 5000, &r);
        ok(r.status == 200 && strcmp(r.body, "hello") == 0, "next request after that early response");
    }

    /* an owned body is sent as it is, Content-Length and all */
    {
        char *own = malloc(3000);
        memset(own, 'o', 3000);
        reset(&r);
        ok(httpc_request_owned(c, "POST", "/echo", NULL, own, 3000, 2000, on_done, &r) == 0, "owned POST started");
        run_until(&r, 3000);
        ok(r.status == 201 && r.len == 3000 && r.body[0] == 'o' && r.body[2999] == 'o', "owned body echoed");
        is_int(httpc_request_owned(c, "POST", "/a b", NULL, malloc(10), 10, 1000, on_done, &r),
               -1,
               "a rejected owned request frees the body (LeakSanitizer checks)");
    }

    reset(&r);
    ok(httpc_request(c, "PUT", "/head", "X-Test: 1\r\nX-Other: two\r\n", "", 0, 2000, on_done, &r) == 0, "PUT started");
    run_until(&r, 3000);
    {
        char host[100];
        snprintf(host, sizeof(host), "\r\nHost: %s\r\n", srv_addr);
        ok(r.status == 200 && strncmp(r.body, "PUT /head HTTP/1.1\r\n", 20) == 0, "request line");
        ok(r.body != NULL && strstr(r.body, host) != NULL, "Host header sent");
        ok(r.body != NULL && strstr(r.body, "\r\nContent-Length: 0\r\n") != NULL, "Content-Length sent");
        ok(r.body != NULL && strstr(r.body, "\r\nX-Test: 1\r\nX-Other: two\r\n") != NULL, "extra headers sent");
    }

    reset(&r);
    ok(httpc_request(c, "HEAD", "/hello", NULL, NULL, 0, 2000, on_done, &r) == 0, "HEAD started");
    run_until(&r, 3000);
    ok(r.status == 200 && r.len == 0, "HEAD: status, no body awaited");

    is_int(httpc_request(c, "GE T", "/", NULL, NULL, 0, 1000, on_done, &r), -1, "bad method rejected");
    is_int(httpc_request(c, "GET", "/a b", NULL, NULL, 0, 1000, on_done, &r), -1, "bad path rejected");
    is_int(httpc_request(c, "GET", "/", "X: 1", NULL, 0, 1000, on_done, &r), -1, "header without CRLF rejected");
    is_int(httpc_request(c, "GET", "/", "X: 1\r\n\r\nGET", NULL, 0, 1000, on_done, &r), -1, "empty line rejected");
    is_int(httpc_request(c, "GET", "/", NULL, NULL, 5, 1000, on_done, &r), -1, "len without body rejected");
    is_int(httpc_request(c, "GET", "/", NULL, NULL, 0, 0, on_done, &r), -1, "timeout 0 rejected");
    ok(!httpc_busy(c), "rejected requests leave it idle");

    httpc_free(c);
    free(post);
    reset(&r);
}

static void test_keepalive_and_bind(void)
{
    struct result r = { 0 };
    httpc_conn_t *c = httpc_new(loop, CLI_IP, srv_addr);
    int before = accepts(), all_ok = 1;

    for (int i = 0; i < 3; ++i) {
        get(c, "/hello", 2000, &r);
        all_ok &= r.called == 1 && r.status == 200;
    }
    ok(all_ok, "3 sequential GETs succeed");
    is_int(accepts() - before, 1, "3 requests, 1 connection");
    ok(strcmp(sh->peer, CLI_IP) == 0, "source address bound to " CLI_IP " (server saw %s)", sh->peer);

    /* the next request issued from inside the callback reuses the connection too */
    before = accepts();
    reset(&r);
    r.conn = c;
    r.chain = 2;
    ok(httpc_request(c, "GET", "/hello", NULL, NULL, 0, 2000, on_done, &r) == 0, "chained GET started");
    for (int i = 0; i < 300 && !(r.called && r.chain == 0); ++i)
        h2o_evloop_run(loop, 10);
    ok(r.called == 1 && r.status == 200 && r.chain == 0, "3 requests chained from callbacks");
    is_int(accepts() - before, 0, "chained requests reuse the connection");

    /* The answer is in before the loop runs again: h2o delivers the read
     * before the report that the write is done, so the chained request
     * finds the socket still "writing" and must wait for that report
     * rather than open a new connection. */
    before = accepts();
    reset(&r);
    r.conn = c;
    r.chain = 1;
    ok(httpc_request(c, "GET", "/hello", NULL, NULL, 0, 2000, on_done, &r) == 0, "GET started, answer left waiting");
    usleep(100 * 1000);
    for (int i = 0; i < 300 && !(r.called && r.chain == 0); ++i)
        h2o_evloop_run(loop, 10);
    ok(r.called == 1 && r.status == 200 && r.chain == 0, "request chained before the write report succeeds");
    is_int(accepts() - before, 0, "... on the same connection");

    before = accepts();
    get(c, "/conn-close", 2000, &r);
    ok(r.status == 200 && strcmp(r.body, "cc") == 0, "Connection: close response");
    get(c, "/hello", 2000, &r);
    ok(r.status == 200, "request after Connection: close");
    is_int(accepts() - before, 1, "Connection: close forces a new connection");
    httpc_free(c);
    reset(&r);
}

static void test_peer_closes_idle(void)
{
    struct result r = { 0 };
    httpc_conn_t *c = httpc_new(loop, CLI_IP, srv_addr);
    int before;

    /* the peer closes right after its keep-alive response; reuse at once */
    get(c, "/close-after", 2000, &r);
    ok(r.status == 200 && strcmp(r.body, "bye") == 0, "keep-alive response, then the peer closes");
    before = accepts();
    get(c, "/hello", 2000, &r);
    ok(r.called == 1 && r.status == 200, "immediate next request succeeds (err %s)", r.err ? r.err : "-");
    is_int(accepts() - before, 1, "... on a new connection");

    /* same, but the loop notices the close while idle */
    get(c, "/close-after", 2000, &r);
    run_for(200);
    before = accepts();
    get(c, "/hello", 2000, &r);
    ok(r.called == 1 && r.status == 200, "next request after idle close succeeds");
    is_int(accepts() - before, 1, "... on a new connection");
    httpc_free(c);
    reset(&r);
}

static void test_timeout(void)
{
    struct result r = { 0 };
    httpc_conn_t *c = httpc_new(loop, NULL, srv_addr);
    uint64_t start, elapsed;
    int before;

    reset(&r);
    start = now_ms();
    ok(httpc_request(c, "GET", "/sleep", NULL, NULL, 0, 300, on_done, &r) == 0, "GET /sleep started");
    run_until(&r, 3000);
    elapsed = r.at_ms - start;
    ok(r.called == 1 && r.status == 0 && r.err != NULL && strcmp(r.err, "timeout") == 0,
       "server never answers: timeout");
    ok(elapsed >= 300 && elapsed < 450, "timeout after %llu ms (want 300..450)", (unsigned long long)elapsed);

    /* a response arriving after the timeout must not answer the next request */
    get(c, "/slow", 200, &r);
    ok(r.status == 0 && r.err != NULL && strcmp(r.err, "timeout") == 0, "slow answer: timeout");
    before = accepts();
    get(c, "/hello", 2000, &r);
    ok(r.status == 200 && strcmp(r.body, "hello") == 0, "next request gets its own response");
    is_int(accepts() - before, 1, "timeout closed the connection");

    /* the callback may free the connection, even from the timer */
    reset(&r);
    r.conn = c;
    r.free_conn = 1;
    ok(httpc_request(c, "GET", "/sleep", NULL, NULL, 0, 100, on_done, &r) == 0, "GET /sleep started");
    run_until(&r, 2000);
    ok(r.called == 1 && r.err != NULL && strcmp(r.err, "timeout") == 0, "timeout; callback freed the connection");
    run_for(50);
    reset(&r);
}

static void test_refused(void)
{
    struct result r = { 0 };
    char addr[64];
    int port, fd = listen_on(SRV_IP, 0, &port);
    httpc_conn_t *c;
    uint64_t start;

    close(fd); /* bound, never listened: nobody is there */
    snprintf(addr, sizeof(addr), "%s:%d", SRV_IP, port);
    c = httpc_new(loop, CLI_IP, addr);
    start = now_ms();
    ok(httpc_request(c, "GET", "/", NULL, NULL, 0, 2000, on_done, &r) == 0, "GET to a closed port started");
    is_int(r.called, 0, "callback not called from inside httpc_request");
    run_until(&r, 3000);
    ok(r.called == 1 && r.status == 0 && r.err != NULL && strcmp(r.err, "connection refused") == 0,
       "connection refused (err %s)",
       r.err ? r.err : "-");
    ok(r.at_ms - start < 500, "refusal reported at once, not at the timeout");
    httpc_free(c);

    reset(&r);
}

static int is_big(const struct result *r)
{
    if (r->len != BIG_LEN)
        return 0;
    for (size_t i = 0; i != BIG_LEN; ++i)
        if (r->body[i] != (char)('a' + i % 26))
            return 0;
    return 1;
}

static void test_bodies(void)
{
    struct result r = { 0 };
    httpc_conn_t *c = httpc_new(loop, NULL, srv_addr);
    int before = accepts();

    get(c, "/chunked", 2000, &r);
    ok(r.status == 200 && strcmp(r.body, "hello world") == 0, "chunked response in pieces, with extension and trailer");
    get(c, "/hello", 2000, &r);
    ok(r.status == 200 && strcmp(r.body, "hello") == 0, "keep-alive after a chunked response");
    get(c, "/continue", 2000, &r);
    ok(r.status == 200 && strcmp(r.body, "ok") == 0, "100 Continue skipped");
    is_int(accepts() - before, 1, "all on one connection");

    get(c, "/big", 20000, &r);
    ok(r.status == 200 && is_big(&r), "20 MB Content-Length body (%zu bytes)", r.len);
    get(c, "/bigchunked", 20000, &r);
    ok(r.status == 200 && is_big(&r), "20 MB chunked body (%zu bytes)", r.len);

    get(c, "/nolength", 2000, &r);
    ok(r.status == 200 && strcmp(r.body, "until close") == 0, "body delimited by close");

    httpc_set_max_body(c, 1000);
    get(c, "/toolarge", 2000, &r);
    ok(r.status == 0 && r.err != NULL && strcmp(r.err, "response too large") == 0, "Content-Length over the cap");
    get(c, "/bigchunked", 5000, &r);
    ok(r.status == 0 && r.err != NULL && strcmp(r.err, "response too large") == 0, "chunked body over the cap");
    get(c, "/nolength-big", 2000, &r);
    ok(r.status == 0 && r.err != NULL && strcmp(r.err, "response too large") == 0, "close-delimited over the cap");
    httpc_set_max_body(c, HTTPC_DEFAULT_MAX_BODY);
    get(c, "/hello", 2000, &r);
    ok(r.status == 200, "fine again after the failures");
    httpc_free(c);
    reset(&r);
}

static int is_pattern(const struct result *r, size_t n)
{
    if (r->status != 200 || r->len != n)
        return 0;
    for (size_t i = 0; i != n; ++i)
        if (r->body[i] != (char)('a' + i % 26))
            return 0;
    return 1;
}

/*
 * Sizes on both sides of every buffer boundary a body crosses: the
 * response buffer's first allocation (4 KiB), 64 KiB (h2o's socket
 * buffers; the replicator's log-record buffer, whose growth once sent
 * freed memory), a Content-Length body of 64 MiB + 1 (allocated at
 * once, up to the request's max_body), bodies larger than the socket buffers
 * (partial writes), and the response limit itself.
 */
static void test_sizes(void)
{
    static const size_t req_sizes[] = { 1, 4095, 4096, 4097, 65535, 65536, 65537, 204800, 1 << 20, 3 << 20 };
    static const size_t res_sizes[] = { 4095, 4096, 4097, 65535, 65536, 65537, 204800, 3 << 20 };
    static const char *const framings[] = { "/size/", "/sizechunked/", "/sizeclose/" };
    struct result r = { 0 };
    httpc_conn_t *c = httpc_new(loop, NULL, srv_addr);
    char path[64];
    size_t i, f, limit = 100000;

    for (i = 0; i != sizeof(req_sizes) / sizeof(req_sizes[0]); ++i) {
        size_t n = req_sizes[i];
        char *body = malloc(n), *owned = malloc(n);
        for (size_t j = 0; j != n; ++j)
            body[j] = owned[j] = (char)(j * 31 + n);
        reset(&r);
        ok(httpc_request(c, "POST", "/echo", NULL, body, n, 10000, on_done, &r) == 0, "POST %zu started", n);
        run_until(&r, 11000);
        ok(r.status == 201 && r.len == n && memcmp(r.body, body, n) == 0,
           "a %zu-byte copied body arrives whole (got %zu)",
           n,
           r.len);
        reset(&r);
        ok(httpc_request_owned(c, "POST", "/echo", NULL, owned, n, 10000, on_done, &r) == 0,
           "owned POST %zu started",
           n);
        run_until(&r, 11000);
        ok(r.status == 201 && r.len == n && memcmp(r.body, body, n) == 0,
           "a %zu-byte owned body arrives whole (got %zu)",
           n,
           r.len);
        free(body);
    }
    for (f = 0; f != 3; ++f) {
        for (i = 0; i != sizeof(res_sizes) / sizeof(res_sizes[0]); ++i) {
            snprintf(path, sizeof(path), "%s%zu", framings[f], res_sizes[i]);
            get(c, path, 10000, &r);
            ok(is_pattern(&r, res_sizes[i]), "GET %s: whole (got %zu)", path, r.len);
        }
    }
    snprintf(path, sizeof(path), "/size/%zu", ((size_t)64 << 20) + 1);
    get(c, path, 30000, &r);
    ok(is_pattern(&r, ((size_t)64 << 20) + 1), "a 64 MiB + 1 body, allocated at once (got %zu)", r.len);

    /* the limit itself, for every framing */
    httpc_set_max_body(c, limit);
    for (f = 0; f != 3; ++f) {
        snprintf(path, sizeof(path), "%s%zu", framings[f], limit);
        get(c, path, 5000, &r);
        ok(is_pattern(&r, limit), "GET %s with max_body %zu: accepted", path, limit);
        snprintf(path, sizeof(path), "%s%zu", framings[f], limit + 1);
        get(c, path, 5000, &r);
        ok(r.status == 0 && r.err != NULL && strcmp(r.err, "response too large") == 0,
           "GET %s with max_body %zu: response too large",
           path,
           limit);
    }
    httpc_free(c);
    reset(&r);
}

static void test_bad_responses(void)
{
    struct result r = { 0 };
    httpc_conn_t *c = httpc_new(loop, NULL, srv_addr);
    uint64_t start = now_ms();

    get(c, "/garbage", 2000, &r);
    ok(r.called == 1 && r.status == 0 && r.err != NULL && strcmp(r.err, "bad response") == 0, "garbage: bad response");
    ok(r.at_ms - start < 1000, "... detected at once, not by timeout");
    get(c, "/badlength", 2000, &r);
    ok(r.status == 0 && r.err != NULL && strcmp(r.err, "bad response") == 0, "bad Content-Length: bad response");
    get(c, "/truncated", 2000, &r);
    ok(r.status == 0 && r.err != NULL && strcmp(r.err, "connection closed") == 0, "truncated body: connection closed");
    get(c, "/hello", 2000, &r);
    ok(r.status == 200, "next request works");
    httpc_free(c);
    reset(&r);
}

static void test_close_and_free(void)
{
    struct result r = { 0 };
    httpc_conn_t *c = httpc_new(loop, NULL, srv_addr);
    int before = accepts();

    ok(httpc_request(c, "GET", "/sleep", NULL, NULL, 0, 5000, on_done, &r) == 0, "GET /sleep started");
    for (int i = 0; i < 200 && accepts() == before; ++i)
        h2o_evloop_run(loop, 10);
    run_for(50); /* request written, waiting for the answer */
    httpc_close(c);
    ok(r.called == 1 && r.status == 0 && r.err != NULL && strcmp(r.err, "canceled") == 0,
       "httpc_close: synchronous callback with canceled");
    ok(!httpc_busy(c), "not busy after close");
    run_for(100);
    is_int(r.called, 1, "no second callback");
    get(c, "/hello", 2000, &r);
    ok(r.status == 200, "request after close reconnects");
    httpc_close(c); /* idle: nothing to cancel */
    get(c, "/hello", 2000, &r);
    ok(r.status == 200, "request after idle close");

    reset(&r);
    ok(httpc_request(c, "GET", "/sleep", NULL, NULL, 0, 200, on_done, &r) == 0, "GET /sleep started");
    run_for(50);
    httpc_free(c);
    run_for(300);
    is_int(r.called, 0, "httpc_free: callback not called, not even at the timeout");
    reset(&r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (start_server() != 0) {
        printf("Bail out! cannot start the test server on %s\n", SRV_IP);
        return 1;
    }
    loop = h2o_evloop_create();
    test_basic();
    test_keepalive_and_bind();
    test_peer_closes_idle();
    test_timeout();
    test_refused();
    test_bodies();
    test_sizes();
    test_bad_responses();
    test_close_and_free();
    run_for(50);
    h2o_evloop_destroy(loop);
    stop_server();
    return done_testing();
}
