/*
 * lagprobe.c - replication lag of a kvsd cluster, measured from outside.
 *
 *   lagprobe -a IP:PORT -p IP:PORT[,IP:PORT...] [-r writes/s] [-d seconds]
 *            [-w writer connections] [-s samples/s] [-v value bytes] [-e]
 *
 * Writers PUT small values to replica A at a fixed, open-loop rate (write j
 * is due at t0 + j/rate; a writer that falls behind sends at once and the
 * achieved rate is reported).  Every (rate/samples)-th acknowledged write is
 * a sample: the time of its acknowledgment at the client (t_ack) and the
 * causal-metadata A returned for it.  One poller per other replica takes the
 * samples in order and sends `GET /kvs/<key>` with that metadata until it
 * gets 200 (503 means "not applied yet"); lag = first 200 - t_ack.  Polls
 * are spaced by -i microseconds (default 100), so a lag is overestimated by
 * at most one poll round trip plus that pause.  A sample a poller reaches
 * late (it was still busy with older ones) counts from its t_ack all the
 * same, which can only overestimate.  All clocks are CLOCK_MONOTONIC in
 * this one process.
 *
 * -e (writers everywhere): the background writes are spread over A and
 * every peer (write j goes to replica j mod (1 + peers), each writer keeps
 * a connection to each), so every replica is an origin and a record
 * shipped to a peer can depend on writes that reach it from a third
 * replica.  The samples are then not background writes but a probe of
 * their own: every 1/samples-per-second a probe thread PUTs a key of its
 * own at A (no metadata) and hands the acknowledgment to the pollers as
 * above.  -r is the total background rate over all replicas.
 *
 * Output, one line per peer and a summary line, machine-readable:
 *   LAG peer=IP:PORT n=.. p50_ms=.. p99_ms=.. p999_ms=.. max_ms=..
 *   RATE target=.. achieved=.. writes=.. errors=.. max_behind_ms=..
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PEERS 8
#define MAX_SAMPLES 200000
#define BUFSZ 65536

struct conn {
    int fd;
    struct sockaddr_in sa;
    char buf[BUFSZ];
};

struct sample {
    double t_ack;
    int key;
    char meta[512];
};

static struct sample *samples;
static volatile int nsamples;
static volatile int writers_done;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double rate = 10000, duration = 10, sample_hz = 200;
static int nwriters = 4, vbytes = 100, poll_pause_us = 100, everywhere;
static struct sockaddr_in addr_a;
static struct sockaddr_in addr_p[MAX_PEERS];
static char *name_p[MAX_PEERS];
static int npeers;
static double t0;
static char put_body[4096];
static size_t put_len;

static long writes_done, write_errors;
static double max_behind;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(host))
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int conn_open(struct conn *c)
{
    int one = 1;
    if ((c->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&c->sa, sizeof(c->sa)) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

/* One request on a keep-alive connection; returns the status (or -1) and
 * leaves the body NUL-terminated in *body. */
static int request(struct conn *c, const char *method, const char *path, const char *body, size_t blen,
                   char **rbody)
{
    char head[512];
    int hl, status;
    size_t have = 0, need;
    char *eoh, *cl;

    if (c->fd < 0 && conn_open(c) != 0)
        return -1;
    hl = snprintf(head, sizeof(head),
                  "%s %s HTTP/1.1\r\nHost: kvsd\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                  method, path, blen);
    if (write(c->fd, head, (size_t)hl) != hl || (blen && write(c->fd, body, blen) != (ssize_t)blen))
        goto fail;
    for (;;) {
        ssize_t r = read(c->fd, c->buf + have, BUFSZ - 1 - have);
        if (r <= 0)
            goto fail;
        have += (size_t)r;
        c->buf[have] = 0;
        if ((eoh = strstr(c->buf, "\r\n\r\n")) != NULL)
            break;
        if (have >= BUFSZ - 1)
            goto fail;
    }
    if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1)
        goto fail;
    cl = strcasestr(c->buf, "\r\ncontent-length:");
    need = (size_t)(eoh + 4 - c->buf) + (cl && cl < eoh ? strtoul(cl + 17, NULL, 10) : 0);
    if (need >= BUFSZ)
        goto fail;
    while (have < need) {
        ssize_t r = read(c->fd, c->buf + have, need - have);
        if (r <= 0)
            goto fail;
        have += (size_t)r;
    }
    c->buf[need] = 0;
    *rbody = eoh + 4;
    return status;
fail:
    close(c->fd);
    c->fd = -1;
    return -1;
}

/* The value of "causal-metadata" in a response: a balanced {...}. */
static int extract_meta(const char *body, char *out, size_t cap)
{
    const char *p = strstr(body, "\"causal-metadata\"");
    const char *q;
    int depth = 0;
    if (!p || !(p = strchr(p + 17, '{')))
        return -1;
    for (q = p; *q; ++q) {
        if (*q == '{')
            depth++;
        else if (*q == '}' && --depth == 0)
            break;
    }
    if (!*q || (size_t)(q - p + 1) >= cap)
        return -1;
    memcpy(out, p, (size_t)(q - p + 1));
    out[q - p + 1] = 0;
    return 0;
}

static void *writer(void *arg)
{
    long id = (long)arg, j;
    long total = (long)(rate * duration);
    long every = (long)(rate / sample_hz);
    int ntargets = everywhere ? 1 + npeers : 1, k;
    struct conn *conns = calloc((size_t)ntargets, sizeof(*conns)), *c;
    char path[64], *rb;
    long done = 0, errs = 0;
    double behind = 0;

    if (every < 1)
        every = 1;
    for (k = 0; k < ntargets; ++k) {
        conns[k].fd = -1;
        conns[k].sa = k == 0 ? addr_a : addr_p[k - 1];
    }
    for (j = id; j < total; j += nwriters) {
        double due = t0 + (double)j / rate, t = now();
        int st;
        if (t < due)
            sleep_until(due);
        else if (t - due > behind)
            behind = t - due;
        c = &conns[j % ntargets];
        snprintf(path, sizeof(path), "/kvs/lag%d", (int)(j % 10000));
        st = request(c, "PUT", path, put_body, put_len, &rb);
        if (st != 200 && st != 201) {
            errs++;
            continue;
        }
        done++;
        if (!everywhere && j % every == 0 && due - t0 > 0.5) { /* skip the first half second */
            double ta = now();
            pthread_mutex_lock(&mu);
            if (nsamples < MAX_SAMPLES && extract_meta(rb, samples[nsamples].meta, sizeof(samples[0].meta)) == 0) {
                samples[nsamples].t_ack = ta;
                samples[nsamples].key = (int)(j % 10000);
                __atomic_store_n(&nsamples, nsamples + 1, __ATOMIC_RELEASE);
            }
            pthread_mutex_unlock(&mu);
        }
    }
    pthread_mutex_lock(&mu);
    writes_done += done;
    write_errors += errs;
    if (behind > max_behind)
        max_behind = behind;
    pthread_mutex_unlock(&mu);
    for (k = 0; k < ntargets; ++k)
        if (conns[k].fd >= 0)
            close(conns[k].fd);
    free(conns);
    return NULL;
}

/* -e: every 1/sample_hz a PUT of a probe key at A, sampled for the
 * pollers; keys of its own, so a background write never overwrites one
 * (a poller would then see 200 for a value it did not wait for). */
static void *probe(void *arg)
{
    struct conn *c = calloc(1, sizeof(*c));
    char path[64], *rb;
    long i, total = (long)(sample_hz * duration);

    (void)arg;
    c->fd = -1;
    c->sa = addr_a;
    for (i = 0; i < total; ++i) {
        double due = t0 + (double)i / sample_hz;
        int st;
        if (now() < due)
            sleep_until(due);
        snprintf(path, sizeof(path), "/kvs/probe%ld", i % 10000);
        st = request(c, "PUT", path, put_body, put_len, &rb);
        if ((st != 200 && st != 201) || due - t0 <= 0.5) /* skip the first half second */
            continue;
        double ta = now();
        pthread_mutex_lock(&mu);
        if (nsamples < MAX_SAMPLES && extract_meta(rb, samples[nsamples].meta, sizeof(samples[0].meta)) == 0) {
            samples[nsamples].t_ack = ta;
            samples[nsamples].key = (int)(i % 10000);
            __atomic_store_n(&nsamples, nsamples + 1, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&mu);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c);
    return NULL;
}

struct poller {
    int peer;
    double *lag;
    int n, errors;
    pthread_t th;
};

static void *poll_peer(void *arg)
{
    struct poller *p = arg;
    struct conn *c = calloc(1, sizeof(*c));
    char path[64], body[600], *rb;
    int idx = 0;

    c->fd = -1;
    c->sa = addr_p[p->peer];
    p->lag = calloc(MAX_SAMPLES, sizeof(double));
    for (;;) {
        int avail = __atomic_load_n(&nsamples, __ATOMIC_ACQUIRE);
        if (idx >= avail) {
            if (writers_done && idx >= __atomic_load_n(&nsamples, __ATOMIC_ACQUIRE))
                break;
            usleep(50);
            continue;
        }
        struct sample *s = &samples[idx];
        int blen = snprintf(body, sizeof(body), "{\"causal-metadata\": %s}", s->meta);
        snprintf(path, sizeof(path), everywhere ? "/kvs/probe%d" : "/kvs/lag%d", s->key);
        for (;;) {
            int st = request(c, "GET", path, body, (size_t)blen, &rb);
            if (st == 200) {
                p->lag[p->n++] = now() - s->t_ack;
                break;
            }
            if (st != 503) {
                p->errors++;
                if (p->errors > 1000)
                    goto out;
                usleep(1000);
            }
            if (now() - s->t_ack > 10) { /* never visible: count as 10 s */
                p->lag[p->n++] = 10;
                break;
            }
            if (poll_pause_us)
                usleep((useconds_t)poll_pause_us);
        }
        idx++;
    }
out:
    if (c->fd >= 0)
        close(c->fd);
    free(c);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double q)
{
    int i;
    if (n == 0)
        return -1;
    i = (int)(q * (n - 1) + 0.5);
    return v[i] * 1000;
}

int main(int argc, char **argv)
{
    int o, i;
    char *peers = NULL;
    pthread_t *wt, probe_th;
    struct poller pl[MAX_PEERS];

    while ((o = getopt(argc, argv, "a:p:r:d:w:s:v:i:e")) != -1) {
        switch (o) {
        case 'a':
            if (parse_addr(optarg, &addr_a) != 0)
                return 2;
            break;
        case 'p':
            peers = strdup(optarg);
            break;
        case 'r': rate = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': nwriters = atoi(optarg); break;
        case 's': sample_hz = atof(optarg); break;
        case 'v': vbytes = atoi(optarg); break;
        case 'i': poll_pause_us = atoi(optarg); break;
        case 'e': everywhere = 1; break;
        default:
            fprintf(stderr, "usage: lagprobe -a A -p B,C [-r rate] [-d s] [-w writers] [-s samples/s] [-v bytes] [-i us] [-e]\n");
            return 2;
        }
    }
    if (!peers || addr_a.sin_family != AF_INET || vbytes < 2 || vbytes > 3000 || rate <= 0 || sample_hz <= 0 ||
        nwriters < 1)
        return 2;
    for (char *tok = strtok(peers, ","); tok && npeers < MAX_PEERS; tok = strtok(NULL, ",")) {
        if (parse_addr(tok, &addr_p[npeers]) != 0)
            return 2;
        name_p[npeers++] = tok;
    }
    put_len = (size_t)snprintf(put_body, sizeof(put_body), "{\"value\": \"");
    memset(put_body + put_len, 'x', (size_t)vbytes - 2);
    put_len += (size_t)vbytes - 2;
    put_len += (size_t)snprintf(put_body + put_len, sizeof(put_body) - put_len, "\"}");
    samples = calloc(MAX_SAMPLES, sizeof(*samples));

    t0 = now() + 0.05;
    for (i = 0; i < npeers; ++i) {
        pl[i].peer = i;
        pl[i].n = pl[i].errors = 0;
        pthread_create(&pl[i].th, NULL, poll_peer, &pl[i]);
    }
    wt = calloc((size_t)nwriters, sizeof(*wt));
    for (i = 0; i < nwriters; ++i)
        pthread_create(&wt[i], NULL, writer, (void *)(long)i);
    if (everywhere)
        pthread_create(&probe_th, NULL, probe, NULL);
    for (i = 0; i < nwriters; ++i)
        pthread_join(wt[i], NULL);
    double t_end = now();
    if (everywhere)
        pthread_join(probe_th, NULL);
    writers_done = 1;
    for (i = 0; i < npeers; ++i) {
        pthread_join(pl[i].th, NULL);
        qsort(pl[i].lag, (size_t)pl[i].n, sizeof(double), cmp);
        printf("LAG peer=%s n=%d p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f poll_errors=%d\n", name_p[i],
               pl[i].n, pct(pl[i].lag, pl[i].n, 0.5), pct(pl[i].lag, pl[i].n, 0.99), pct(pl[i].lag, pl[i].n, 0.999),
               pct(pl[i].lag, pl[i].n, 1.0), pl[i].errors);
    }
    /* all peers together */
    {
        int n = 0;
        double *all = calloc(MAX_SAMPLES * (size_t)npeers, sizeof(double));
        for (i = 0; i < npeers; ++i) {
            memcpy(all + n, pl[i].lag, (size_t)pl[i].n * sizeof(double));
            n += pl[i].n;
        }
        qsort(all, (size_t)n, sizeof(double), cmp);
        printf("LAG peer=all n=%d p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n", n, pct(all, n, 0.5),
               pct(all, n, 0.99), pct(all, n, 0.999), pct(all, n, 1.0));
    }
    printf("RATE target=%.0f achieved=%.0f writes=%ld errors=%ld max_behind_ms=%.1f writers_on=%s\n", rate,
           (double)writes_done / (t_end - t0), writes_done, write_errors, max_behind * 1000,
           everywhere ? "all" : "A");
    return 0;
}
