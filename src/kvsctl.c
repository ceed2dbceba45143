/*
 * kvsctl.c - command-line client for a kvsd cluster.
 *
 * One invocation is one or a few blocking HTTP/1.1 requests (Connection:
 * close, a timeout on connect, send and receive) to one replica.  What
 * makes it more than curl is the session file: the causal-metadata of
 * every response is merged into it and sent with every kvs request, so a
 * shell user gets read-your-writes and monotonic reads across replicas
 * (a replica that has not yet seen what the session has answers 503 and
 * kvsctl exits 4).  The client never looks inside the metadata beyond
 * merging {"IP:PORT/stamp": count} objects by taking the larger count.
 *
 * Several replicas may be named (-s a,b,c): a request goes to the first
 * that accepts the connection and does not answer 503, so one replica
 * down, or one behind the session, does not fail the command.
 *
 * Exit status: 0 success, 1 not found, 2 usage, 3 server error or
 * unreachable, 4 503 (causal dependencies not satisfied / not ready),
 * 5 done, but the session file could not be written.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_NOTFOUND = 1, EXIT_USAGE = 2, EXIT_SERVER = 3, EXIT_UNAVAILABLE = 4, EXIT_SESSION = 5 };

#define KEY_MAX 50
#define RESPONSE_MAX (64u << 20)
#define VALUE_MAX (64u << 20) /* a value read from stdin or a file */
#define SERVERS_MAX 16

struct opts {
    char servers[SERVERS_MAX][256]; /* HOST:PORT, "http://" and "/" stripped */
    int nservers;
    const char *server; /* the one the last request went to */
    const char *session; /* NULL: no session file */
    int json;
    int timeout_ms;
    int retry_ms; /* keep retrying a 503 (on every server) this long */
};

struct response {
    int status;
    char *body; /* NUL-terminated */
    size_t len;
};

static const char *progname = "kvsctl";

static void warnx_(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: kvsctl [-s HOST:PORT[,...]] [--json] [-t SECONDS] [-r SECONDS]\n"
            "              [--session FILE | --no-session] COMMAND\n"
            "\n"
            "commands:\n"
            "  get KEY             print the value of KEY\n"
            "  put KEY VALUE       set KEY (VALUE is a string, or JSON with --json;\n"
            "                      - reads it from stdin, @FILE from FILE)\n"
            "  delete KEY          delete KEY\n"
            "  view                list the replicas in the view\n"
            "  view add ADDR       add IP:PORT to the view\n"
            "  view delete ADDR    remove IP:PORT from the view\n"
            "  status              health, readiness, view and key count\n"
            "  cluster             every replica of the view: health, readiness, peer state,\n"
            "                      lag, queued bytes, keys, start time (a table, or -j JSON)\n"
            "  session [clear]     print (or forget) the causal-metadata carried\n"
            "\n"
            "options:\n"
            "  -s, --server HOST:PORT[,...]  replicas to talk to, tried in order on a refused\n"
            "                          connection or a 503 ($KVSCTL_SERVERS or $KVSCTL_SERVER,\n"
            "                          default 127.0.0.1:8090; an http:// prefix is fine)\n"
            "  -j, --json              VALUE is JSON; print the server's whole JSON answer\n"
            "  -t, --timeout SECONDS   per-request timeout ($KVSCTL_TIMEOUT, default 5)\n"
            "  -r, --retry SECONDS     retry a 503 for up to SECONDS ($KVSCTL_RETRY, default 0)\n"
            "  --session FILE          session file ($KVSCTL_SESSION)\n"
            "  --no-session            neither read nor write a session file\n"
            "  -V, --version           print the version\n"
            "  -h, --help              print this help\n"
            "\n"
            "exit status: 0 ok, 1 not found, 2 usage, 3 server error or unreachable,\n"
            "4 service unavailable (503: causal dependencies not satisfied, not ready),\n"
            "5 done, but the session file could not be written\n");
}

/* --- HTTP over a blocking socket --- */

static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    int r;

    do
        r = poll(&pfd, 1, timeout_ms);
    while (r == -1 && errno == EINTR);
    if (r == 0)
        errno = ETIMEDOUT;
    return r == 1 ? 0 : -1;
}

static int connect_to(const char *server, int timeout_ms)
{
    char host[256];
    const char *colon = strrchr(server, ':');
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res, *ai;
    int fd = -1, err;

    if (colon == NULL || colon == server || (size_t)(colon - server) >= sizeof(host) || colon[1] == '\0') {
        warnx_("bad server address '%s': expected HOST:PORT", server);
        return -2;
    }
    memcpy(host, server, (size_t)(colon - server));
    host[colon - server] = '\0';
    if ((err = getaddrinfo(host, colon + 1, &hints, &res)) != 0) {
        warnx_("%s: %s", server, gai_strerror(err));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        socklen_t elen = sizeof(err);

        if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, timeout_ms) == 0 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0) {
            if (err == 0)
                break;
            errno = err;
        }
        err = errno;
        close(fd);
        fd = -1;
        errno = err;
    }
    freeaddrinfo(res);
    if (fd == -1)
        warnx_("cannot connect to %s: %s", server, strerror(errno));
    return fd;
}

static int send_all(int fd, const char *buf, size_t len, int timeout_ms)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n, len -= (size_t)n;
        } else if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, timeout_ms) != 0)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Read until the peer closes (we sent Connection: close) or the
 * Content-Length is complete. */
static int recv_response(int fd, int timeout_ms, struct response *res)
{
    size_t cap = 4096, len = 0, hdr_end = 0, want = (size_t)-1;
    char *buf = malloc(cap), *p;

    if (buf == NULL)
        return -1;
    for (;;) {
        ssize_t n;

        if (len + 1 >= cap) {
            char *nb;
            if (cap >= RESPONSE_MAX || (nb = realloc(buf, cap * 2)) == NULL)
                goto fail;
            buf = nb, cap *= 2;
        }
        n = recv(fd, buf + len, cap - len - 1, 0);
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLIN, timeout_ms) != 0)
                goto fail;
            continue;
        }
        if (n == -1)
            goto fail;
        len += (size_t)n;
        buf[len] = '\0';
        if (hdr_end == 0 && (p = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl;
            hdr_end = (size_t)(p - buf) + 4;
            for (cl = buf; (cl = strchr(cl, '\n')) != NULL && cl < p;)
                if (strncasecmp(++cl, "content-length:", 15) == 0)
                    want = hdr_end + strtoull(cl + 15, NULL, 10);
        }
        if (n == 0 || (hdr_end != 0 && len >= want))
            break;
    }
    if (hdr_end == 0 || sscanf(buf, "HTTP/1.%*d %d", &res->status) != 1) {
        errno = EPROTO;
        goto fail;
    }
    if (want != (size_t)-1 && len < want) {
        errno = EPIPE; /* closed before the whole body */
        goto fail;
    }
    if (want != (size_t)-1)
        len = want;
    res->len = len - hdr_end;
    memmove(buf, buf + hdr_end, res->len);
    buf[res->len] = '\0';
    res->body = buf;
    return 0;
fail:
    free(buf);
    return -1;
}

/* One request to one server.  Returns 0 with *res filled, or an exit
 * status; *connect_failed tells a connection that never opened. */
static int http_one(const char *server,
                    int timeout_ms,
                    const char *method,
                    const char *path,
                    const char *body,
                    size_t blen,
                    struct response *res,
                    int *connect_failed)
{
    char head[1024];
    int fd, n;

    memset(res, 0, sizeof(*res));
    *connect_failed = 0;
    if ((fd = connect_to(server, timeout_ms)) < 0) {
        *connect_failed = fd == -1;
        return fd == -2 ? EXIT_USAGE : EXIT_SERVER;
    }
    n = snprintf(head,
                 sizeof(head),
                 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: kvsctl/" PACKAGE_VERSION
                 "\r\nAccept: application/json\r\nConnection: close\r\n",
                 method,
                 path,
                 server);
    if (body != NULL)
        n += snprintf(
          head + n, sizeof(head) - (size_t)n, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
    if ((size_t)n >= sizeof(head)) {
        close(fd);
        warnx_("request line too long");
        return EXIT_USAGE;
    }
    if (send_all(fd, head, (size_t)n, timeout_ms) != 0 || send_all(fd, body ? body : "", blen, timeout_ms) != 0 ||
        recv_response(fd, timeout_ms, res) != 0) {
        warnx_("%s %s on %s: %s", method, path, server, strerror(errno));
        close(fd);
        return EXIT_SERVER;
    }
    close(fd);
    return 0;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One request, to the first server that accepts the connection and does
 * not answer 503; with --retry, rounds over all servers until one does or
 * the time is up.  A 503 means nothing was applied, so trying elsewhere is
 * safe for writes too.  Returns 0 with *res filled (possibly the last
 * 503), or an exit status; o->server names the server that answered. */
static int http(struct opts *o, const char *method, const char *path, const char *body, struct response *res)
{
    long long deadline = now_ms() + o->retry_ms;
    size_t blen = body ? strlen(body) : 0;
    int rc = EXIT_SERVER, i, refused;

    memset(res, 0, sizeof(*res));
    for (;;) {
        for (i = 0; i < o->nservers; ++i) {
            struct response r;
            rc = http_one(o->servers[i], o->timeout_ms, method, path, body, blen, &r, &refused);
            if (rc != 0 && refused)
                continue; /* nothing was sent: the next server */
            if (rc != 0) {
                free(res->body); /* the request may have been applied: stop */
                memset(res, 0, sizeof(*res));
                return rc;
            }
            free(res->body);
            *res = r;
            o->server = o->servers[i];
            if (r.status != 503)
                return 0;
        }
        if (res->body != NULL && res->status == 503 && now_ms() < deadline) {
            struct timespec pause = { 0, 200 * 1000000 };
            nanosleep(&pause, NULL);
            continue;
        }
        return res->body != NULL ? 0 : rc;
    }
}

/* --- session file: the causal-metadata carried between invocations --- */

static json_t *session_load(const struct opts *o)
{
    json_error_t jerr;
    json_t *m;

    if (o->session == NULL || access(o->session, F_OK) != 0)
        return json_null();
    if ((m = json_load_file(o->session, JSON_DECODE_ANY, &jerr)) == NULL) {
        warnx_("ignoring unreadable session file %s: %s", o->session, jerr.text);
        return json_null();
    }
    return m;
}

/* Component-wise maximum of two clocks; anything not an object is "no
 * dependencies".  Returns a new reference. */
static json_t *metadata_merge(json_t *a, json_t *b)
{
    json_t *out, *v, *old;
    const char *k;

    if (!json_is_object(a))
        return json_is_object(b) ? json_deep_copy(b) : json_null();
    if (!json_is_object(b))
        return json_deep_copy(a);
    out = json_deep_copy(a);
    json_object_foreach(b, k, v)
    {
        old = json_object_get(out, k);
        if (old == NULL || !json_is_number(old) || (json_is_number(v) && json_number_value(v) > json_number_value(old)))
            json_object_set(out, k, v);
    }
    return out;
}

static int session_store(const struct opts *o, json_t *m)
{
    char tmp[4096];
    int fd;

    if (o->session == NULL)
        return 0;
    if (snprintf(tmp, sizeof(tmp), "%s.%d.tmp", o->session, (int)getpid()) >= (int)sizeof(tmp))
        return -1;
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1 ||
        json_dumpfd(m, fd, JSON_COMPACT | JSON_ENCODE_ANY) != 0 || write(fd, "\n", 1) != 1 || close(fd) != 0 ||
        rename(tmp, o->session) != 0) {
        warnx_("cannot write session file %s: %s; the request was done, but the next command will not "
               "depend on it (set --session FILE or KVSCTL_SESSION to a writable path, or use --no-session)",
               o->session,
               strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Merge the response's causal-metadata, if any, into the session.
 * Returns -1 if the session file could not be written: causality across
 * invocations is then lost, which the caller must not hide. */
static int session_update(const struct opts *o, json_t *session, json_t *reply)
{
    json_t *m = json_object_get(reply, "causal-metadata"), *merged;
    int r;

    if (m == NULL || json_is_null(m))
        return 0;
    merged = metadata_merge(session, m);
    r = session_store(o, merged);
    json_decref(merged);
    return r;
}

static const char *default_session(char *buf, size_t len)
{
    const char *s = getenv("KVSCTL_SESSION"), *home;

    if (s != NULL && s[0] != '\0')
        return s;
    if ((s = getenv("XDG_RUNTIME_DIR")) != NULL && s[0] == '/') {
        snprintf(buf, len, "%s/kvsctl.session", s);
        return buf;
    }
    if ((home = getenv("HOME")) == NULL || home[0] == '\0')
        return NULL;
    snprintf(buf, len, "%s/.cache", home);
    mkdir(buf, 0700);
    snprintf(buf, len, "%s/.cache/kvsctl.session", home);
    return buf;
}

/* --- commands --- */

static char *url_path(const char *prefix, const char *key)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, n = strlen(prefix);
    char *out = malloc(n + strlen(key) * 3 + 1);

    if (out == NULL)
        abort();
    memcpy(out, prefix, n);
    for (i = 0; key[i] != '\0'; ++i) {
        unsigned char c = (unsigned char)key[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~", c))
            out[n++] = (char)c;
        else
            out[n++] = '%', out[n++] = hex[c >> 4], out[n++] = hex[c & 15];
    }
    out[n] = '\0';
    return out;
}

static void print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s != NULL)
        puts(s);
    free(s);
}

/* Print the server's {"error": ...} or the raw body, and map the status. */
static int fail_status(const char *what, const struct response *r, json_t *reply)
{
    json_t *e = json_object_get(reply, "error");
    const char *msg = json_is_string(e) ? json_string_value(e) : r->body;

    warnx_("%s: %d %s", what, r->status, msg && msg[0] ? msg : "(no body)");
    if (r->status == 503 && msg != NULL && strstr(msg, "ausal") != NULL)
        warnx_("hint: this replica has not yet seen writes your session depends on; retry (-r SECONDS), name "
               "more replicas (-s a,b,c), or forget those dependencies with `kvsctl session clear`");
    switch (r->status) {
    case 404:
        return EXIT_NOTFOUND;
    case 503:
        return EXIT_UNAVAILABLE;
    default:
        return EXIT_SERVER;
    }
}

static int check_key(const char *key)
{
    if (key[0] == '\0') {
        warnx_("KEY is empty (see kvsctl --help)");
        return -1;
    }
    if (strlen(key) > KEY_MAX) {
        warnx_("key is longer than %d bytes", KEY_MAX);
        return -1;
    }
    return 0;
}

/* The whole of fp, NUL-terminated, at most VALUE_MAX bytes. */
static char *read_all(FILE *fp, const char *name, size_t *lenp)
{
    size_t cap = 65536, len = 0, n;
    char *buf = malloc(cap), *nb;

    while (buf != NULL && (n = fread(buf + len, 1, cap - len - 1, fp)) > 0) {
        len += n;
        if (len + 1 == cap) {
            if (cap > VALUE_MAX) {
                warnx_("%s: value larger than %u MiB", name, VALUE_MAX >> 20);
                free(buf);
                return NULL;
            }
            nb = realloc(buf, cap * 2);
            if (nb == NULL)
                break;
            buf = nb, cap *= 2;
        }
    }
    if (buf == NULL || ferror(fp)) {
        warnx_("cannot read %s: %s", name, strerror(errno));
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    *lenp = len;
    return buf;
}

/* VALUE as given: "-" is stdin, "@FILE" a file's contents (as they are,
 * trailing newline included), anything else the argument itself. */
static char *value_arg(const char *arg, size_t *lenp)
{
    FILE *fp;
    char *v;

    if (strcmp(arg, "-") == 0)
        return read_all(stdin, "stdin", lenp);
    if (arg[0] != '@') {
        *lenp = strlen(arg);
        return strdup(arg);
    }
    if ((fp = fopen(arg + 1, "rb")) == NULL) {
        warnx_("cannot open %s: %s", arg + 1, strerror(errno));
        return NULL;
    }
    v = read_all(fp, arg + 1, lenp);
    fclose(fp);
    return v;
}

static int cmd_kvs(struct opts *o, const char *method, const char *key, const char *value_spec)
{
    json_t *session = session_load(o), *req = json_object(), *reply = NULL, *v = NULL;
    char *path = url_path("/kvs/", key), *body = NULL, *value = NULL;
    struct response r;
    json_error_t jerr;
    size_t vlen = 0;
    int rc, session_failed = 0;

    if (value_spec != NULL) {
        if ((value = value_arg(value_spec, &vlen)) == NULL) {
            rc = EXIT_USAGE;
            goto out;
        }
        v = o->json ? json_loadb(value, vlen, JSON_DECODE_ANY, &jerr) : json_stringn(value, vlen);
        if (v == NULL) {
            warnx_(o->json ? "VALUE is not valid JSON: %s" : "VALUE is not valid UTF-8%s", o->json ? jerr.text : "");
            rc = EXIT_USAGE;
            goto out;
        }
        json_object_set_new(req, "value", v);
    }
    json_object_set(req, "causal-metadata", session);
    body = json_dumps(req, JSON_COMPACT);
    if ((rc = http(o, method, path, body, &r)) != 0)
        goto out;
    reply = json_loads(r.body, 0, &jerr);
    if (session_update(o, session, reply) != 0)
        session_failed = 1;
    if (r.status != 200 && r.status != 201) {
        rc = fail_status(key, &r, reply);
    } else if (o->json) {
        print_json(reply); /* every command: the server's whole answer */
    } else if (value_spec == NULL && strcmp(method, "GET") == 0) {
        json_t *got = json_object_get(reply, "value");
        if (got == NULL) {
            warnx_("%s: malformed response: %s", key, r.body);
            rc = EXIT_SERVER;
        } else if (json_is_string(got)) {
            puts(json_string_value(got));
        } else {
            print_json(got);
        }
    } else {
        json_t *res = json_object_get(reply, "result");
        puts(json_is_string(res) ? json_string_value(res) : r.body);
    }
    free(r.body);
    if (rc == EXIT_OK && session_failed)
        rc = EXIT_SESSION;
out:
    json_decref(reply);
    json_decref(req);
    json_decref(session);
    free(body);
    free(path);
    free(value);
    return rc;
}

static int cmd_view(struct opts *o, const char *op, const char *addr)
{
    json_t *reply = NULL, *req;
    struct response r;
    json_error_t jerr;
    char *body = NULL;
    int rc;

    if (op == NULL) {
        if ((rc = http(o, "GET", "/view", NULL, &r)) != 0)
            return rc;
        reply = json_loads(r.body, 0, &jerr);
        if (r.status != 200) {
            rc = fail_status("view", &r, reply);
        } else if (o->json) {
            print_json(reply);
        } else {
            json_t *view = json_object_get(reply, "view"), *a;
            size_t i;
            json_array_foreach(view, i, a) puts(json_string_value(a) ? json_string_value(a) : "?");
        }
        goto out;
    }
    req = json_pack("{ss}", "socket-address", addr);
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if ((rc = http(o, strcmp(op, "add") == 0 ? "PUT" : "DELETE", "/view", body, &r)) != 0)
        goto done;
    reply = json_loads(r.body, 0, &jerr);
    if (r.status != 200 && r.status != 201) {
        rc = fail_status(addr, &r, reply);
    } else if (o->json) {
        print_json(reply);
    } else {
        json_t *res = json_object_get(reply, "result");
        puts(json_is_string(res) ? json_string_value(res) : r.body);
    }
out:
    free(r.body);
done:
    json_decref(reply);
    free(body);
    return rc;
}

/* Value of an unlabelled sample in Prometheus text, or -1. */
static double metric_value(const char *text, const char *name)
{
    size_t n = strlen(name);
    const char *p;

    for (p = text; p != NULL && *p != '\0'; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static int cmd_status(struct opts *o)
{
    struct response health, ready, view = { 0 }, metrics = { 0 };
    json_t *vj = NULL, *out, *list;
    double keys = -1;
    int rc;

    if ((rc = http(o, "GET", "/health", NULL, &health)) != 0)
        return rc;
    if ((rc = http(o, "GET", "/ready", NULL, &ready)) != 0) {
        free(health.body);
        return rc;
    }
    if (http(o, "GET", "/view", NULL, &view) == 0 && view.status == 200)
        vj = json_loads(view.body, 0, NULL);
    if (http(o, "GET", "/metrics", NULL, &metrics) == 0 && metrics.status == 200)
        keys = metric_value(metrics.body, "kvsd_keys");
    list = json_object_get(vj, "view");

    out = json_pack("{ss sb sb sO}",
                    "server",
                    o->server,
                    "health",
                    health.status == 200,
                    "ready",
                    ready.status == 200,
                    "view",
                    list ? list : json_null());
    json_object_set_new(out, "keys", keys >= 0 ? json_integer((json_int_t)keys) : json_null());
    if (o->json) {
        print_json(out);
    } else {
        json_t *a;
        size_t i;

        printf("server  %s\nhealth  %s\nready   %s\nview    ",
               o->server,
               health.status == 200 ? "ok" : "failing",
               ready.status == 200 ? "yes" : "no");
        json_array_foreach(list, i, a) printf("%s%s", i ? "," : "", json_string_value(a));
        if (keys >= 0)
            printf("\nkeys    %.0f\n", keys);
        else
            printf("\nkeys    unknown\n");
    }
    rc = health.status != 200 ? EXIT_SERVER : ready.status != 200 ? EXIT_UNAVAILABLE : EXIT_OK;
    json_decref(out);
    json_decref(vj);
    free(health.body);
    free(ready.body);
    free(view.body);
    free(metrics.body);
    return rc;
}

/* The line of a labelled sample name{peer="ADDR"...}, or NULL. */
static const char *peer_sample(const char *text, const char *name, const char *peer)
{
    char prefix[512];
    int n = snprintf(prefix, sizeof(prefix), "%s{peer=\"%s\"", name, peer);
    const char *p;

    for (p = text; p != NULL && *p != '\0'; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, (size_t)n) == 0)
            return p + n;
    return NULL;
}

/* GET path on one server (no fallback); the body, or NULL. */
static char *fetch(const struct opts *o, const char *server, const char *path, int *status)
{
    struct response r;
    int refused;

    *status = 0;
    if (http_one(server, o->timeout_ms, "GET", path, NULL, 0, &r, &refused) != 0)
        return NULL;
    *status = r.status;
    return r.body;
}

/* One row of `kvsctl cluster`: what the replica says of itself, and what
 * the replica we asked (the observer) says of it as a peer. */
static json_t *cluster_row(const struct opts *o, const char *addr, const char *observer_metrics)
{
    json_t *row = json_object();
    int hs = 0, rs = 0, ms = 0;
    char *health, *ready, *metrics;
    const char *p;

    health = fetch(o, addr, "/health", &hs);
    ready = health ? fetch(o, addr, "/ready", &rs) : NULL;
    metrics = health ? fetch(o, addr, "/metrics", &ms) : NULL;
    json_object_set_new(row, "replica", json_string(addr));
    json_object_set_new(row, "health", json_boolean(health != NULL && hs == 200));
    json_object_set_new(row, "ready", json_boolean(ready != NULL && rs == 200));
    json_object_set_new(row,
                        "keys",
                        metrics && ms == 200 && metric_value(metrics, "kvsd_keys") >= 0
                          ? json_integer((json_int_t)metric_value(metrics, "kvsd_keys"))
                          : json_null());
    json_object_set_new(row,
                        "started",
                        metrics && ms == 200 && metric_value(metrics, "process_start_time_seconds") > 0
                          ? json_real(metric_value(metrics, "process_start_time_seconds"))
                          : json_null());
    /* kvsd_peer_state{peer="A",state="active"} 1 */
    if (observer_metrics != NULL && (p = peer_sample(observer_metrics, "kvsd_peer_state", addr)) != NULL &&
        strncmp(p, ",state=\"", 8) == 0) {
        size_t n = strcspn(p + 8, "\"");
        json_object_set_new(row, "state", json_stringn(p + 8, n));
    } else {
        json_object_set_new(row, "state", json_null());
    }
    if (observer_metrics != NULL && (p = peer_sample(observer_metrics, "kvsd_peer_lag_seconds", addr)) != NULL)
        json_object_set_new(row, "lag_seconds", json_real(strtod(p + 2, NULL)));
    else
        json_object_set_new(row, "lag_seconds", json_null());
    if (observer_metrics != NULL && (p = peer_sample(observer_metrics, "kvsd_peer_queued_bytes", addr)) != NULL)
        json_object_set_new(row, "queued_bytes", json_integer((json_int_t)strtoull(p + 2, NULL, 10)));
    else
        json_object_set_new(row, "queued_bytes", json_null());
    free(health);
    free(ready);
    free(metrics);
    return row;
}

static void print_cluster_table(const char *observer, json_t *rows)
{
    json_t *row;
    size_t i;

    printf("%-21s %-7s %-5s %-9s %8s %10s %8s  %s\n", "REPLICA", "HEALTH", "READY", "STATE", "LAG", "QUEUED", "KEYS",
           "STARTED");
    json_array_foreach(rows, i, row)
    {
        json_t *st = json_object_get(row, "state"), *lag = json_object_get(row, "lag_seconds"),
               *q = json_object_get(row, "queued_bytes"), *k = json_object_get(row, "keys"),
               *t = json_object_get(row, "started");
        char lagb[32] = "-", qb[32] = "-", kb[32] = "-", tb[40] = "-";

        if (json_is_number(lag))
            snprintf(lagb, sizeof(lagb), "%.3fs", json_number_value(lag));
        if (json_is_integer(q))
            snprintf(qb, sizeof(qb), "%lld", (long long)json_integer_value(q));
        if (json_is_integer(k))
            snprintf(kb, sizeof(kb), "%lld", (long long)json_integer_value(k));
        if (json_is_number(t)) {
            time_t when = (time_t)json_number_value(t);
            struct tm tm;
            strftime(tb, sizeof(tb), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&when, &tm));
        }
        printf("%-21s %-7s %-5s %-9s %8s %10s %8s  %s\n",
               json_string_value(json_object_get(row, "replica")),
               json_is_true(json_object_get(row, "health")) ? "ok" : "down",
               json_is_true(json_object_get(row, "ready")) ? "yes" : "no",
               json_is_string(st) ? json_string_value(st) : "-",
               lagb,
               qb,
               kb,
               tb);
    }
    printf("(STATE, LAG and QUEUED as %s sees its peers)\n", observer);
}

/* `kvsctl cluster`: every replica of the view of the first server that
 * answers, and every server named with -s that the view lacks, each asked
 * for its own health, readiness, keys and start time,
 * plus the peer state, lag and queued bytes the asked replica reports.
 * Exit 0 if every replica is healthy and ready, 3 if one is down, 4 if
 * one is not ready. */
static int cmd_cluster(struct opts *o)
{
    struct response view, metrics;
    json_t *vj, *list, *a, *rows = json_array(), *out;
    int rc = EXIT_OK, k;
    size_t i;

    if ((rc = http(o, "GET", "/view", NULL, &view)) != 0)
        return rc;
    vj = json_loads(view.body, 0, NULL);
    list = json_object_get(vj, "view");
    if (view.status != 200 || !json_is_array(list)) {
        rc = fail_status("view", &view, vj);
        free(view.body);
        json_decref(vj);
        json_decref(rows);
        return rc;
    }
    if (http_one(o->server, o->timeout_ms, "GET", "/metrics", NULL, 0, &metrics, &(int){ 0 }) != 0)
        metrics.body = NULL;
    json_array_foreach(list, i, a)
    {
        json_t *row;
        if (!json_is_string(a))
            continue;
        row = cluster_row(o, json_string_value(a), metrics.body);
        if (!json_is_true(json_object_get(row, "health")))
            rc = EXIT_SERVER;
        else if (!json_is_true(json_object_get(row, "ready")) && rc == EXIT_OK)
            rc = EXIT_UNAVAILABLE;
        json_array_append_new(rows, row);
    }
    /* a server the user named that the view left out (evicted, or never
     * added) is what they most need to see */
    for (k = 0; k < o->nservers; ++k) {
        json_t *row;
        int listed = 0;
        json_array_foreach(list, i, a) listed |= json_is_string(a) && strcmp(json_string_value(a), o->servers[k]) == 0;
        if (listed)
            continue;
        row = cluster_row(o, o->servers[k], metrics.body);
        if (!json_is_true(json_object_get(row, "health")))
            rc = EXIT_SERVER;
        else if (!json_is_true(json_object_get(row, "ready")) && rc == EXIT_OK)
            rc = EXIT_UNAVAILABLE;
        json_array_append_new(rows, row);
    }
    out = json_pack("{ss sO}", "observer", o->server, "replicas", rows);
    if (o->json)
        print_json(out);
    else
        print_cluster_table(o->server, rows);
    json_decref(out);
    json_decref(rows);
    json_decref(vj);
    free(view.body);
    free(metrics.body);
    return rc;
}

static int cmd_session(const struct opts *o, const char *op)
{
    json_t *m;

    if (o->session == NULL) {
        warnx_("no session file");
        return EXIT_USAGE;
    }
    if (op != NULL) {
        if (unlink(o->session) != 0 && errno != ENOENT) {
            warnx_("%s: %s", o->session, strerror(errno));
            return EXIT_SERVER;
        }
        return EXIT_OK;
    }
    m = session_load(o);
    print_json(m);
    json_decref(m);
    return EXIT_OK;
}

/* --- command line --- */

/* A wrong number of arguments: say which command wanted what. */
static int need(int argc, int want_min, int want_max, const char *cmd, const char *args)
{
    if (argc < want_min || argc > want_max) {
        warnx_("%s: %s arguments; usage: kvsctl %s%s%s (see kvsctl --help)",
               cmd,
               argc < want_min ? "missing" : "too many",
               cmd,
               args[0] ? " " : "",
               args);
        return -1;
    }
    return 0;
}

/* "a,b,http://c/" into o->servers.  Returns 0, or -1 after a message. */
static int parse_servers(struct opts *o, const char *list, const char *source)
{
    const char *p = list;

    o->nservers = 0;
    for (;;) {
        size_t len = strcspn(p, ",");
        const char *e = p + len, *next = p + len, *colon;
        char *out;

        while (p < e && (*p == ' ' || *p == '\t'))
            ++p;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '/'))
            --e;
        if ((size_t)(e - p) > 7 && strncasecmp(p, "http://", 7) == 0)
            p += 7;
        colon = memchr(p, ':', (size_t)(e - p));
        if (e == p || colon == NULL || colon == p || colon + 1 == e ||
            strspn(colon + 1, "0123456789") < (size_t)(e - colon - 1) || (size_t)(e - p) >= sizeof(o->servers[0])) {
            warnx_("%s: bad server '%.*s': expected HOST:PORT", source, (int)(e - p), p);
            return -1;
        }
        if (o->nservers == SERVERS_MAX) {
            warnx_("%s: more than %d servers", source, SERVERS_MAX);
            return -1;
        }
        out = o->servers[o->nservers++];
        memcpy(out, p, (size_t)(e - p));
        out[e - p] = '\0';
        if (*next != ',')
            break;
        p = next + 1;
    }
    o->server = o->servers[0];
    return 0;
}

/* Seconds, fractions allowed, within (0, max] (or [0, max] for --retry). */
static int parse_seconds(const char *val, const char *source, int zero_ok, int *ms)
{
    char *end;
    double d;

    errno = 0;
    d = strtod(val, &end);
    if (val[0] == '\0' || *end != '\0' || errno != 0 || d != d || d < 0 || (d == 0 && !zero_ok) || d > 86400) {
        warnx_("%s: bad number of seconds '%s': expected %s to 86400", source, val, zero_ok ? "0" : "more than 0 up");
        return -1;
    }
    *ms = (int)(d * 1000);
    if (*ms == 0 && !zero_ok)
        *ms = 1;
    return 0;
}

static int takes_value(const char *a)
{
    static const char *const with_value[] = { "-s", "--server", "-t", "--timeout", "-r", "--retry", "--session", NULL };
    int i;

    for (i = 0; with_value[i] != NULL; ++i)
        if (strcmp(a, with_value[i]) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    static struct opts o;
    char *pos[8], session_buf[4096];
    const char *env, *servers = "127.0.0.1:8090", *servers_src = "default";
    int npos = 0, i, no_session = 0, options_done = 0;
    const char *session_flag = NULL;

    o.timeout_ms = 5000;
    if ((env = getenv("KVSCTL_SERVER")) != NULL && env[0] != '\0')
        servers = env, servers_src = "KVSCTL_SERVER";
    if ((env = getenv("KVSCTL_SERVERS")) != NULL && env[0] != '\0')
        servers = env, servers_src = "KVSCTL_SERVERS";
    if ((env = getenv("KVSCTL_TIMEOUT")) != NULL && env[0] != '\0' &&
        parse_seconds(env, "KVSCTL_TIMEOUT", 0, &o.timeout_ms) != 0)
        return EXIT_USAGE;
    if ((env = getenv("KVSCTL_RETRY")) != NULL && env[0] != '\0' &&
        parse_seconds(env, "KVSCTL_RETRY", 1, &o.retry_ms) != 0)
        return EXIT_USAGE;

    for (i = 1; i < argc; ++i) {
        const char *a = argv[i];

        if (options_done || a[0] != '-' || a[1] == '\0') {
            if (npos == (int)(sizeof(pos) / sizeof(pos[0]))) {
                warnx_("too many arguments (see kvsctl --help)");
                return EXIT_USAGE;
            }
            pos[npos++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            options_done = 1;
        } else if (strcmp(a, "-j") == 0 || strcmp(a, "--json") == 0) {
            o.json = 1;
        } else if (strcmp(a, "--no-session") == 0) {
            no_session = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("kvsctl %s\n", PACKAGE_VERSION);
            return EXIT_OK;
        } else if (takes_value(a)) {
            const char *v;
            if (i + 1 == argc) {
                warnx_("option %s needs a value", a);
                return EXIT_USAGE;
            }
            v = argv[++i];
            if (strcmp(a, "-s") == 0 || strcmp(a, "--server") == 0)
                servers = v, servers_src = a;
            else if (strcmp(a, "--session") == 0)
                session_flag = v;
            else if (strcmp(a, "-t") == 0 || strcmp(a, "--timeout") == 0) {
                if (parse_seconds(v, a, 0, &o.timeout_ms) != 0)
                    return EXIT_USAGE;
            } else if (parse_seconds(v, a, 1, &o.retry_ms) != 0)
                return EXIT_USAGE;
        } else {
            warnx_("unknown option '%s' (a VALUE starting with '-' goes after --; see kvsctl --help)", a);
            return EXIT_USAGE;
        }
    }
    if (parse_servers(&o, servers, servers_src) != 0)
        return EXIT_USAGE;
    if (!no_session)
        o.session = session_flag ? session_flag : default_session(session_buf, sizeof(session_buf));
    if (npos == 0) {
        warnx_("no command given");
        usage(stderr);
        return EXIT_USAGE;
    }

    if (strcmp(pos[0], "get") == 0 || strcmp(pos[0], "delete") == 0) {
        if (need(npos, 2, 2, pos[0], "KEY") != 0 || check_key(pos[1]) != 0)
            return EXIT_USAGE;
        return cmd_kvs(&o, pos[0][0] == 'g' ? "GET" : "DELETE", pos[1], NULL);
    }
    if (strcmp(pos[0], "put") == 0) {
        if (need(npos, 3, 3, "put", "KEY VALUE|-|@FILE") != 0 || check_key(pos[1]) != 0)
            return EXIT_USAGE;
        return cmd_kvs(&o, "PUT", pos[1], pos[2]);
    }
    if (strcmp(pos[0], "view") == 0) {
        if (npos == 1)
            return cmd_view(&o, NULL, NULL);
        if (strcmp(pos[1], "add") != 0 && strcmp(pos[1], "delete") != 0) {
            warnx_("view: unknown subcommand '%s': expected add or delete (see kvsctl --help)", pos[1]);
            return EXIT_USAGE;
        }
        if (need(npos, 3, 3, npos >= 2 && pos[1][0] == 'a' ? "view add" : "view delete", "IP:PORT") != 0)
            return EXIT_USAGE;
        return cmd_view(&o, pos[1], pos[2]);
    }
    if (strcmp(pos[0], "status") == 0)
        return need(npos, 1, 1, "status", "") != 0 ? EXIT_USAGE : cmd_status(&o);
    if (strcmp(pos[0], "cluster") == 0)
        return need(npos, 1, 1, "cluster", "") != 0 ? EXIT_USAGE : cmd_cluster(&o);
    if (strcmp(pos[0], "session") == 0) {
        if (need(npos, 1, 2, "session", "[clear]") != 0)
            return EXIT_USAGE;
        if (npos == 2 && strcmp(pos[1], "clear") != 0) {
            warnx_("session: unknown subcommand '%s': expected clear", pos[1]);
            return EXIT_USAGE;
        }
        return cmd_session(&o, npos == 2 ? pos[1] : NULL);
    }
    warnx_("unknown command '%s' (see kvsctl --help)", pos[0]);
    return EXIT_USAGE;
}
