/*
 * http_internal.c - /internal/: the peer-ingest API served by workers.
 */
#include <string.h>

#include "http.h"

int http_internal(struct http_env *env, h2o_req_t *req, const char *path, size_t len)
{
    if (len == 14 && memcmp(path, "/internal/ping", 14) == 0) {
        http_send_lit(req, 200, "{}");
        return 0;
    }
    http_send_lit(req, 404, "{\"error\": \"Not found\"}");
    return 0;
}
