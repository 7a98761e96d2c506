/* A power cut, simulated for SQLite: an LD_PRELOAD library that records what a disk is guaranteed to hold.
 *
 * Every fsync/fdatasync of a file under $POWERLOSS_WATCH is an event, numbered 1, 2, 3 … in the order they
 * happen (one lock serialises them). Event N copies the file's contents, as they are when the sync is called
 * (the writes that sync makes durable), to $POWERLOSS_SHADOW/N/<path relative to the watched directory>, and
 * keeps the copy only once the real sync has returned. Unlinking a watched file is an event too (an empty
 * `<path>.unlinked` marker). So "the power failed when event N began" leaves, for each file, its copy from its
 * latest event before N: every write not yet synced is lost, the pessimistic outcome of a power cut.
 * tests/reliability/test_power_loss.py rebuilds that disk for every N and checks it.
 *
 * `powerloss_events` (the number of events begun) is exported so the process can stamp what it acknowledges.
 * Not modelled: torn pages, unsynced writes that do reach the disk (in any order), and directory entries (the
 * files exist before the measured window). Built by the test with gcc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
volatile long powerloss_events = 0;

/* `path` made absolute; the part after $POWERLOSS_WATCH (with its leading '/') if it is under it, else NULL. */
static const char *relative_to_watch(char *path) {
    const char *watch = getenv("POWERLOSS_WATCH");
    if (watch == NULL || getenv("POWERLOSS_SHADOW") == NULL) return NULL;
    size_t length = strlen(watch);
    if (strncmp(path, watch, length) != 0 || path[length] != '/') return NULL;
    return path + length;
}

static void make_parents(char *path) {
    for (char *slash = strchr(path + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        mkdir(path, 0700);
        *slash = '/';
    }
}

/* The path of event `number` for `relative` (+ `suffix`), its directories made. */
static void event_path(char *out, size_t size, long number, const char *relative, const char *suffix) {
    snprintf(out, size, "%s/%ld%s%s", getenv("POWERLOSS_SHADOW"), number, relative, suffix);
    make_parents(out);
}

static int copy_out(int fd, const char *to) {
    char buffer[65536];
    off_t offset = 0;
    ssize_t got;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0) return -1;
    while ((got = pread(fd, buffer, sizeof buffer, offset)) > 0) {
        if (write(out, buffer, (size_t)got) != got) { close(out); return -1; }
        offset += got;
    }
    close(out);
    return got < 0 ? -1 : 0;
}

static int synced(int fd, int (*real)(int)) {
    char link[64], path[PATH_MAX], copy[PATH_MAX + 64], done[PATH_MAX + 64];
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return real(fd);
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return real(fd);
    path[n] = '\0';
    const char *relative = relative_to_watch(path);
    if (relative == NULL) return real(fd);
    pthread_mutex_lock(&lock);
    long number = ++powerloss_events;
    event_path(copy, sizeof copy, number, relative, ".syncing");
    event_path(done, sizeof done, number, relative, "");
    int copied = copy_out(fd, copy);
    int result = real(fd);
    int saved = errno;
    if (copied == 0 && result == 0) rename(copy, done);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return result;
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return synced(fd, real);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return synced(fd, real);
}

int unlink(const char *name) {
    static int (*real)(const char *);
    char path[PATH_MAX], marker[PATH_MAX + 64];
    if (real == NULL) real = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
    if (realpath(name, path) == NULL || relative_to_watch(path) == NULL) return real(name);
    pthread_mutex_lock(&lock);
    long number = ++powerloss_events;
    int result = real(name);
    if (result == 0) {
        event_path(marker, sizeof marker, number, relative_to_watch(path), ".unlinked");
        close(open(marker, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    }
    pthread_mutex_unlock(&lock);
    return result;
}
