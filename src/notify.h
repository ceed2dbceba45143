/*
 * notify.h - tell the service manager (systemd, Type=notify) that kvsd is
 * serving, and that it is stopping.
 *
 * Both calls do nothing unless NOTIFY_SOCKET is set, never fail, never
 * block, and are safe to call from any process of the replica (the unit
 * sets NotifyAccess=all so a child may send READY=1).  Call
 * notify_ready() once the replica serves kvs requests (joined, snapshot
 * installed: shm->repl->ready set) and notify_stopping() when SIGTERM/SIGINT
 * starts the drain.
 */
#ifndef KVSD_NOTIFY_H
#define KVSD_NOTIFY_H

void notify_ready(void);
void notify_stopping(void);

/* Send one raw notification ("READY=1", "STATUS=...").  Returns 1 if it
 * was sent, 0 if NOTIFY_SOCKET is unset, -1 on error. */
int notify_send(const char *msg);

#endif
