/*
 * datadir.c - lock, recover and check the data directory (datadir.h).
 *
 * Recovery installs what the files hold like a state transfer
 * (store_install_sh()): every key's newest write by last-writer-wins,
 * the clock as the component-wise maximum of the snapshot's clock and
 * every logged write.  That is idempotent and needs no dependency
 * checks, so a snapshot taken at a position followed by the log from
 * that position is enough, whatever the log repeats.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datadir.h"
#include "datafile.h"
#include "log.h"
#include "store.h"
#include "table.h"
#include "util.h"

int datadir_lock(const char *dir, char *err, size_t errlen)
{
    char path[DATADIR_NAME_MAX], pid[32];
    ssize_t n;
    int fd;

    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create data directory %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640)) == -1) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            snprintf(err, errlen, "data directory %s is in use by kvsd pid %s", dir, pid[0] ? pid : "(unknown)");
        else
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
        close(fd);
        return -1;
    }
    n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void datadir_path(char *out, size_t len, const char *dir, const char *kind, uint64_t gen)
{
    snprintf(out, len, "%s/%s.%" PRIu64, dir, kind, gen);
}

uint64_t datadir_generation(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t best = 0;

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        char *end;
        uint64_t g;
        if (strncmp(de->d_name, "snapshot.", 9) != 0 || de->d_name[9] < '0' || de->d_name[9] > '9')
            continue;
        g = strtoull(de->d_name + 9, &end, 10);
        if (*end == '\0' && g > best)
            best = g;
    }
    closedir(d);
    return best;
}

/* A whole file, mapped read-only (no heap copy: a snapshot can be
 * hundreds of MB, and the recovered records point into it until the
 * install has copied them into the store).  An empty file maps nothing. */
struct mapped {
    char *data;
    size_t len;
};

/* 0, 1 if the file does not exist, -1 with a message on error. */
static int map_file(const char *path, struct mapped *m, char *err, size_t errlen)
{
    static char empty[1]; /* an empty file's data: not NULL, for memcmp() */
    struct stat st;
    void *p;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    m->data = empty;
    m->len = 0;
    if (fd == -1) {
        if (errno == ENOENT)
            return 1;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    errno = EFBIG; /* what a size past SIZE_MAX / 2 reports */
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size > SIZE_MAX / 2) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (st.st_size > 0) {
        /* populated now: one pass over the page cache, no fault per page */
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (p == MAP_FAILED) {
            snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        m->data = p;
        m->len = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

static void unmap_file(struct mapped *m)
{
    if (m->len != 0)
        munmap(m->data, m->len);
    m->data = NULL;
    m->len = 0;
}

/* What the files hold, folded into install form.  The index finds a
 * key's record among rec[]: open addressing over (hash, position) pairs,
 * so a probe compares 32-bit hashes in one array and reads a record's key
 * only when the hashes match (a replayed log upserts every key again). */
struct recovery_slot {
    uint32_t hash;
    uint32_t pos; /* 1 + index into rec, 0 empty */
};

struct recovery {
    shm_t *shm;        /* NULL for --check-data: count only */
    int32_t map[CLOCK_MAX]; /* file id -> local id, -1 undefined */
    int defined[CLOCK_MAX];
    uint64_t clock[CLOCK_MAX];
    struct store_record *rec;
    size_t n, cap;
    struct recovery_slot *index;
    size_t mask;
    uint64_t writes, incs, ends, tombstones;
};

/* Room for about `expect` keys without growing (a guess from file sizes:
 * a wrong one costs only a regrowth). */
static void recovery_presize(struct recovery *r, size_t expect)
{
    size_t cap = 1024;

    while (cap < 2 * expect && cap < ((size_t)1 << 31))
        cap *= 2;
    r->index = xmalloc(cap * sizeof(*r->index));
    memset(r->index, 0, cap * sizeof(*r->index));
    r->mask = cap - 1;
    r->cap = cap / 2;
    r->rec = xmalloc(r->cap * sizeof(*r->rec));
}

static void index_grow(struct recovery *r)
{
    size_t i, cap = r->mask ? (r->mask + 1) * 2 : 1024;
    struct recovery_slot *old = r->index;
    size_t oldcap = r->mask ? r->mask + 1 : 0;

    r->index = xmalloc(cap * sizeof(*r->index));
    memset(r->index, 0, cap * sizeof(*r->index));
    r->mask = cap - 1;
    for (i = 0; i < oldcap; ++i) {
        size_t h;
        if (old[i].pos == 0)
            continue;
        for (h = old[i].hash & r->mask; r->index[h].pos != 0; h = (h + 1) & r->mask)
            ;
        r->index[h] = old[i];
    }
    free(old);
}

/* (lamport, origin address, stamp), as the store compares them. */
static int rec_newer(const struct recovery *r, const struct store_record *a, const struct store_record *b)
{
    const struct incarnation *x = &r->shm->clock->inc[a->origin], *y = &r->shm->clock->inc[b->origin];
    int c;

    if (a->lamport != b->lamport)
        return a->lamport > b->lamport;
    if ((c = strcmp(x->addr, y->addr)) != 0)
        return c > 0;
    return x->stamp > y->stamp;
}

/* -1 if the index is full (2^31 keys: more than any arena holds). */
static int upsert(struct recovery *r, const struct store_record *w)
{
    uint32_t hash = table_hash(w->key, w->klen);
    size_t h;

    if (2 * (r->n + 1) > r->mask + 1) {
        if (r->mask + 1 >= ((size_t)1 << 32))
            return -1;
        index_grow(r);
    }
    for (h = hash & r->mask; r->index[h].pos != 0; h = (h + 1) & r->mask) {
        struct store_record *cur = &r->rec[r->index[h].pos - 1];
        if (r->index[h].hash == hash && cur->klen == w->klen && memcmp(cur->key, w->key, w->klen) == 0) {
            if (rec_newer(r, w, cur))
                *cur = *w;
            return 0;
        }
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 1024;
        r->rec = xrealloc(r->rec, r->cap * sizeof(*r->rec));
    }
    r->rec[r->n] = *w;
    r->index[h].hash = hash;
    r->index[h].pos = (uint32_t)++r->n;
    return 0;
}

static int on_item(const struct df_item *it, void *arg, char *why, size_t whylen)
{
    struct recovery *r = arg;
    uint32_t i, fid;
    uint64_t count;

    switch (it->type) {
    case 'I': {
        char addr[1][ADDR_MAX];
        uint8_t folded = (uint8_t)it->folded;
        int32_t id = 0;
        memcpy(addr[0], it->addr, ADDR_MAX);
        if (r->shm != NULL && store_intern2_sh(r->shm, (const char(*)[ADDR_MAX])addr, &it->stamp, &folded, 1, &id) != 0) {
            snprintf(why, whylen, "more incarnations than the store can hold");
            return -1;
        }
        r->map[it->fid] = id;
        r->defined[it->fid] = 1;
        r->incs++;
        return 0;
    }
    case 'W': {
        struct store_record w;
        if (!r->defined[it->fid]) {
            snprintf(why, whylen, "a write names incarnation %u, never defined", it->fid);
            return -1;
        }
        r->writes++;
        r->tombstones += it->tombstone;
        if (r->shm == NULL)
            return 0;
        w = (struct store_record){ (uint32_t)r->map[it->fid], it->seq, it->lamport, it->tombstone, it->key, it->klen,
                                   it->value, it->vlen, NULL, 0 };
        if (it->seq > r->clock[w.origin])
            r->clock[w.origin] = it->seq;
        if (upsert(r, &w) != 0) {
            snprintf(why, whylen, "more keys than recovery can index");
            return -1;
        }
        return 0;
    }
    case 'C':
        for (i = 0; i < it->npairs; ++i) {
            df_clock_pair(it, i, &fid, &count);
            if (fid >= CLOCK_MAX || !r->defined[fid]) {
                snprintf(why, whylen, "the clock names incarnation %u, never defined", fid);
                return -1;
            }
            if (r->shm != NULL && count > r->clock[r->map[fid]])
                r->clock[r->map[fid]] = count;
        }
        return 0;
    case 'E':
        r->ends++;
        return 0;
    }
    return 0;
}

static void recovery_reset_ids(struct recovery *r)
{
    memset(r->defined, 0, sizeof(r->defined)); /* file ids are per file */
}

static void recovery_free(struct recovery *r)
{
    free(r->rec);
    free(r->index);
}

static const char *status_name(enum df_status s)
{
    return s == DF_OK ? "ok" : s == DF_TORN ? "torn at the end" : "corrupt";
}

/* Milliseconds since *t, and *t moved to now (the phases' debug log). */
static double lap_ms(struct timespec *t)
{
    struct timespec now;
    double ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (double)(now.tv_sec - t->tv_sec) * 1e3 + (double)(now.tv_nsec - t->tv_nsec) / 1e6;
    *t = now;
    return ms;
}

/* Smallest bytes a write record takes in a file (frame head, type, fid,
 * seq, lamport, flags, lengths, a 1-byte key): sizes the index so a
 * snapshot's keys fit without regrowth. */
#define RECOVERY_MIN_RECORD 40

int datadir_recover(shm_t *shm, const char *dir, char *err, size_t errlen)
{
    uint64_t gen = datadir_generation(dir);
    char spath[DATADIR_NAME_MAX], lpath[DATADIR_NAME_MAX];
    struct mapped snap = { NULL, 0 }, logd = { NULL, 0 }; /* len 0: nothing to unmap */
    struct recovery r;
    struct df_result res;
    struct timespec t;
    double ms_snap, ms_log;
    int rc = -1, s = 1;

    memset(&r, 0, sizeof(r));
    r.shm = shm;
    if (gen == 0) {
        log_info("data directory %s holds no snapshot: starting empty", dir);
        return 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    datadir_path(spath, sizeof(spath), dir, "snapshot", gen);
    datadir_path(lpath, sizeof(lpath), dir, "log", gen);
    if (map_file(spath, &snap, err, errlen) != 0)
        goto out;
    /* the snapshot's keys are distinct; the log mostly rewrites them */
    recovery_presize(&r, snap.len / RECOVERY_MIN_RECORD);
    df_scan(snap.data, snap.len, DF_SNAPSHOT, on_item, &r, &res);
    if (res.status != DF_OK || r.ends != 1) {
        /* a snapshot is renamed into place only once whole and on disk */
        snprintf(err, errlen, "%s is %s at offset %" PRIu64 " (%s); kvsd --check-data %s says more", spath,
                 res.status == DF_OK ? "incomplete" : status_name(res.status), res.bad_offset,
                 res.status == DF_OK ? "no end record" : res.why, dir);
        goto out;
    }
    ms_snap = lap_ms(&t);
    recovery_reset_ids(&r);
    if ((s = map_file(lpath, &logd, err, errlen)) < 0)
        goto out;
    if (s == 0) {
        df_scan(logd.data, logd.len, DF_LOG, on_item, &r, &res);
        if (res.status == DF_CORRUPT) {
            snprintf(err, errlen, "%s is corrupt at offset %" PRIu64 " of %zu (%s) after %" PRIu64
                     " good records; refusing to start (kvsd --check-data %s)", lpath, res.bad_offset, logd.len, res.why,
                     res.frames, dir);
            goto out;
        }
        if (res.status == DF_TORN) {
            /* the records kept all lie before good_len, in pages the
             * truncation leaves mapped */
            log_warn("%s: torn last record at offset %" PRIu64 " (%s): truncated to %" PRIu64 " bytes, %" PRIu64
                     " records kept", lpath, res.bad_offset, res.why, res.good_len, res.frames);
            if (truncate(lpath, (off_t)res.good_len) != 0) {
                snprintf(err, errlen, "cannot truncate %s: %s", lpath, strerror(errno));
                goto out;
            }
        }
    }
    ms_log = lap_ms(&t);
    if (store_install_sh(shm, r.rec, r.n, r.clock, __atomic_load_n(&shm->clock->ninc, __ATOMIC_ACQUIRE)) != 0) {
        snprintf(err, errlen, "the data in %s does not fit in --memory", dir);
        goto out;
    }
    log_debug("recovery of %s: snapshot read in %.1f ms, log in %.1f ms, install in %.1f ms", dir, ms_snap, ms_log,
              lap_ms(&t));
    log_info("recovered %zu keys from %s (generation %" PRIu64 ": %zu snapshot bytes, %zu log bytes, %" PRIu64
             " logged writes)", r.n, dir, gen, snap.len, logd.len, r.writes);
    rc = 0;
out:
    unmap_file(&snap);
    unmap_file(&logd);
    recovery_free(&r);
    return rc;
}

static int check_file(const char *path, enum df_kind kind, FILE *out, int *worst)
{
    char err[256];
    struct mapped m;
    struct recovery r;
    struct df_result res;
    int s;

    memset(&r, 0, sizeof(r));
    if ((s = map_file(path, &m, err, sizeof(err))) != 0) {
        fprintf(out, "%s: %s\n", path, s > 0 ? "missing" : err);
        if (s < 0 || kind == DF_SNAPSHOT)
            *worst = 2;
        return -1;
    }
    df_scan(m.data, m.len, kind, on_item, &r, &res);
    fprintf(out, "%s: %zu bytes, %" PRIu64 " records (%" PRIu64 " writes, %" PRIu64 " tombstones, %" PRIu64
            " incarnations): %s", path, m.len, res.frames, r.writes, r.tombstones, r.incs, status_name(res.status));
    if (res.status != DF_OK)
        fprintf(out, " at offset %" PRIu64 " (%s); good up to %" PRIu64, res.bad_offset, res.why, res.good_len);
    if (kind == DF_SNAPSHOT && res.status == DF_OK && r.ends != 1)
        fprintf(out, " but incomplete (no end record)");
    fputc('\n', out);
    if (res.status == DF_CORRUPT || (kind == DF_SNAPSHOT && (res.status != DF_OK || r.ends != 1)))
        *worst = 2;
    else if (res.status == DF_TORN && *worst < 1)
        *worst = 1;
    unmap_file(&m);
    return 0;
}

int datadir_check(const char *dir, FILE *out)
{
    uint64_t gen = datadir_generation(dir);
    char path[DATADIR_NAME_MAX];
    int worst = 0;

    if (gen == 0) {
        fprintf(out, "%s: no snapshot: nothing to recover\n", dir);
        return 2;
    }
    fprintf(out, "%s: generation %" PRIu64 "\n", dir, gen);
    datadir_path(path, sizeof(path), dir, "snapshot", gen);
    check_file(path, DF_SNAPSHOT, out, &worst);
    datadir_path(path, sizeof(path), dir, "log", gen);
    check_file(path, DF_LOG, out, &worst);
    fprintf(out, "%s\n", worst == 0   ? "OK"
                         : worst == 1 ? "torn last record: kvsd will truncate it at startup"
                                      : "CORRUPT: kvsd will refuse to start");
    return worst;
}
