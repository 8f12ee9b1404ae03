/*
 * catalyzer.h - single-header C SDK for native Catalyzer functions.
 *
 * Plain C99 plus POSIX/Linux system calls, no other dependencies. Include it
 * in one source file, before any other header (it defines _GNU_SOURCE for
 * memfd_create), write a handler and serve it:
 *
 *   #include "catalyzer.h"
 *   static int handler(const char *event, size_t len, char **out,
 *                      size_t *outlen, char **errmsg) {
 *       *out = strdup("{\"hello\":\"world\"}");
 *       *outlen = strlen(*out);
 *       return 0;
 *   }
 *   int main(void) { return catalyzer_serve(handler); }
 *
 * catalyzer_serve speaks the control protocol (docs/PROTOCOL.md) on the fd
 * named by CATALYZER_CONTROL_FD (default 3) and returns the process exit
 * code: 0 when the daemon closes the channel, 2 on a protocol error (after
 * an error frame that says why), 1 when the channel fails otherwise.
 *
 * The handler contract:
 *   - event/len: the invocation's event, raw JSON text, NUL-terminated.
 *   - On success return 0 and set *out to a malloc'd JSON text of *outlen
 *     bytes (the SDK frees it). *out == NULL means JSON null. Output that is
 *     not one well-formed JSON value is reported as "SerializationError".
 *   - On failure return non-zero and optionally set *errmsg to a malloc'd
 *     NUL-terminated message (freed by the SDK); the error type is "Error".
 *   - fds 1 and 2 are redirected to memfds during the call (stdio is
 *     flushed before and after), so printf, write(1, ...) and child
 *     processes are captured, each bounded by the init's output_limit.
 *   - catalyzer_remaining_ms() gives the time left before the deadline (0
 *     when there is none). The SDK does not stop a late handler; the daemon
 *     kills the instance.
 *
 * Limits of the built-in JSON handling (deliberately tiny):
 *   - It reads only top-level "version", "output_limit", "id", "event" and
 *     "deadline_ms" of the daemon's messages; keys are matched byte for byte
 *     (the daemon never escapes these key names).
 *   - The invocation id is copied back as the raw JSON string token, never
 *     unescaped. The event is validated structurally and passed raw.
 *   - Nesting deeper than CATALYZER_MAX_DEPTH (256) is refused.
 *   - Captured output is escaped byte for byte: quotes, backslashes and
 *     control characters are escaped, other bytes copied, so invalid UTF-8
 *     (or a multi-byte character cut by truncation) reaches the daemon as
 *     is; Go's decoder turns it into U+FFFD.
 *   - Numbers are checked for JSON syntax only, not range.
 *
 * Forked: the SDK keeps no random state, so there is nothing to reseed; the
 * program's own rand()/random() state is copied into clones like all its
 * memory (seed it from getrandom() per invocation if clones must differ).
 */
#ifndef CATALYZER_H
#define CATALYZER_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define CATALYZER_PROTOCOL_VERSION 1
#define CATALYZER_MAX_FRAME (8u << 20)
#define CATALYZER_DEFAULT_OUTPUT_LIMIT (64u << 10)
#define CATALYZER_MAX_DEPTH 256

typedef int (*catalyzer_handler)(const char *event, size_t len, char **out,
                                 size_t *outlen, char **errmsg);

enum { CZ_INIT = 1, CZ_READY, CZ_INVOKE, CZ_RESULT, CZ_ERROR, CZ_LOG, CZ_FORKED };

static int64_t catalyzer__deadline_ns; /* 0 = none */

/* CLOCK_MONOTONIC in ns: the daemon's clock. */
static inline int64_t catalyzer_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline long long catalyzer_remaining_ms(void) {
    int64_t left;
    if (catalyzer__deadline_ns == 0) return 0;
    left = catalyzer__deadline_ns - catalyzer_monotonic_ns();
    return left > 0 ? (long long)(left / 1000000) : 0;
}

/* ---- growable buffer ---- */
typedef struct { char *p; size_t len, cap; int oom; } catalyzer__buf;

static inline void catalyzer__put(catalyzer__buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap < b->len + n + 1) cap *= 2;
        p = (char *)realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p; b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}
static inline void catalyzer__puts(catalyzer__buf *b, const char *s) { catalyzer__put(b, s, strlen(s)); }
static inline void catalyzer__puti(catalyzer__buf *b, long long v) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", v);
    catalyzer__puts(b, tmp);
}
/* Appends s as a JSON string literal. */
static inline void catalyzer__putq(catalyzer__buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t i;
    catalyzer__put(b, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[6] = {'\\', 'u', '0', '0', 0, 0};
        if (c == '"' || c == '\\') { e[1] = (char)c; catalyzer__put(b, e, 2); }
        else if (c == '\n') catalyzer__put(b, "\\n", 2);
        else if (c == '\t') catalyzer__put(b, "\\t", 2);
        else if (c == '\r') catalyzer__put(b, "\\r", 2);
        else if (c < 0x20 || c == 0x7f) { e[4] = hex[c >> 4]; e[5] = hex[c & 15]; catalyzer__put(b, e, 6); }
        else catalyzer__put(b, (const char *)&s[i], 1);
    }
    catalyzer__put(b, "\"", 1);
}

/* ---- JSON scanning: returns the index just past the value at s[i], or
 * (size_t)-1 if it is not well formed. ---- */
static inline size_t catalyzer__ws(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}
static inline size_t catalyzer__str(const char *s, size_t n, size_t i) {
    if (i >= n || s[i] != '"') return (size_t)-1;
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') return i + 1;
        if (c < 0x20) return (size_t)-1;
        if (c == '\\') {
            if (++i >= n) return (size_t)-1;
            if (s[i] == 'u') {
                int k;
                for (k = 1; k <= 4; k++)
                    if (i + k >= n || !strchr("0123456789abcdefABCDEF", s[i + k]) || s[i + k] == 0) return (size_t)-1;
                i += 4;
            } else if (!strchr("\"\\/bfnrt", s[i]) || s[i] == 0) return (size_t)-1;
        }
    }
    return (size_t)-1;
}
static inline size_t catalyzer__digits(const char *s, size_t n, size_t i) {
    size_t start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    return i == start ? (size_t)-1 : i;
}
static inline size_t catalyzer__value(const char *s, size_t n, size_t i, int depth) {
    i = catalyzer__ws(s, n, i);
    if (i >= n || depth > CATALYZER_MAX_DEPTH) return (size_t)-1;
    switch (s[i]) {
    case '"': return catalyzer__str(s, n, i);
    case '{': case '[': {
        char close = s[i] == '{' ? '}' : ']';
        int obj = s[i] == '{';
        i = catalyzer__ws(s, n, i + 1);
        if (i < n && s[i] == close) return i + 1;
        for (;;) {
            if (obj) {
                i = catalyzer__str(s, n, catalyzer__ws(s, n, i));
                if (i == (size_t)-1) return i;
                i = catalyzer__ws(s, n, i);
                if (i >= n || s[i] != ':') return (size_t)-1;
                i++;
            }
            i = catalyzer__value(s, n, i, depth + 1);
            if (i == (size_t)-1) return i;
            i = catalyzer__ws(s, n, i);
            if (i >= n) return (size_t)-1;
            if (s[i] == close) return i + 1;
            if (s[i] != ',') return (size_t)-1;
            i++;
        }
    }
    case 't': return n - i >= 4 && !memcmp(s + i, "true", 4) ? i + 4 : (size_t)-1;
    case 'f': return n - i >= 5 && !memcmp(s + i, "false", 5) ? i + 5 : (size_t)-1;
    case 'n': return n - i >= 4 && !memcmp(s + i, "null", 4) ? i + 4 : (size_t)-1;
    default:
        if (s[i] == '-') i++;
        if (i < n && s[i] == '0') i++;
        else if ((i = catalyzer__digits(s, n, i)) == (size_t)-1) return i;
        if (i < n && s[i] == '.' && (i = catalyzer__digits(s, n, i + 1)) == (size_t)-1) return i;
        if (i < n && (s[i] == 'e' || s[i] == 'E')) {
            i++;
            if (i < n && (s[i] == '+' || s[i] == '-')) i++;
            if ((i = catalyzer__digits(s, n, i)) == (size_t)-1) return i;
        }
        return i;
    }
}
/* Whether s[0:n] is exactly one JSON value (surrounding whitespace allowed). */
static inline int catalyzer__valid(const char *s, size_t n) {
    size_t i = catalyzer__value(s, n, 0, 0);
    return i != (size_t)-1 && catalyzer__ws(s, n, i) == n;
}
/* Finds top-level key in object s[0:n]: 1 and the raw value's span, 0 if
 * absent, -1 if s is not a well-formed object. */
static inline int catalyzer__find(const char *s, size_t n, const char *key, size_t *vs, size_t *ve) {
    size_t i = catalyzer__ws(s, n, 0), klen = strlen(key);
    int found = 0;
    if (i >= n || s[i] != '{') return -1;
    i = catalyzer__ws(s, n, i + 1);
    if (i < n && s[i] == '}') return catalyzer__ws(s, n, i + 1) == n ? 0 : -1;
    for (;;) {
        size_t ks = catalyzer__ws(s, n, i), ke = catalyzer__str(s, n, ks), v0, v1;
        if (ke == (size_t)-1) return -1;
        i = catalyzer__ws(s, n, ke);
        if (i >= n || s[i] != ':') return -1;
        v0 = catalyzer__ws(s, n, i + 1);
        v1 = catalyzer__value(s, n, v0, 1);
        if (v1 == (size_t)-1) return -1;
        if (!found && ke - ks == klen + 2 && !memcmp(s + ks + 1, key, klen)) { *vs = v0; *ve = v1; found = 1; }
        i = catalyzer__ws(s, n, v1);
        if (i < n && s[i] == '}') return catalyzer__ws(s, n, i + 1) == n ? found : -1;
        if (i >= n || s[i] != ',') return -1;
        i++;
    }
}
/* A top-level integer field; def if absent or not an integer. */
static inline long long catalyzer__int(const char *s, size_t n, const char *key, long long def) {
    size_t vs, ve;
    char tmp[32], *end;
    long long v;
    if (catalyzer__find(s, n, key, &vs, &ve) != 1 || ve - vs >= sizeof tmp) return def;
    memcpy(tmp, s + vs, ve - vs);
    tmp[ve - vs] = 0;
    errno = 0;
    v = strtoll(tmp, &end, 10);
    return errno || *end ? def : v;
}

/* ---- I/O ---- */
static inline int catalyzer__full(int fd, void *buf, size_t n, int writing) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = writing ? write(fd, (char *)buf + done, n - done) : read(fd, (char *)buf + done, n - done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return done == 0 ? 0 : -1; /* EOF */
        done += (size_t)r;
    }
    return 1;
}
static inline int catalyzer__send(int fd, int type, const char *p, size_t n) {
    unsigned char h[8];
    if (n > CATALYZER_MAX_FRAME) return -1;
    h[0] = 'C'; h[1] = 'Z'; h[2] = CATALYZER_PROTOCOL_VERSION; h[3] = (unsigned char)type;
    h[4] = (unsigned char)(n >> 24); h[5] = (unsigned char)(n >> 16); h[6] = (unsigned char)(n >> 8); h[7] = (unsigned char)n;
    return catalyzer__full(fd, h, 8, 1) == 1 && catalyzer__full(fd, (void *)p, n, 1) == 1 ? 0 : -1;
}
static inline int catalyzer__protoerr(int fd, const char *msg) {
    catalyzer__buf b = {0, 0, 0, 0};
    catalyzer__puts(&b, "{\"type\":\"ProtocolError\",\"message\":");
    catalyzer__putq(&b, msg, strlen(msg));
    catalyzer__puts(&b, "}");
    if (!b.oom) catalyzer__send(fd, CZ_ERROR, b.p, b.len);
    free(b.p);
    return 2;
}
static inline int catalyzer__ready(int fd) {
    catalyzer__buf b = {0, 0, 0, 0};
    int rc;
    catalyzer__puts(&b, "{\"version\":1,\"pid\":");
    catalyzer__puti(&b, (long long)getpid());
    catalyzer__puts(&b, ",\"ready_ns\":");
    catalyzer__puti(&b, (long long)catalyzer_monotonic_ns());
    catalyzer__puts(&b, "}");
    rc = b.oom ? -1 : catalyzer__send(fd, CZ_READY, b.p, b.len);
    free(b.p);
    return rc;
}

/* ---- capture of fds 1 and 2 ---- */
static inline int catalyzer__memfd(const char *name) {
#ifdef SYS_memfd_create
    int fd = (int)syscall(SYS_memfd_create, name, 1u /* MFD_CLOEXEC */);
    if (fd >= 0) return fd;
#endif
    {
        FILE *f = tmpfile();
        int fd2 = f ? fcntl(fileno(f), F_DUPFD_CLOEXEC, 10) : -1;
        (void)name;
        if (f) fclose(f);
        return fd2;
    }
}
/* Reads up to limit bytes of the capture file into b as a JSON string. */
static inline void catalyzer__collect(catalyzer__buf *b, int fd, size_t limit, int *truncated) {
    struct stat st;
    size_t size = 0, want, got = 0;
    char *tmp;
    if (fstat(fd, &st) == 0) size = (size_t)st.st_size;
    want = size > limit ? limit : size;
    if (size > limit) *truncated = 1;
    tmp = (char *)malloc(want + 1);
    if (tmp) {
        while (got < want) {
            ssize_t r = pread(fd, tmp + got, want - got, (off_t)got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
    }
    catalyzer__putq(b, tmp ? tmp : "", got);
    free(tmp);
    if (ftruncate(fd, 0) != 0) { /* next start() retries */ }
}

static inline int catalyzer__invoke(int fd, catalyzer_handler h, const char *p, size_t n,
                                    int cap[2], int saved[2], size_t limit) {
    size_t is, ie, es, ee;
    char *event, *out = NULL, *errmsg = NULL;
    size_t outlen = 0;
    int rc, k, truncated = 0, sent;
    long long deadline_ms;
    int64_t entry, exitns;
    catalyzer__buf b = {0, 0, 0, 0};

    if (catalyzer__find(p, n, "id", &is, &ie) != 1 || p[is] != '"') return catalyzer__protoerr(fd, "invoke without a string id");
    if (catalyzer__find(p, n, "event", &es, &ee) != 1) { es = 0; ee = 0; }
    deadline_ms = catalyzer__int(p, n, "deadline_ms", 0);
    catalyzer__deadline_ns = deadline_ms > 0 ? catalyzer_monotonic_ns() + (int64_t)deadline_ms * 1000000 : 0;
    event = (char *)malloc(ee - es + 5);
    if (!event) return 1;
    if (ee > es) memcpy(event, p + es, ee - es), event[ee - es] = 0;
    else strcpy(event, "null");

    fflush(stdout); fflush(stderr);
    /* Capture files and the saved stdio exist only during a call, so
     * that a frozen process holds none: its forks would share a memfd,
     * and a copy of its stdout would have them write into the
     * template's. */
    for (k = 0; k < 2; k++) {
        saved[k] = fcntl(k + 1, F_DUPFD_CLOEXEC, 10);
        cap[k] = saved[k] < 0 ? -1 : catalyzer__memfd(k ? "catalyzer-stderr" : "catalyzer-stdout");
        if (cap[k] >= 0) dup2(cap[k], k + 1);
    }
    entry = catalyzer_monotonic_ns();
    rc = h(event, strlen(event), &out, &outlen, &errmsg);
    exitns = catalyzer_monotonic_ns();
    fflush(stdout); fflush(stderr);
    for (k = 0; k < 2; k++) {
        if (saved[k] < 0) continue;
        if (cap[k] >= 0) dup2(saved[k], k + 1);
        close(saved[k]);
        saved[k] = -1;
    }
    free(event);

    catalyzer__puts(&b, "{\"id\":");
    catalyzer__put(&b, p + is, ie - is);
    catalyzer__puts(&b, ",\"entry_ns\":"); catalyzer__puti(&b, (long long)entry);
    catalyzer__puts(&b, ",\"exit_ns\":"); catalyzer__puti(&b, (long long)exitns);
    catalyzer__puts(&b, ",\"stdout\":"); catalyzer__collect(&b, cap[0], limit, &truncated);
    catalyzer__puts(&b, ",\"stderr\":"); catalyzer__collect(&b, cap[1], limit, &truncated);
    for (k = 0; k < 2; k++) {
        if (cap[k] >= 0) close(cap[k]);
        cap[k] = -1;
    }
    catalyzer__puts(&b, truncated ? ",\"truncated\":true" : ",\"truncated\":false");
    if (rc == 0 && out && !catalyzer__valid(out, outlen)) {
        rc = -1;
        free(errmsg);
        errmsg = NULL;
        catalyzer__puts(&b, ",\"type\":\"SerializationError\",\"message\":\"handler output is not one well-formed JSON value\"}");
    } else if (rc == 0) {
        catalyzer__puts(&b, ",\"output\":");
        if (out) catalyzer__put(&b, out, outlen); else catalyzer__puts(&b, "null");
        catalyzer__puts(&b, "}");
    } else {
        const char *m = errmsg ? errmsg : "handler failed";
        catalyzer__puts(&b, ",\"type\":\"Error\",\"message\":");
        catalyzer__putq(&b, m, strlen(m));
        catalyzer__puts(&b, "}");
    }
    free(out);
    free(errmsg);
    catalyzer__deadline_ns = 0;
    if (b.oom) { free(b.p); return 1; }
    if (b.len > CATALYZER_MAX_FRAME) {
        b.len = 0;
        catalyzer__puts(&b, "{\"id\":");
        catalyzer__put(&b, p + is, ie - is);
        catalyzer__puts(&b, ",\"type\":\"ResultTooLarge\",\"message\":\"result frame exceeds 8 MiB\"}");
        rc = -1;
    }
    sent = catalyzer__send(fd, rc == 0 ? CZ_RESULT : CZ_ERROR, b.p, b.len);
    free(b.p);
    return sent == 0 ? 0 : 1;
}

static inline int catalyzer_serve(catalyzer_handler h) {
    const char *env = getenv("CATALYZER_CONTROL_FD");
    int fd = env && *env ? atoi(env) : 3;
    int cap[2] = {-1, -1}, saved[2] = {-1, -1}, inited = 0;
    size_t limit = CATALYZER_DEFAULT_OUTPUT_LIMIT;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    for (;;) {
        unsigned char hdr[8];
        uint32_t n;
        char *p, msg[128];
        int r = catalyzer__full(fd, hdr, 8, 0), rc = 0;
        if (r == 0) return 0; /* EOF: the daemon is done with us */
        if (r < 0) return 1;
        if (hdr[0] != 'C' || hdr[1] != 'Z') return catalyzer__protoerr(fd, "bad frame magic");
        if (hdr[2] != CATALYZER_PROTOCOL_VERSION) {
            snprintf(msg, sizeof msg, "daemon sent protocol version %d, agent speaks version %d", hdr[2], CATALYZER_PROTOCOL_VERSION);
            return catalyzer__protoerr(fd, msg);
        }
        n = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 | (uint32_t)hdr[6] << 8 | hdr[7];
        if (n > CATALYZER_MAX_FRAME) return catalyzer__protoerr(fd, "frame exceeds 8 MiB");
        p = (char *)malloc(n + 1);
        if (!p) return 1;
        if (catalyzer__full(fd, p, n, 0) != 1) { free(p); return 1; }
        p[n] = 0;
        if (catalyzer__find(p, n, "version", &(size_t){0}, &(size_t){0}) < 0) {
            free(p);
            return catalyzer__protoerr(fd, "frame payload is not a JSON object");
        }
        switch (hdr[3]) {
        case CZ_INIT: {
            long long v = catalyzer__int(p, n, "version", -1), lim = catalyzer__int(p, n, "output_limit", 0);
            if (inited) { rc = catalyzer__protoerr(fd, "second init"); break; }
            if (v != CATALYZER_PROTOCOL_VERSION) {
                snprintf(msg, sizeof msg, "init for protocol version %lld, agent speaks version %d", v, CATALYZER_PROTOCOL_VERSION);
                rc = catalyzer__protoerr(fd, msg);
                break;
            }
            if (lim > 0) limit = (size_t)lim;
            if (rc == 0) inited = 1;
            if (rc == 0 && catalyzer__ready(fd) != 0) rc = 1;
            break;
        }
        case CZ_INVOKE:
            rc = inited ? catalyzer__invoke(fd, h, p, n, cap, saved, limit) : catalyzer__protoerr(fd, "invoke before init");
            break;
        case CZ_FORKED:
            rc = catalyzer__ready(fd) == 0 ? 0 : 1; /* nothing to reseed: see the header comment */
            break;
        default:
            snprintf(msg, sizeof msg, "unexpected message type %d", hdr[3]);
            rc = catalyzer__protoerr(fd, msg);
        }
        free(p);
        if (rc != 0) return rc;
    }
}

#endif /* CATALYZER_H */
