/*
 * reseed.c: the Node agent's OpenSSL reseed (reseed_amd64.node, a Node-API
 * addon the agent loads with process.dlopen on its first forked message).
 *
 * OpenSSL 3 notices a fork only through getpid(): each DRBG remembers the
 * pid it was seeded under and reseeds when getpid() changes. A clone keeps
 * its template's pid (both are PID 1 of their own PID namespace), and no
 * pthread_atfork handler runs (the clone is made by injected syscalls), so
 * every clone would draw the template's next bytes: crypto.randomBytes,
 * getRandomValues, webcrypto, key generation, TLS handshakes. JavaScript
 * cannot reach that state, so this addon reseeds OpenSSL itself:
 *
 *   init:     RAND_seed = dlsym(RTLD_DEFAULT, "RAND_seed"), from the
 *             libcrypto already in the process (node's own exported copy
 *             when OpenSSL is linked statically, libcrypto.so.3 when it is
 *             linked dynamically); a missing symbol fails the load.
 *             Exports { reseed, openssl }, openssl naming the file that
 *             RAND_seed was found in (dladdr).
 *   reseed(): 48 bytes from getrandom(2), then RAND_seed(buf, 48). In
 *             OpenSSL 3 that reseeds the primary DRBG (fresh entropy from
 *             its seed source, buf as additional input), which bumps its
 *             reseed counter; every per-thread public and private DRBG
 *             compares that counter on its next generate and reseeds from
 *             the primary. Returns the number of bytes seeded; throws on
 *             failure.
 *
 * The few Node-API declarations used are written out here (Node-API is a
 * stable C ABI), so the build needs no Node headers; build.sh builds it
 * byte for byte reproducibly and TestReseedAddonRebuild checks that the
 * committed binary is this source.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status; /* napi_ok is 0 */
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);
#define NAPI_AUTO_LENGTH ((size_t)-1)

extern napi_status napi_create_function(napi_env env, const char *utf8name, size_t length,
                                        napi_callback cb, void *data, napi_value *result);
extern napi_status napi_set_named_property(napi_env env, napi_value object, const char *utf8name,
                                           napi_value value);
extern napi_status napi_create_uint32(napi_env env, uint32_t value, napi_value *result);
extern napi_status napi_throw_error(napi_env env, const char *code, const char *msg);
extern napi_status napi_create_string_utf8(napi_env env, const char *str, size_t length, napi_value *result);

#define SEED_BYTES 48 /* the 256-bit DRBG's seed length (entropy + nonce) */

static void (*rand_seed)(const void *buf, int num);

static napi_value reseed(napi_env env, napi_callback_info info) {
	(void)info;
	unsigned char buf[SEED_BYTES];
	size_t got = 0;
	while (got < sizeof buf) {
		ssize_t n = getrandom(buf + got, sizeof buf - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			napi_throw_error(env, "ERR_CATALYZER_RESEED", "reseed: getrandom failed");
			return NULL;
		}
		got += (size_t)n;
	}
	rand_seed(buf, sizeof buf);
	explicit_bzero(buf, sizeof buf);
	napi_value r;
	if (napi_create_uint32(env, SEED_BYTES, &r) != 0)
		return NULL;
	return r;
}

napi_value napi_register_module_v1(napi_env env, napi_value exports) {
	rand_seed = (void (*)(const void *, int))dlsym(RTLD_DEFAULT, "RAND_seed");
	if (rand_seed == NULL) {
		napi_throw_error(env, "ERR_CATALYZER_RESEED",
		                 "reseed: OpenSSL's RAND_seed not found in this node process (node built without OpenSSL, or not exporting its symbols)");
		return NULL;
	}
	Dl_info where;
	const char *file = dladdr((void *)rand_seed, &where) && where.dli_fname ? where.dli_fname : "";
	napi_value fn, name;
	if (napi_create_function(env, "reseed", NAPI_AUTO_LENGTH, reseed, NULL, &fn) != 0 ||
	    napi_set_named_property(env, exports, "reseed", fn) != 0 ||
	    napi_create_string_utf8(env, file, NAPI_AUTO_LENGTH, &name) != 0 ||
	    napi_set_named_property(env, exports, "openssl", name) != 0)
		return NULL;
	return exports;
}
