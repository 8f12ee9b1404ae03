/* hello: the native C example function (sdk/c/catalyzer.h).
 * Build: examples/build.sh (gcc -std=c99 -O2 -I sdk/c hello.c -o hello). */
#include "catalyzer.h"

/* Finds the raw JSON string token of top-level "name" in the event. A real
 * function would use a JSON library; the SDK's scanner is enough here. */
static int handler(const char *event, size_t len, char **out, size_t *outlen, char **errmsg) {
    size_t vs = 0, ve = 0;
    const char *name = "\"world\"";
    size_t nlen = strlen(name);
    size_t cap;
    (void)errmsg;
    if (catalyzer__find(event, len, "name", &vs, &ve) == 1 && event[vs] == '"' && ve - vs > 2) {
        name = event + vs;
        nlen = ve - vs;
    }
    printf("hello from c: %.*s\n", (int)nlen, name);
    cap = nlen + 96;
    *out = malloc(cap);
    if (!*out) return 1;
    *outlen = (size_t)snprintf(*out, cap, "{\"hello\":%.*s,\"runtime\":\"native-c\",\"pid\":%ld}",
                               (int)nlen, name, (long)getpid());
    return 0;
}

int main(void) { return catalyzer_serve(handler); }
