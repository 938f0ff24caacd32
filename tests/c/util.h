/*
 * Small helpers for the av1part C harness: check macros that count failures,
 * a deterministic RNG, file and temp-dir helpers, SHA-256 (to give a
 * deliberately corrupt model a matching manifest hash), block builders.
 *
 * Everything is static so the harness is one translation unit plus this
 * header; no external dependency beyond libc and pthreads.
 */
#ifndef AV1PART_TEST_UTIL_H
#define AV1PART_TEST_UTIL_H

#define _GNU_SOURCE 1

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "av1part.h"

/* ---------- failure accounting -------------------------------------- */

/* Failures of the test that is running now (reset per test). */
static int g_test_failures;
static int g_verbose;

static void check_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void check_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    g_test_failures++;
    fprintf(stderr, "    FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* CHECK(cond, fmt, ...): record a failure (and go on) when cond is false. */
#define CHECK(cond, ...)                                     \
    do {                                                     \
        if (!(cond)) check_fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

/* The status check used everywhere: the call returned `want` and, for an
 * error, av1part_last_error() on this thread is a non-empty message. */
#define CHECK_STATUS(got, want, what)                                             \
    do {                                                                          \
        int32_t got_ = (int32_t)(got);                                            \
        int32_t want_ = (int32_t)(want);                                          \
        if (got_ != want_) {                                                      \
            check_fail(__FILE__, __LINE__, "%s: status %d (%s), want %d (%s); last_error: %s", \
                       (what), got_, av1part_status_string(got_), want_,          \
                       av1part_status_string(want_), av1part_last_error());       \
        } else if (want_ != 0) {                                                  \
            const char *m_ = av1part_last_error();                                \
            if (m_ == NULL || m_[0] == '\0')                                      \
                check_fail(__FILE__, __LINE__, "%s: failed with %d but last_error is empty", \
                           (what), got_);                                         \
            else if (g_verbose)                                                   \
                fprintf(stderr, "    [%s] %s\n", (what), m_);                     \
        }                                                                         \
    } while (0)

/* Like CHECK_STATUS, and the message must contain `needle`. */
#define CHECK_STATUS_MSG(got, want, what, needle)                                 \
    do {                                                                          \
        int32_t gs_ = (int32_t)(got);                                             \
        CHECK_STATUS(gs_, (want), (what));                                        \
        if (gs_ == (int32_t)(want) && strstr(av1part_last_error(), (needle)) == NULL) \
            check_fail(__FILE__, __LINE__, "%s: last_error does not mention '%s': %s", \
                       (what), (needle), av1part_last_error());                   \
    } while (0)

/* ---------- deterministic RNG (splitmix64) --------------------------- */

typedef struct { uint64_t s; } Rng;

static uint64_t rng_next(Rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint16_t rng_sample(Rng *r, int bd) {
    return (uint16_t)(rng_next(r) % (1u << bd));
}

/* ---------- owned test blocks ---------------------------------------- */

/* A block with 16-bit storage (any bit depth), contiguous planes. */
typedef struct {
    uint16_t y[256], u[64], v[64], prev_y[256];
    int has_prev;
    int bit_depth;
    int qindex;
    int frame_type;
} TBlock;

/* Smooth-ish random content (a gradient plus noise) so that the cascade
 * sees something less uniform than white noise. */
static void tblock_random(TBlock *b, Rng *r, int bd, int with_prev) {
    int maxv = (1 << bd) - 1;
    int gx = (int)(rng_next(r) % 9) - 4, gy = (int)(rng_next(r) % 9) - 4;
    int base = (int)(rng_next(r) % (uint64_t)(maxv + 1));
    int noise = 1 + (int)(rng_next(r) % (uint64_t)(maxv / 8 + 1));
    for (int i = 0; i < 256; i++) {
        int v = base + gx * (i % 16) * (maxv / 64) + gy * (i / 16) * (maxv / 64)
                + (int)(rng_next(r) % (uint64_t)noise) - noise / 2;
        b->y[i] = (uint16_t)(v < 0 ? 0 : v > maxv ? maxv : v);
        b->prev_y[i] = rng_sample(r, bd);
    }
    for (int i = 0; i < 64; i++) {
        b->u[i] = rng_sample(r, bd);
        b->v[i] = rng_sample(r, bd);
    }
    b->has_prev = with_prev;
    b->bit_depth = bd;
    b->qindex = (int)(rng_next(r) % 256);
    b->frame_type = (int)(rng_next(r) % 3);
}

static Av1partBlock tblock_view(const TBlock *b) {
    Av1partBlock k;
    memset(&k, 0, sizeof k);
    k.y = b->y;
    k.u = b->u;
    k.v = b->v;
    k.prev_y = b->has_prev ? b->prev_y : NULL;
    k.y_stride = 16;
    k.u_stride = 8;
    k.v_stride = 8;
    k.prev_y_stride = 16;
    k.bytes_per_sample = 2;
    k.bit_depth = b->bit_depth;
    k.base_qindex = b->qindex;
    k.frame_type = b->frame_type;
    return k;
}

/* ---------- files and directories ------------------------------------ */

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return NULL; }
    char *buf = malloc((size_t)n + 1);
    if (!buf) { fclose(f); return NULL; }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); fclose(f); return NULL; }
    fclose(f);
    buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
}

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int copy_file(const char *src, const char *dst) {
    size_t n;
    char *b = read_file(src, &n);
    if (!b) return -1;
    int r = write_file(dst, b, n);
    free(b);
    return r;
}

/* Copies every regular file of src into dst (created). */
static int copy_dir(const char *src, const char *dst) {
    if (mkdir(dst, 0700) != 0 && errno != EEXIST) return -1;
    DIR *d = opendir(src);
    if (!d) return -1;
    struct dirent *e;
    int rc = 0;
    char a[4096], b[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int na = snprintf(a, sizeof a, "%s/%s", src, e->d_name);
        int nb = snprintf(b, sizeof b, "%s/%s", dst, e->d_name);
        if (na < 0 || nb < 0 || (size_t)na >= sizeof a || (size_t)nb >= sizeof b) { rc = -1; continue; }
        struct stat st;
        if (stat(a, &st) == 0 && S_ISREG(st.st_mode) && copy_file(a, b) != 0) rc = -1;
    }
    closedir(d);
    return rc;
}

static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            int np = snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            if (np < 0 || (size_t)np >= sizeof p) continue;
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p);
            else unlink(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Replaces the first occurrence of `from` by `to` in file `path`.
 * Returns -1 (and the caller fails the test) when `from` is absent, so a
 * change of the manifest's formatting cannot turn a test into a no-op. */
static int replace_in_file(const char *path, const char *from, const char *to) {
    size_t n;
    char *b = read_file(path, &n);
    if (!b) return -1;
    char *p = strstr(b, from);
    if (!p) { free(b); return -1; }
    size_t lf = strlen(from), lt = strlen(to);
    char *o = malloc(n - lf + lt + 1);
    if (!o) { free(b); return -1; }
    size_t pre = (size_t)(p - b);
    memcpy(o, b, pre);
    memcpy(o + pre, to, lt);
    memcpy(o + pre + lt, p + lf, n - pre - lf);
    int r = write_file(path, o, n - lf + lt);
    free(o);
    free(b);
    return r;
}

/* ---------- SHA-256 (FIPS 180-4), for manifest hashes ----------------- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define SHA_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = SHA_ROR(w[i - 15], 7) ^ SHA_ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = SHA_ROR(w[i - 2], 17) ^ SHA_ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (SHA_ROR(e, 6) ^ SHA_ROR(e, 11) ^ SHA_ROR(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
        uint32_t t2 = (SHA_ROR(a, 2) ^ SHA_ROR(a, 13) ^ SHA_ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

/* Lower-case hex SHA-256 of data into out[65]. */
static void sha256_hex(const void *data, size_t len, char out[65]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const uint8_t *p = data;
    size_t i = 0;
    for (; i + 64 <= len; i += 64) sha256_block(h, p + i);
    uint8_t tail[128];
    size_t r = len - i;
    memcpy(tail, p + i, r);
    tail[r] = 0x80;
    size_t tl = (r + 1 + 8 <= 64) ? 64 : 128;
    memset(tail + r + 1, 0, tl - r - 1);
    uint64_t bits = (uint64_t)len * 8;
    for (int j = 0; j < 8; j++) tail[tl - 1 - j] = (uint8_t)(bits >> (8 * j));
    sha256_block(h, tail);
    if (tl == 128) sha256_block(h, tail + 64);
    for (int j = 0; j < 8; j++) snprintf(out + 8 * j, 9, "%08x", h[j]);
}

static int sha256_file_hex(const char *path, char out[65]) {
    size_t n;
    char *b = read_file(path, &n);
    if (!b) return -1;
    sha256_hex(b, n, out);
    free(b);
    return 0;
}

#endif /* AV1PART_TEST_UTIL_H */
