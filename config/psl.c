/*
 * libpsl behind two questions. The context is made on first use and kept for
 * the process: the proxy asks first while loading its policy at start, before
 * the privilege drop, so a reload never needs the list's file again.
 */
#include "psl.h"

#include <libpsl.h>
#include <string.h>

static const psl_ctx_t *ctx(void)
{
    static const psl_ctx_t *psl;

    if (!psl) {
        psl = psl_latest(NULL);         /* the newer of the built-in and the system list */
        if (!psl)
            psl = psl_builtin();
    }
    return psl;
}

bool psl_name_is_public(const char *name)
{
    const psl_ctx_t *p = ctx();

    if (!strchr(name, '.'))
        return true;
    /* without the implicit "*" rule: a two-label name under an unlisted
     * top-level domain (corp.internal) is a registrable one */
    return p && psl_is_public_suffix2(p, name, PSL_TYPE_ANY | PSL_TYPE_NO_STAR_RULE);
}

bool psl_registrable(const char *name, char *out, size_t cap)
{
    const psl_ctx_t *p = ctx();
    const char *r = p ? psl_registrable_domain(p, name) : NULL;
    size_t len;

    if (!r || (len = strlen(r)) >= cap)
        return false;
    memcpy(out, r, len + 1);
    return true;
}
