/* A C function for the runtimes tests: the event picks the behaviour. */
#include "catalyzer.h"

static int ret(char **out, size_t *outlen, const char *s) {
    *out = strdup(s);
    *outlen = strlen(s);
    return 0;
}

static int handler(const char *event, size_t len, char **out, size_t *outlen, char **errmsg) {
    if (strstr(event, "\"big\"")) {
        size_t i;
        for (i = 0; i < (1u << 20); i++) putchar('x');
        if (write(2, "err", 3) != 3) return 1;
        return ret(out, outlen, "1");
    }
    if (strstr(event, "\"fail\"")) {
        printf("failing\n");
        *errmsg = strdup("it \"broke\"");
        return 1;
    }
    if (strstr(event, "\"notjson\"")) return ret(out, outlen, "{\"a\":1");
    if (strstr(event, "\"null\"")) return 0;
    if (strstr(event, "\"remaining\"")) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", catalyzer_remaining_ms());
        return ret(out, outlen, buf);
    }
    *out = malloc(len + 1);
    memcpy(*out, event, len + 1);
    *outlen = len;
    return 0;
}

int main(void) { return catalyzer_serve(handler); }
