/*
 * persist.c - persister_main(): the data directory's only writer.
 *
 * The loop is a flat list of checks, like the replicator's tick:
 *   - a snapshot due?  (this process just started, a state transfer was
 *     installed, records fell off the ring, or the log has grown past
 *     --compact-ratio times the last snapshot)
 *   - records in the ring past our cursor?  append them to log.N;
 *   - an fsync due?  (always: after every append, one fsync for all the
 *     records written so far -- group commit; everysec: once a second;
 *     no: never, the kernel decides)
 *   - the last write failed?  retry once a second; writes get 507 and
 *     /ready 503 meanwhile (shm->persist_failed).
 * The ring keeps every record we have not written (rlog keep_from), so
 * nothing is lost while we lag; a write that would need its room gets
 * 507.  Workers waiting for `always` poll shm->persist_synced.
 *
 * A snapshot is a cut of the store (store_snapshot_sh(): table pointers
 * and clock under the writer lock, entries read outside it) at ring
 * position P.  It is written to snapshot.N+1.tmp, fsynced, renamed and
 * the directory fsynced; log.N+1 then starts with the records from P on
 * (still in the ring: keep_from was lowered to P under the same lock).
 * Only then are snapshot.N and log.N removed.
 *
 * A persister started on a whole generation (at startup, after the
 * master's recovery, or restarted after a crash) goes on with its log
 * from the ring's keep_from (start_generation()); it writes a snapshot
 * first only when the files may not cover the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "datadir.h"
#include "datafile.h"
#include "log.h"
#include "persist.h"
#include "rcu.h"
#include "rlog.h"
#include "stats.h"
#include "store.h"
#include "table.h"
#include "util.h"

#define FLUSH_BYTES (1u << 20) /* write() the buffer at this size */
#define RETRY_MS 1000
#define MIN_COMPACT_BYTES (4u << 20) /* never compact a log smaller than this */

static volatile sig_atomic_t got_term;

static struct persister {
    shm_t *shm;
    struct proc_stats *stats; /* our slot's: survives our restarts */
    const struct config *cfg;
    const char *dir;
    int slot, dirfd, logfd;
    uint64_t gen;
    uint64_t cursor;   /* next ring position to append */
    uint64_t log_bytes, snap_bytes;
    uint64_t installs_seen;
    uint64_t written;  /* ring position: records before it are in the log (or snapshot) */
    uint64_t synced;
    uint64_t last_sync_ms;
    int need_snapshot;
    int failed;
    uint64_t retry_at_ms;
    struct df_buf out;
    char *rec;
    size_t reccap;
    /* incarnation rows as defined in the current log file */
    int defined[CLOCK_MAX];
    uint64_t def_stamp[CLOCK_MAX];
    char def_addr[CLOCK_MAX][ADDR_MAX];
    int def_folded[CLOCK_MAX];
} p;

static void on_signal(int sig)
{
    if (sig != SIGHUP)
        got_term = 1;
}

/* Tests only (KVSD_TEST_PAUSE set): if the file pause-<point> is in the
 * data directory, remove it and stop here until killed, so a test can
 * SIGKILL us at exactly this point of a snapshot or a log rotation. */
static void test_pause(const char *point)
{
    char path[DATADIR_NAME_MAX + 32];

    if (getenv("KVSD_TEST_PAUSE") == NULL)
        return;
    snprintf(path, sizeof(path), "%s/pause-%s", p.dir, point);
    if (unlink(path) != 0)
        return;
    log_info("test hook: persister paused at %s", point);
    while (!got_term)
        usleep(10000);
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void note_fsync_latency(uint64_t us)
{
    static const uint64_t bound[7] = { 100, 1000, 5000, 10000, 50000, 100000, 1000000 };
    int i = 0;

    while (i < 7 && us > bound[i])
        ++i;
    __atomic_add_fetch(&p.shm->persist.fsync_us[i], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&p.shm->persist.fsyncs, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&p.shm->persist.fsync_us_sum, us, __ATOMIC_RELAXED);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int timed_fsync(int fd)
{
    uint64_t t0 = now_us();
    int r = fdatasync(fd);

    note_fsync_latency(now_us() - t0);
    return r;
}

/* A write or fsync failed: say so once, raise the alarm, retry later. */
static void fail(const char *what, int err)
{
    if (!p.failed)
        log_error("%s in %s failed: %s; writes are refused (507) until it succeeds", what, p.dir, strerror(err));
    p.failed = 1;
    p.retry_at_ms = now_ms() + RETRY_MS;
    __atomic_add_fetch(&p.shm->persist.errors, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&p.shm->persist_failed, 1, __ATOMIC_RELEASE);
}

static void recovered(void)
{
    if (p.failed)
        log_info("writing to %s works again; writes accepted", p.dir);
    p.failed = 0;
    __atomic_store_n(&p.shm->persist_failed, 0, __ATOMIC_RELEASE);
}

static void publish_positions(void)
{
    __atomic_store_n(&p.shm->persist_written, p.written, __ATOMIC_RELEASE);
    __atomic_store_n(&p.shm->persist_synced, p.synced, __ATOMIC_RELEASE);
    __atomic_store_n(&p.shm->persist.log_bytes, p.log_bytes, __ATOMIC_RELAXED);
}

/* ---- snapshots ---- */

struct snap_ctx {
    int fd;
    int error;
    uint64_t pos; /* ring head at the cut */
    uint64_t lamport;
    uint32_t ninc;
    uint64_t applied[CLOCK_MAX];
    struct incarnation inc[CLOCK_MAX];
    uint32_t flags[CLOCK_MAX];
};

static int snap_flush(struct snap_ctx *s)
{
    if (write_all(s->fd, p.out.p, p.out.len) != 0) {
        s->error = errno;
        return -1;
    }
    __atomic_add_fetch(&p.shm->persist.bytes_written, p.out.len, __ATOMIC_RELAXED);
    p.snap_bytes += p.out.len;
    p.out.len = 0;
    return 0;
}

/* Under the writer lock: the clock, the rows, the ring position, and the
 * ring told to keep everything from here that a new log will need. */
static void at_cut(shm_t *shm, void *arg)
{
    struct snap_ctx *s = arg;
    uint64_t keep = __atomic_load_n(&shm->rlog->keep_from, __ATOMIC_ACQUIRE);
    uint32_t i;

    s->pos = rlog_head(shm->rlog);
    s->lamport = shm->clock->lamport;
    s->ninc = __atomic_load_n(&shm->clock->ninc, __ATOMIC_ACQUIRE);
    for (i = 0; i < s->ninc; ++i) {
        s->applied[i] = shm->clock->applied[i];
        s->inc[i] = shm->clock->inc[i];
        s->flags[i] = clock_flags(shm->clock, i);
    }
    if (s->pos < keep)
        __atomic_store_n(&shm->rlog->keep_from, s->pos, __ATOMIC_RELEASE);
    /* the rows go first in the file (a reader needs them before any
     * entry naming them): into the buffer only, no I/O under the lock */
    for (i = 0; i < s->ninc; ++i)
        if (!(s->flags[i] & INC_FREE))
            df_put_inc(&p.out, i, s->inc[i].stamp, (s->flags[i] & (INC_FOLDED | INC_STALE)) != 0, s->inc[i].addr);
}

static int snap_entry(const struct entry *e, void *arg)
{
    struct snap_ctx *s = arg;

    df_put_write(&p.out, e->origin, e->seq, e->lamport, (e->flags & ENTRY_TOMBSTONE) != 0, entry_key(e), e->klen,
                 entry_value(e), (e->flags & ENTRY_TOMBSTONE) ? 0 : e->vlen);
    return p.out.len >= FLUSH_BYTES ? snap_flush(s) : 0;
}

static int open_log(uint64_t gen)
{
    char path[DATADIR_NAME_MAX];
    int fd;

    datadir_path(path, sizeof(path), p.dir, "log", gen);
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640)) == -1)
        return -1;
    p.out.len = 0;
    df_put_header(&p.out, DF_LOG);
    if (write_all(fd, p.out.p, p.out.len) != 0 || fdatasync(fd) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    p.out.len = 0;
    p.log_bytes = DF_HEADER_LEN;
    return fd;
}

static void remove_generation(uint64_t gen)
{
    char path[DATADIR_NAME_MAX];

    datadir_path(path, sizeof(path), p.dir, "snapshot", gen);
    unlink(path);
    datadir_path(path, sizeof(path), p.dir, "log", gen);
    unlink(path);
}

static int take_snapshot(void)
{
    static struct snap_ctx s;
    char tmp[DATADIR_NAME_MAX + 8], path[DATADIR_NAME_MAX];
    uint64_t gen = p.gen + 1, t0 = now_ms();
    int fd, logfd;

    memset(&s, 0, sizeof(s));
    p.installs_seen = __atomic_load_n(&p.shm->installs, __ATOMIC_ACQUIRE);
    datadir_path(path, sizeof(path), p.dir, "snapshot", gen);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if ((fd = s.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)) == -1) {
        fail("creating a snapshot", errno);
        return -1;
    }
    p.out.len = 0;
    p.snap_bytes = 0;
    df_put_header(&p.out, DF_SNAPSHOT);
    if (store_snapshot_sh(p.shm, p.slot, at_cut, snap_entry, &s) != 0) {
        s.error = ENOMEM;
        goto fail;
    }
    if (s.error != 0)
        goto fail;
    df_put_clock(&p.out, s.lamport, s.applied, s.ninc);
    df_put_end(&p.out, s.pos);
    if (snap_flush(&s) != 0)
        goto fail;
    test_pause("snapshot"); /* snapshot.N+1.tmp written, not synced or renamed */
    if (timed_fsync(fd) != 0 || rename(tmp, path) != 0 || fsync(p.dirfd) != 0) {
        s.error = errno;
        goto fail;
    }
    close(fd);
    test_pause("rename"); /* snapshot.N+1 in place, no log.N+1 yet */
    /* the new generation's log; the old one stays until this is durable */
    if ((logfd = open_log(gen)) == -1 || fsync(p.dirfd) != 0) {
        int e = errno;
        if (logfd != -1)
            close(logfd);
        /* snapshot.gen is whole; without log.gen recovery starts from it
         * alone, which is right: nothing after its cut is acknowledged as
         * durable yet */
        if (p.logfd != -1)
            close(p.logfd);
        p.logfd = -1;
        remove_generation(p.gen);
        p.gen = gen;
        p.need_snapshot = 1;
        fail("creating a log", e);
        return -1;
    }
    test_pause("rotate"); /* log.N+1 started, generation N not removed */
    if (p.logfd != -1)
        close(p.logfd);
    p.logfd = logfd;
    remove_generation(p.gen);
    p.gen = gen;
    memset(p.defined, 0, sizeof(p.defined));
    /* everything before the cut is in the snapshot, on disk; the new log
     * starts at the cut, with records the ring kept for it */
    p.cursor = s.pos;
    if (s.pos > p.written)
        p.written = s.pos;
    if (s.pos > p.synced)
        p.synced = s.pos;
    p.last_sync_ms = now_ms();
    p.need_snapshot = 0;
    __atomic_store_n(&p.stats->persist_installs, p.installs_seen, __ATOMIC_RELAXED);
    __atomic_store_n(&p.shm->rlog->keep_from, p.cursor, __ATOMIC_RELEASE);
    publish_positions();
    __atomic_store_n(&p.shm->persist.snapshot_bytes, p.snap_bytes, __ATOMIC_RELAXED);
    __atomic_store_n(&p.shm->persist.snapshot_wall_ms, wallclock_ms(), __ATOMIC_RELAXED);
    __atomic_add_fetch(&p.shm->persist.snapshots, 1, __ATOMIC_RELAXED);
    log_info("snapshot %" PRIu64 " written: %" PRIu64 " bytes at log position %" PRIu64 " in %" PRIu64 " ms", gen,
             p.snap_bytes, s.pos, now_ms() - t0);
    recovered();
    return 0;
fail:
    close(fd);
    unlink(tmp);
    p.out.len = 0;
    fail("writing a snapshot", s.error);
    return -1;
}

/* ---- the log ---- */

/* Define (or redefine: rows are reused) the row a record names. */
static void define_row(uint32_t id)
{
    const struct incarnation *inc = &p.shm->clock->inc[id];
    int folded = clock_folded(p.shm->clock, id);

    if (p.defined[id] && p.def_stamp[id] == inc->stamp && p.def_folded[id] == folded &&
        strncmp(p.def_addr[id], inc->addr, ADDR_MAX) == 0)
        return;
    df_put_inc(&p.out, id, inc->stamp, folded, inc->addr);
    p.defined[id] = 1;
    p.def_stamp[id] = inc->stamp;
    p.def_folded[id] = folded;
    memcpy(p.def_addr[id], inc->addr, ADDR_MAX);
}

/* Append the ring's records past the cursor.  Returns how many, or -1. */
static long append_records(void)
{
    const struct rlog_sh *rlog = p.shm->rlog;
    uint64_t pos = p.cursor;
    long n = 0;
    size_t need = 0;

    p.out.len = 0;
    while (p.out.len < FLUSH_BYTES) {
        long r = rlog_read_persisted(rlog, &pos, p.rec, p.reccap, &need);
        const struct rlog_rec *h = (const struct rlog_rec *)p.rec;
        if (r == 0)
            break;
        if (r == -2) {
            p.rec = xrealloc(p.rec, need);
            p.reccap = need;
            continue;
        }
        if (r == -1) {
            /* overwritten: cannot happen while keep_from holds, but if it
             * does, a snapshot covers whatever we missed */
            log_warn("records at log position %" PRIu64 " fell off the ring before they were written; "
                     "taking a snapshot", p.cursor);
            p.need_snapshot = 1;
            p.out.len = 0;
            return 0;
        }
        if (h->origin >= CLOCK_MAX)
            continue; /* cannot happen: the store bounds origins */
        define_row(h->origin);
        df_put_write(&p.out, h->origin, h->seq, h->lamport, (h->flags & RLOG_TOMBSTONE) != 0, rlog_rec_key(h),
                     h->klen, rlog_rec_value(h), (h->flags & RLOG_TOMBSTONE) ? 0 : h->vlen);
        p.cursor = pos;
        ++n;
    }
    if (p.out.len == 0)
        return n;
    if (write_all(p.logfd, p.out.p, p.out.len) != 0) {
        int e = errno;
        /* drop a partial frame so the file stays whole; retry later */
        if (ftruncate(p.logfd, (off_t)p.log_bytes) != 0)
            p.need_snapshot = 1;
        p.cursor = p.written;
        memset(p.defined, 0, sizeof(p.defined));
        p.out.len = 0;
        fail("appending to the log", e);
        return -1;
    }
    p.log_bytes += p.out.len;
    __atomic_add_fetch(&p.shm->persist.bytes_written, p.out.len, __ATOMIC_RELAXED);
    p.out.len = 0;
    p.written = p.cursor;
    if (p.cfg->fsync_mode == FSYNC_NO)
        p.synced = p.written; /* the kernel's business: nobody waits on it */
    __atomic_store_n(&p.shm->rlog->keep_from, p.written, __ATOMIC_RELEASE);
    publish_positions();
    return n;
}

static void maybe_fsync(uint64_t now)
{
    if (p.synced >= p.written || p.cfg->fsync_mode == FSYNC_NO)
        return;
    if (p.cfg->fsync_mode == FSYNC_EVERYSEC && now - p.last_sync_ms < 1000)
        return;
    /* one fsync covers every record written so far: group commit */
    if (timed_fsync(p.logfd) != 0) {
        /* after a failed fsync the kernel may have dropped the dirty
         * pages: rewrite everything through a new snapshot */
        p.need_snapshot = 1;
        fail("fsync of the log", errno);
        return;
    }
    p.synced = p.written;
    p.last_sync_ms = now;
    publish_positions();
}

/* ---- restarts ---- */

/* Do the files hold the whole store but for the ring's records from
 * keep_from on?  Not if a state transfer was installed that no snapshot
 * has covered since (the first persister of a replica's life has one to
 * cover: the master's recovery, which installed these very files), nor
 * after a failed write or fsync (the page cache may have dropped it). */
static int files_cover_store(void)
{
    uint64_t installs = __atomic_load_n(&p.shm->installs, __ATOMIC_ACQUIRE);
    uint64_t lives = __atomic_add_fetch(&p.stats->persist_lives, 1, __ATOMIC_RELAXED);

    if (p.gen == 0 || __atomic_load_n(&p.shm->persist_failed, __ATOMIC_ACQUIRE))
        return 0;
    if (lives == 1)
        return installs == 1;
    return installs == __atomic_load_n(&p.stats->persist_installs, __ATOMIC_RELAXED);
}

/* Go on appending to log.N: it must be whole but for a torn tail (a
 * persister killed mid-append), which is cut off.  Every record before
 * the ring's keep_from is in it: keep_from passes a record only after
 * write() returned, and a killed process's writes are in the page cache,
 * which the fdatasync() here puts on disk. */
static int resume_log(void)
{
    char path[DATADIR_NAME_MAX];
    struct df_result res;
    struct stat st;
    void *data;
    int fd;

    datadir_path(path, sizeof(path), p.dir, "snapshot", p.gen);
    if (stat(path, &st) != 0)
        return -1;
    p.snap_bytes = (uint64_t)st.st_size;
    datadir_path(path, sizeof(path), p.dir, "log", p.gen);
    if ((fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC)) == -1)
        return -1;
    if (fstat(fd, &st) != 0 || st.st_size < DF_HEADER_LEN)
        goto no;
    if ((data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED)
        goto no;
    df_scan(data, (size_t)st.st_size, DF_LOG, NULL, NULL, &res);
    munmap(data, (size_t)st.st_size);
    if (res.status == DF_CORRUPT)
        goto no;
    if (res.status == DF_TORN) {
        log_warn("%s: torn last record at offset %" PRIu64 " (a persister died writing it): truncated", path,
                 res.bad_offset);
        if (ftruncate(fd, (off_t)res.good_len) != 0)
            goto no;
    }
    if (fdatasync(fd) != 0)
        goto no;
    p.logfd = fd;
    p.log_bytes = res.good_len;
    return 0;
no:
    close(fd);
    return -1;
}

/* What a persister killed in take_snapshot() may have left: a partial
 * snapshot.N+1.tmp, or generation N-1 not removed yet. */
static void remove_leftovers(void)
{
    char path[DATADIR_NAME_MAX + 8];

    datadir_path(path, sizeof(path), p.dir, "snapshot", p.gen + 1);
    strcat(path, ".tmp");
    unlink(path);
    if (p.gen > 1)
        remove_generation(p.gen - 1);
}

/* Continue the newest generation if we can, else start a new one. */
static void start_generation(void)
{
    uint64_t installs = __atomic_load_n(&p.shm->installs, __ATOMIC_ACQUIRE);

    remove_leftovers();
    if (!files_cover_store() || resume_log() != 0) {
        p.need_snapshot = 1;
        return;
    }
    p.cursor = p.written = p.synced = __atomic_load_n(&p.shm->rlog->keep_from, __ATOMIC_ACQUIRE);
    p.installs_seen = installs;
    __atomic_store_n(&p.stats->persist_installs, installs, __ATOMIC_RELAXED);
    p.last_sync_ms = now_ms();
    publish_positions();
    log_info("continuing log.%" PRIu64 " (%" PRIu64 " bytes) from log position %" PRIu64, p.gen, p.log_bytes,
             p.cursor);
}

static int snapshot_due(void)
{
    uint64_t base = p.snap_bytes > MIN_COMPACT_BYTES ? p.snap_bytes : MIN_COMPACT_BYTES;

    return p.need_snapshot || p.gen == 0 || __atomic_load_n(&p.shm->installs, __ATOMIC_ACQUIRE) != p.installs_seen ||
           p.log_bytes > base * p.cfg->compact_ratio;
}

void persister_main(shm_t *shm, const struct config *cfg, int slot)
{
    set_proc_name("kvsd-persister");
    log_set_role("persister", -1);
    child_signals(on_signal);
    if (getppid() != shm->master_pid)
        exit(0);
    rcu_register_sh(shm->rcu, slot, getpid());

    p.shm = shm;
    p.cfg = cfg;
    p.dir = cfg->data_dir;
    p.slot = slot;
    p.logfd = -1;
    p.stats = &shm->stats->proc[slot];
    p.gen = datadir_generation(p.dir);
    p.written = p.synced = __atomic_load_n(&shm->persist_synced, __ATOMIC_ACQUIRE);
    p.reccap = 4096;
    p.rec = xmalloc(p.reccap);
    if ((p.dirfd = open(p.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
        fatal("cannot open %s", p.dir);
    start_generation();

    while (!got_term) {
        uint64_t now = now_ms();
        long n = 0;

        if (getppid() != shm->master_pid)
            break;
        if (p.failed && now < p.retry_at_ms) {
            usleep(10000);
            continue;
        }
        /* a snapshot due? (first, restarts, installs, overwritten records, log growth) */
        if (snapshot_due()) {
            take_snapshot();
            continue;
        }
        /* records in the ring we have not written? */
        if ((n = append_records()) < 0)
            continue;
        if (p.failed)
            recovered();
        /* an fsync due? */
        maybe_fsync(now_ms());
        if (n == 0)
            usleep(cfg->fsync_mode == FSYNC_ALWAYS ? 200 : 2000);
    }
    /* a clean stop leaves everything written on disk: the master stops us
     * only after the workers and the replicator, so the ring is final */
    if (p.logfd != -1) {
        long n;
        int rounds = 0;
        while ((n = append_records()) > 0 && ++rounds < 1000000)
            ;
        if (n < 0)
            exit(0);
    }
    if (p.logfd != -1 && fdatasync(p.logfd) == 0) {
        p.synced = p.written;
        publish_positions();
    }
    exit(0);
}
