/*
 * test_notify.c - unit test for src/notify.c: with NOTIFY_SOCKET naming a
 * unix datagram socket (a path, then an abstract "@name"), notify_ready()
 * and notify_stopping() deliver READY=1 and STOPPING=1; without
 * NOTIFY_SOCKET they send nothing and do not fail.
 */
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"
#include "tap.h"

static int bind_dgram(const char *name, int abstract)
{
    struct sockaddr_un sun;
    socklen_t len;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd == -1)
        return -1;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (abstract) {
        memcpy(sun.sun_path + 1, name, strlen(name));
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
    } else {
        strcpy(sun.sun_path, name);
        len = sizeof(sun);
    }
    if (bind(fd, (struct sockaddr *)&sun, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Receive one datagram within a second; "" if none. */
static void recv_msg(int fd, char *buf, size_t cap)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    ssize_t n;

    buf[0] = '\0';
    if (poll(&pfd, 1, 1000) != 1)
        return;
    if ((n = recv(fd, buf, cap - 1, MSG_DONTWAIT)) > 0)
        buf[n] = '\0';
}

/* The message on one line, for the TAP output. */
static const char *show(const char *msg)
{
    static char out[512];
    size_t i;

    for (i = 0; msg[i] != '\0' && i + 1 < sizeof(out); ++i)
        out[i] = msg[i] == '\n' ? '|' : msg[i];
    out[i] = '\0';
    return out;
}

static int has_line(const char *msg, const char *line)
{
    size_t len = strlen(line);
    const char *p = msg;

    for (;;) {
        if (strncmp(p, line, len) == 0 && (p[len] == '\n' || p[len] == '\0'))
            return 1;
        if ((p = strchr(p, '\n')) == NULL)
            return 0;
        ++p;
    }
}

int main(void)
{
    char dir[] = "/tmp/kvsd-notify-XXXXXX", path[128], abstract[64], env[80], msg[512];
    int fd;

    plan(8);

    unsetenv("NOTIFY_SOCKET");
    is_int(notify_send("READY=1"), 0, "no NOTIFY_SOCKET: nothing sent, no error");
    notify_ready(); /* must not crash */

    if (mkdtemp(dir) == NULL)
        return perror("mkdtemp"), 1;
    snprintf(path, sizeof(path), "%s/notify", dir);
    fd = bind_dgram(path, 0);
    ok(fd != -1, "bound a unix datagram socket at %s", path);
    setenv("NOTIFY_SOCKET", path, 1);

    notify_ready();
    recv_msg(fd, msg, sizeof(msg));
    ok(has_line(msg, "READY=1"), "notify_ready() sent READY=1 (got '%s')", show(msg));
    notify_stopping();
    recv_msg(fd, msg, sizeof(msg));
    ok(has_line(msg, "STOPPING=1"), "notify_stopping() sent STOPPING=1 (got '%s')", show(msg));
    close(fd);
    unlink(path);

    setenv("NOTIFY_SOCKET", path, 1); /* nobody listens there any more */
    ok(notify_send("READY=1") == -1, "a dead NOTIFY_SOCKET is an error, not a crash");

    snprintf(abstract, sizeof(abstract), "kvsd-test-notify-%d", (int)getpid());
    fd = bind_dgram(abstract, 1);
    ok(fd != -1, "bound an abstract unix datagram socket");
    snprintf(env, sizeof(env), "@%s", abstract);
    setenv("NOTIFY_SOCKET", env, 1);
    notify_ready();
    recv_msg(fd, msg, sizeof(msg));
    ok(has_line(msg, "READY=1"), "READY=1 arrives on an abstract socket (got '%s')", show(msg));
    close(fd);

    setenv("NOTIFY_SOCKET", "", 1);
    is_int(notify_send("READY=1"), 0, "empty NOTIFY_SOCKET: nothing sent");

    rmdir(dir);
    return done_testing();
}
