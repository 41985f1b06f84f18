/*
 * Named network namespaces the iproute2 way: a bind mount of the namespace
 * under /run/netns/NAME, so `ip netns exec NAME` and others find it.
 */
#ifndef SLUICE_NETNS_H
#define SLUICE_NETNS_H

#define NETNS_RUN_DIR "/run/netns"

/* Creates /run/netns/NAME holding a new namespace. -EEXIST if the name is taken. */
int netns_create(const char *name);

/* Unmounts and removes /run/netns/NAME; 0 if it was not there. */
int netns_delete(const char *name);

/* An O_RDONLY fd of the namespace NAME (or -errno). */
int netns_open(const char *name);

/*
 * Switches the calling thread into the namespace FD; *SAVED gets an fd of
 * the namespace it left, for netns_leave().
 */
int netns_enter(int fd, int *saved);
int netns_leave(int saved);

#endif
