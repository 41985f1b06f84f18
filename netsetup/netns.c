/*
 * Named network namespaces. /run/netns is made a shared mount point (as
 * iproute2 does) so that the bind mounts propagate to every mount namespace
 * that later joins; a namespace is born in the calling thread, which
 * bind-mounts its /proc/thread-self/ns/net onto the name and returns to the
 * namespace it came from.
 */
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static int path_of(const char *name, char out[PATH_MAX])
{
    int n = snprintf(out, PATH_MAX, "%s/%s", NETNS_RUN_DIR, name);

    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* Makes /run/netns exist and be a shared mount, as `ip netns add` does. */
static int prepare_run_dir(void)
{
    if (mkdir(NETNS_RUN_DIR, 0755) < 0 && errno != EEXIST)
        return -errno;
    if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
        return 0;
    if (errno != EINVAL)
        return -errno;
    /* not a mount point yet: bind it onto itself, then share it */
    if (mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
        return -errno;
    if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) < 0)
        return -errno;
    return 0;
}

int netns_create(const char *name)
{
    char path[PATH_MAX];
    int fd, r, saved;

    if ((r = path_of(name, path)) < 0 || (r = prepare_run_dir()) < 0)
        return r;
    fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    close(fd);

    /* Born here, not in a child: a fork copies the page tables of a process
     * holding many sandboxes' records, the larger part of an up of many. The
     * thread makes the namespace, pins it by the bind mount, and goes back. */
    saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (saved < 0) {
        r = -errno;
        unlink(path);
        return r;
    }
    r = 0;
    if (unshare(CLONE_NEWNET) < 0) {
        r = -errno;
    } else {
        if (mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL) < 0)
            r = -errno;
        if (setns(saved, CLONE_NEWNET) < 0) {
            /* every later step would act on the wrong namespace: never go on */
            fprintf(stderr, "sluice-netsetup: cannot return to the host's network namespace: "
                    "%s\n", strerror(errno));
            abort();
        }
    }
    close(saved);
    if (r < 0)
        unlink(path);
    return r;
}

int netns_delete(const char *name)
{
    char path[PATH_MAX];
    int r;

    if ((r = path_of(name, path)) < 0)
        return r;
    if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        return -errno;
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int netns_open(const char *name)
{
    char path[PATH_MAX];
    int r, fd;

    if ((r = path_of(name, path)) < 0)
        return r;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int netns_enter(int fd, int *saved)
{
    *saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (*saved < 0)
        return -errno;
    if (setns(fd, CLONE_NEWNET) < 0) {
        int r = -errno;

        close(*saved);
        *saved = -1;
        return r;
    }
    return 0;
}

int netns_leave(int saved)
{
    int r = setns(saved, CLONE_NEWNET) < 0 ? -errno : 0;

    close(saved);
    return r;
}
