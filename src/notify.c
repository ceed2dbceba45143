/*
 * notify.c - sd_notify(3) for Type=notify units, with or without
 * libsystemd.
 *
 * Built with HAVE_SYSTEMD (configure found libsystemd and passes -D), this is
 * sd_notify().  Without it, it speaks the protocol directly: one datagram
 * holding "VAR=value" lines, sent to the AF_UNIX socket named by
 * $NOTIFY_SOCKET ("@name" is the abstract namespace).  That is the whole
 * protocol systemd documents as stable for independent implementations,
 * so kvsd needs no library to run under systemd.  Nothing here blocks: the
 * socket is a datagram socket and MSG_DONTWAIT is set.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

static int send_datagram(const char *path, const char *msg)
{
    (void)path;
    return sd_notify(0, msg) > 0 ? 1 : -1;
}

#else

static int send_datagram(const char *path, const char *msg)
{
    struct sockaddr_un sun;
    size_t plen, mlen = strlen(msg);
    socklen_t alen;
    ssize_t n;
    int fd, saved;

    if (path[0] != '/' && path[0] != '@')
        return -1; /* vsock and friends: not for a replica */
    plen = strlen(path);
    if (plen >= sizeof(sun.sun_path))
        return -1;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, plen);
    if (path[0] == '@')
        sun.sun_path[0] = '\0';
    alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '/'));

    if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
        return -1;
    n = sendto(fd, msg, mlen, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sun, alen);
    saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)mlen ? 1 : -1;
}

#endif

int notify_send(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");

    if (path == NULL || path[0] == '\0')
        return 0; /* not started by a service manager that listens */
    return send_datagram(path, msg);
}

void notify_ready(void)
{
    (void)notify_send("READY=1\nSTATUS=serving");
}

void notify_stopping(void)
{
    (void)notify_send("STOPPING=1\nSTATUS=draining");
}
