/*
 * http_view.c - /view: read and change the set of replicas.
 *
 * The view lives in shm, so a change made through one worker is seen by
 * every worker and by the replicator at once; the replicator notices a
 * new member through view->version and starts replicating to it.
 */
#include <string.h>

#include "http.h"
#include "json.h"
#include "lock.h"
#include "repl.h"
#include "view.h"

#define E_NO_ADDR "{\"error\": \"Request does not specify a socket-address\"}"
#define E_NOT_IN_VIEW "{\"error\": \"View has no such replica\"}"
#define E_METHOD "{\"error\": \"Method not allowed\"}"
#define E_TOO_LARGE "{\"error\": \"Request body too large\"}"

static int get_view(struct http_env *env, h2o_req_t *req)
{
    static const char head[] = "{\"view\": [", sep[] = ", ", tail[] = "]}";
    char addrs[VIEW_MAX][ADDR_MAX];
    size_t n = view_list(env->shm->view, addrs, VIEW_MAX), i, cap = sizeof(head) - 1 + sizeof(tail) - 1;
    struct http_body b;

    for (i = 0; i < n; ++i)
        cap += sizeof(sep) - 1 + 2 + strlen(addrs[i]);
    http_body_init(req, &b, cap);
    http_body_lit(&b, head);
    for (i = 0; i < n; ++i) {
        if (i > 0)
            http_body_lit(&b, sep);
        http_body_lit(&b, "\"");
        http_body_str(&b, addrs[i]);
        http_body_lit(&b, "\"");
    }
    http_body_lit(&b, tail);
    http_body_send(req, 200, &b);
    return 0;
}

/* The socket-address of a PUT/DELETE body, canonicalised; -1 if absent. */
static int body_address(h2o_req_t *req, char out[ADDR_MAX])
{
    struct json_body body;
    char raw[64];
    long n;

    if (json_scan_body(req->entity.base, req->entity.len, &body) != 0 || !body.is_object)
        return -1;
    if ((n = json_string_decode(body.socket_address, raw, sizeof(raw))) < 0)
        return -1;
    return config_parse_addr(raw, (size_t)n, out);
}

int http_view(struct http_env *env, h2o_req_t *req)
{
    int is_put = METHOD(req, "PUT"), r;
    char addr[ADDR_MAX];

    if (METHOD(req, "GET"))
        return get_view(env, req);
    if (!is_put && !METHOD(req, "DELETE")) {
        http_send_lit(req, 405, E_METHOD);
        return 0;
    }
    if (req->entity.len > env->cfg->max_body) {
        http_send_lit(req, 413, E_TOO_LARGE);
        return 0;
    }
    if (body_address(req, addr) != 0) {
        http_send_lit(req, 400, E_NO_ADDR);
        return 0;
    }
    lock_acquire_sh(env->shm->lock);
    r = is_put ? repl_view_add_sh(env->shm->repl, env->shm->view, addr, PEER_ACTIVE)
               : view_remove_sh(env->shm->view, addr);
    lock_release_sh(env->shm->lock);
    if (r > 0)
        http_wake_replicator(env, 0);
    if (is_put) {
        if (r < 0)
            http_send_error(req, 507, "View is full");
        else if (r > 0)
            http_send_lit(req, 201, "{\"result\": \"added\"}");
        else
            http_send_lit(req, 200, "{\"result\": \"already present\"}");
    } else if (r > 0) {
        http_send_lit(req, 200, "{\"result\": \"deleted\"}");
    } else {
        http_send_lit(req, 404, E_NOT_IN_VIEW);
    }
    return 0;
}
