/*
 * Why-blocked feedback to the sandbox (policy `feedback: true`, the default):
 * the proxy keeps its sandbox's last PROXY_FEEDBACK_MAX denials, taken from
 * the flow records themselves, and serves them as plain HTTP to the reserved
 * name `sluice.internal`, which its DNS answers and which is never forwarded.
 * A TLS client refused by an alert, or a resolver given NXDOMAIN, can read
 * there what happened. Only this proxy's records: one proxy serves one
 * sandbox, so no other sandbox's denials, no policy text, no secrets.
 */
#ifndef SLUICE_FEEDBACK_H
#define SLUICE_FEEDBACK_H

#include <stdbool.h>
#include <stddef.h>

#include "flowlog.h"

struct feedback;

struct feedback *feedback_new(size_t max);
void feedback_free(struct feedback *f);

/* Keeps R when it is a denial (a deny record of verdict deny, a refused DNS
 * query, a refused request); anything else is ignored. */
void feedback_note(struct feedback *f, const struct flow_record *r);

/*
 * The whole HTTP/1.1 response for the page, newest denial first, as text or
 * (JSON) application/json, in a malloc'd *OUT of *LEN bytes. POLICY is the
 * hash of the policy in force. -ENOMEM on failure.
 */
int feedback_page(const struct feedback *f, const char *policy, bool json, char **out,
                  size_t *len);

/* Whether the request head in BUF (LEN bytes) asks for application/json. */
bool feedback_wants_json(const uint8_t *buf, size_t len);

#endif
