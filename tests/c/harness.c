/*
 * C harness for libav1part: every function of include/av1part.h, every
 * documented error path, frame-vs-block agreement, golden parity through the
 * C ABI, and a multi-threaded stress test whose results must equal the
 * single-threaded ones bit for bit.
 *
 * Usage: harness [--verbose] [--ort-missing]
 *   (default)       the main suite; ONNX Runtime is loaded once in this process
 *   --ort-missing   a fresh process in which ONNX Runtime is never loaded
 *                   successfully before the error cases run (one ORT
 *                   environment per process, so these need their own process)
 *
 * Environment:
 *   AV1PART_TEST_ROOT       repository root (default: baked in by the Makefile)
 *   AV1PART_STRESS_THREADS  stress threads (default 8)
 *   AV1PART_STRESS_CALLS    calls per stress thread (default 2000; the valgrind
 *                           run uses fewer)
 *
 * Prints one line per test and a closing "N passed, N failed"; exits 1 when
 * any test failed.
 */
#include "util.h"
#include "json.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#ifndef AV1PART_ROOT
#define AV1PART_ROOT "."
#endif

static char g_root[2048];
static char g_tiny[2300];
static char g_ort[2300];
static char g_tmp[256];
static Av1partContext *g_ctx; /* CPU context on test-tiny, exact mode */

static const char *PARTITION_NAMES[10] = {"NONE", "HORZ", "VERT", "SPLIT", "HORZ_A",
                                         "HORZ_B", "VERT_A", "VERT_B", "HORZ_4", "VERT_4"};

/* ---------- helpers -------------------------------------------------- */

static Av1partConfig tiny_config(void) {
    Av1partConfig c;
    av1part_config_default(&c);
    c.model_dir = g_tiny;
    c.execution_provider = AV1PART_PROVIDER_CPU;
    return c;
}

static void fill_garbage(Av1partPrediction *p, size_t n) { memset(p, 0xAB, n * sizeof *p); }

/* The state a failed call must leave: partition -1, everything else zero. */
static int is_cleared(const Av1partPrediction *p) {
    if (p->partition != -1 || p->flags != 0 || p->stages_run != 0 || p->num_stages != 0) return 0;
    for (int i = 0; i < AV1PART_NUM_PARTITIONS; i++)
        if (p->probabilities[i] != 0.0f) return 0;
    for (int s = 0; s < AV1PART_MAX_STAGES; s++)
        for (int k = 0; k < AV1PART_MAX_CLASSES; k++)
            if (p->stage_probabilities[s][k] != 0.0f) return 0;
    return 1;
}

/* Invariants of any successful prediction. */
static void check_prediction(const Av1partPrediction *p, const char *what) {
    size_t ns = av1part_context_stage_count(g_ctx);
    CHECK(p->partition >= 0 && p->partition <= 9, "%s: partition %d", what, p->partition);
    CHECK(p->num_stages == ns, "%s: num_stages %u, want %zu", what, p->num_stages, ns);
    double sum = 0;
    int best = 0;
    for (int i = 0; i < 10; i++) {
        CHECK(p->probabilities[i] >= 0.0f && isfinite(p->probabilities[i]), "%s: p[%d]=%g", what, i,
              (double)p->probabilities[i]);
        sum += p->probabilities[i];
        if (p->probabilities[i] > p->probabilities[best]) best = i;
    }
    CHECK(fabs(sum - 1.0) < 1e-5, "%s: probabilities sum to %.8f", what, sum);
    /* The partition is the argmax of the grid-rounded cascade: the argmax of
     * the returned (unrounded) probabilities, or within 3/grid of it. */
    int grid = av1part_context_decision_grid(g_ctx);
    double gap = p->partition >= 0 && p->partition <= 9
                     ? (double)p->probabilities[best] - (double)p->probabilities[p->partition]
                     : 1.0;
    CHECK(p->partition == best || (grid > 0 && gap <= 3.0 / grid), "%s: partition %d is not the argmax %d (gap %g)",
          what, p->partition, best, gap);
    if (g_verbose && p->partition != best) fprintf(stderr, "    %s: grid decision %d vs argmax %d, gap %.2e\n", what, p->partition, best, gap);
    CHECK(p->stages_run & 1u, "%s: the root stage did not run (stages_run %#x)", what, p->stages_run);
    for (size_t s = 0; s < ns && s < AV1PART_MAX_STAGES; s++) {
        double ss = 0;
        for (int k = 0; k < AV1PART_MAX_CLASSES; k++) ss += p->stage_probabilities[s][k];
        if (p->stages_run & (1u << s))
            CHECK(fabs(ss - 1.0) < 1e-5, "%s: stage %zu ran but sums to %.7f", what, s, ss);
        else
            CHECK(ss == 0.0, "%s: stage %zu did not run but has mass %.7f", what, s, ss);
    }
}

/* max |a-b| over the ten probabilities */
static double prob_diff(const Av1partPrediction *a, const Av1partPrediction *b) {
    double m = 0;
    for (int i = 0; i < 10; i++) {
        double d = fabs((double)a->probabilities[i] - (double)b->probabilities[i]);
        if (d > m) m = d;
    }
    return m;
}

/* Partitions agree, or differ only on a near-tie (top two within tol). */
static int same_partition(const Av1partPrediction *a, const Av1partPrediction *b, double tol) {
    if (a->partition == b->partition) return 1;
    return fabs((double)a->probabilities[a->partition] - (double)a->probabilities[b->partition]) <= tol;
}

/* Makes a fresh copy of test-tiny in g_tmp/<name>; returns its path. */
static const char *bundle_copy(const char *name, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "%s/%s", g_tmp, name);
    if (n < 0 || (size_t)n >= cap || copy_dir(g_tiny, buf) != 0) {
        check_fail(__FILE__, __LINE__, "cannot copy %s to %s", g_tiny, buf);
        return NULL;
    }
    return buf;
}

static char *path_in(char *buf, size_t cap, const char *dir, const char *file) {
    int n = snprintf(buf, cap, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= cap) check_fail(__FILE__, __LINE__, "path too long: %s/%s", dir, file);
    return buf;
}

/* Tries to load a bundle; expects `want`, a message mentioning `needle`
 * (may be NULL), and *out NULL afterwards. */
static void expect_load(const char *dir, int32_t want, const char *needle, const char *what) {
    Av1partConfig c = tiny_config();
    c.model_dir = dir;
    Av1partContext *ctx = (Av1partContext *)(uintptr_t)0x1; /* must be NULLed on entry */
    Av1partStatus st = av1part_context_new(&c, &ctx);
    if (needle) CHECK_STATUS_MSG(st, want, what, needle);
    else CHECK_STATUS(st, want, what);
    if (st == AV1PART_STATUS_OK) {
        av1part_context_free(&ctx);
    } else {
        CHECK(ctx == NULL, "%s: *out not NULL after failure", what);
    }
}

/* ---------- tests: library-level functions --------------------------- */

static void test_version(void) {
    const char *v = av1part_version();
    CHECK(v != NULL && v[0] != '\0', "av1part_version() empty");
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", AV1PART_VERSION_MAJOR, AV1PART_VERSION_MINOR,
             AV1PART_VERSION_PATCH);
    CHECK(v && strncmp(v, want, strlen(want)) == 0, "version '%s' does not start with the header's %s",
          v ? v : "(null)", want);
    CHECK(av1part_abi_version() == AV1PART_ABI_VERSION, "abi %u != header %d", av1part_abi_version(),
          AV1PART_ABI_VERSION);
    if (g_verbose) fprintf(stderr, "    version %s, abi %u\n", v, av1part_abi_version());
}

static void test_status_strings(void) {
    const int32_t codes[] = {AV1PART_STATUS_OK, AV1PART_STATUS_INVALID_ARGUMENT, AV1PART_STATUS_ORT_LOAD,
                             AV1PART_STATUS_ORT_CONFLICT, AV1PART_STATUS_MODEL_LOAD,
                             AV1PART_STATUS_PROVIDER_UNAVAILABLE, AV1PART_STATUS_INFERENCE,
                             AV1PART_STATUS_PANIC, AV1PART_STATUS_INTERNAL};
    const int n = (int)(sizeof codes / sizeof codes[0]);
    /* explicit numbering is ABI: these values may never change */
    CHECK(AV1PART_STATUS_OK == 0 && AV1PART_STATUS_INVALID_ARGUMENT == -1 && AV1PART_STATUS_ORT_LOAD == -2 &&
              AV1PART_STATUS_ORT_CONFLICT == -3 && AV1PART_STATUS_MODEL_LOAD == -4 &&
              AV1PART_STATUS_PROVIDER_UNAVAILABLE == -5 && AV1PART_STATUS_INFERENCE == -6 &&
              AV1PART_STATUS_PANIC == -7 && AV1PART_STATUS_INTERNAL == -8,
          "status numbering changed");
    const char *unknown = av1part_status_string(12345);
    CHECK(unknown && !strcmp(unknown, "unknown status"), "status 12345 -> '%s'", unknown ? unknown : "(null)");
    CHECK(av1part_status_string(-9999) && !strcmp(av1part_status_string(-9999), "unknown status"),
          "status -9999 not unknown");
    CHECK(av1part_status_string(INT32_MIN) != NULL, "INT32_MIN -> NULL");
    for (int i = 0; i < n; i++) {
        const char *s = av1part_status_string(codes[i]);
        CHECK(s && s[0] && strcmp(s, "unknown status"), "status %d -> '%s'", codes[i], s ? s : "(null)");
        for (int j = 0; j < i; j++)
            CHECK(!s || strcmp(s, av1part_status_string(codes[j])), "statuses %d and %d share '%s'", codes[i],
                  codes[j], s);
    }
}

static void test_partition_names(void) {
    for (int i = 0; i < 10; i++) {
        const char *s = av1part_partition_name(i);
        CHECK(s && !strcmp(s, PARTITION_NAMES[i]), "partition %d -> '%s', want %s", i, s ? s : "(null)",
              PARTITION_NAMES[i]);
    }
    CHECK(av1part_partition_name(-1) == NULL, "partition -1 not NULL");
    CHECK(av1part_partition_name(10) == NULL, "partition 10 not NULL");
    CHECK(av1part_partition_name(INT32_MAX) == NULL, "partition INT32_MAX not NULL");
}

static void test_config_default(void) {
    Av1partConfig c;
    memset(&c, 0x5A, sizeof c);
    av1part_config_default(&c);
    CHECK(c.model_dir == NULL, "model_dir default not NULL");
    CHECK(c.ort_library_path == NULL, "ort_library_path default not NULL");
    CHECK(c.execution_provider == AV1PART_PROVIDER_AUTO, "provider default %d", c.execution_provider);
    CHECK(c.require_provider == 0, "require_provider default %d", c.require_provider);
    CHECK(c.cuda_device_id == 0, "cuda_device_id default %d", c.cuda_device_id);
    CHECK(c.intra_op_threads == 0 || c.intra_op_threads == 1, "intra_op_threads default %d", c.intra_op_threads);
    CHECK(c.max_sessions == 0, "max_sessions default %d", c.max_sessions);
    CHECK(c.frame_threads == 0, "frame_threads default %d", c.frame_threads);
    CHECK(c.skip_below < 0, "skip_below default %g (want negative: keep the bundle's)", c.skip_below);
    CHECK(c.decision_grid == 0, "decision_grid default %d (0: AV1PART_DEFAULT_DECISION_GRID)", c.decision_grid);
    CHECK(c.decision_policy == AV1PART_POLICY_FLAT, "decision_policy default %d", c.decision_policy);
    CHECK(c.cpu_used == -1, "cpu_used default %d (want -1: not stated)", c.cpu_used);
    CHECK(av1part_context_cpu_used(NULL) == -1, "cpu_used of a NULL context");
    int nz = 0;
    for (size_t i = 0; i < sizeof c.reserved; i++) nz |= c.reserved[i];
    CHECK(nz == 0, "reserved bytes not zeroed");
    av1part_config_default(NULL); /* documented: ignored */
}

static void test_frame_block_count(void) {
    struct { int32_t w, h; size_t want; } t[] = {
        {176, 144, 11 * 9}, {1280, 720, 80 * 45}, {1920, 1080, 120 * 68}, {16, 16, 1},
        {2, 2, 1},          {18, 18, 4},          {50, 34, 4 * 3},        {177, 144, 0},
        {176, 145, 0},      {0, 144, 0},          {176, 0, 0},            {-16, 16, 0},
        {16, -16, 0},       {INT32_MIN, 16, 0},   {1, 1, 0}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        size_t got = av1part_frame_block_count(t[i].w, t[i].h);
        CHECK(got == t[i].want, "frame_block_count(%d, %d) = %zu, want %zu", t[i].w, t[i].h, got, t[i].want);
    }
    /* large but valid: no overflow in the product */
    size_t side = ((size_t)INT32_MAX - 1 + 15) / 16;
    CHECK(av1part_frame_block_count(INT32_MAX - 1, INT32_MAX - 1) == side * side, "huge frame block count");
}

/* Copies the thread's last error out (the string dies with the thread). */
static void *last_error_thread(void *arg) {
    char *out = arg;
    const char *e = av1part_last_error();
    snprintf(out, 256, "%s", e ? e : "(null)");
    return NULL;
}

static void test_last_error_per_thread(void) {
    const char *e = av1part_last_error();
    CHECK(e != NULL, "last_error NULL");
    /* fail on this thread ... */
    Av1partPrediction p;
    CHECK_STATUS(av1part_predict_block(NULL, NULL, &p), AV1PART_STATUS_INVALID_ARGUMENT, "NULL ctx");
    /* ... a thread that never failed sees "" */
    char other[256] = "unset";
    pthread_t th;
    CHECK(pthread_create(&th, NULL, last_error_thread, other) == 0, "pthread_create");
    pthread_join(th, NULL);
    CHECK(other[0] == '\0', "a fresh thread's last_error is '%s'", other);
    /* and success does not clear it here (documented) */
    CHECK(av1part_last_error()[0] != '\0', "last_error cleared by a later call");
}

/* ---------- tests: context creation ---------------------------------- */

static void test_context_new_bad_args(void) {
    Av1partConfig c = tiny_config();
    Av1partContext *ctx = (Av1partContext *)(uintptr_t)0x1;
    CHECK_STATUS(av1part_context_new(NULL, &ctx), AV1PART_STATUS_INVALID_ARGUMENT, "NULL cfg");
    CHECK(ctx == NULL, "*out not NULLed for NULL cfg");
    CHECK_STATUS(av1part_context_new(&c, NULL), AV1PART_STATUS_INVALID_ARGUMENT, "NULL out");

    Av1partConfig b;

    b = c; b.model_dir = NULL;
    CHECK_STATUS(av1part_context_new(&b, &ctx), AV1PART_STATUS_INVALID_ARGUMENT, "model_dir NULL");
    b = c; b.execution_provider = 7;
    CHECK_STATUS(av1part_context_new(&b, &ctx), AV1PART_STATUS_INVALID_ARGUMENT, "provider 7");
    b = c; b.execution_provider = -1;
    CHECK_STATUS(av1part_context_new(&b, &ctx), AV1PART_STATUS_INVALID_ARGUMENT, "provider -1");
    b = c; b.intra_op_threads = -1;
    CHECK_STATUS(av1part_context_new(&b, &ctx), AV1PART_STATUS_INVALID_ARGUMENT, "intra_op_threads -1");
    b = c; b.max_sessions = -3;
    CHECK_STATUS(av1part_context_new(&b, &ctx), AV1PART_STATUS_INVALID_ARGUMENT, "max_sessions -3");
    b = c; b.frame_threads = -2;
    CHECK_STATUS(av1part_context_new(&b, &ctx), AV1PART_STATUS_INVALID_ARGUMENT, "frame_threads -2");
    b = c; b.skip_below = 1.5;
    CHECK_STATUS(av1part_context_new(&b, &ctx), AV1PART_STATUS_INVALID_ARGUMENT, "skip_below 1.5");
    b = c; b.skip_below = NAN;
    CHECK_STATUS(av1part_context_new(&b, &ctx), AV1PART_STATUS_INVALID_ARGUMENT, "skip_below NaN");
    CHECK(ctx == NULL, "*out not NULL after failures");

    /* empty or non-existent directory, a file instead of a directory */
    b = c; b.model_dir = "";
    Av1partStatus st = av1part_context_new(&b, &ctx);
    CHECK(st == AV1PART_STATUS_INVALID_ARGUMENT || st == AV1PART_STATUS_MODEL_LOAD, "model_dir \"\": %d", st);
    CHECK(av1part_last_error()[0] != '\0', "model_dir \"\": empty message");
    char p[4096];
    expect_load(path_in(p, sizeof p, g_tmp, "no-such-bundle"), AV1PART_STATUS_MODEL_LOAD, "no-such-bundle",
                "missing model_dir");
    char tf[4096];
    path_in(tf, sizeof tf, g_tmp, "a-file");
    write_file(tf, "x", 1);
    expect_load(tf, AV1PART_STATUS_MODEL_LOAD, "a-file", "model_dir is a file");
}

/* Broken copies of test-tiny: each must be refused with MODEL_LOAD and a
 * message naming the file (or field) at fault. */
/* In bundle `d`, overwrites `target` with a copy of `source` and puts the
 * copy's SHA-256 into manifest.json, so the hash check passes and only the
 * plugin's check of the ONNX inputs/outputs can refuse it. */
/* Replaces bundle d's file `target` by the file at path `src` and puts the
 * new SHA-256 in the manifest, so only the checks after hashing can object. */
static void install_model_keep_hash(const char *d, const char *target, const char *src) {
    char t[4096], m[4096], old_sha[65], new_sha[65];
    path_in(t, sizeof t, d, target);
    CHECK(sha256_file_hex(t, old_sha) == 0, "hash %s", target);
    CHECK(copy_file(src, t) == 0, "copy %s over %s", src, target);
    CHECK(sha256_file_hex(t, new_sha) == 0, "hash the new %s", target);
    CHECK(replace_in_file(path_in(m, sizeof m, d, "manifest.json"), old_sha, new_sha) == 0,
          "edit the sha of %s", target);
}

/* install_model_keep_hash with another file of the same bundle. */
static void swap_model_keep_hash(const char *d, const char *target, const char *source) {
    char src[4096];
    install_model_keep_hash(d, target, path_in(src, sizeof src, d, source));
}

/* Flips one bit of bundle d's `file` (in the middle, or `from_end` bytes
 * before its end) and expects a model-load error naming the file. */
static void flip_byte_expect(const char *d, const char *file, size_t from_end, const char *what) {
    char f[4096];
    size_t n;
    char *b = read_file(path_in(f, sizeof f, d, file), &n);
    CHECK(b != NULL && n > 100, "read %s", file);
    if (!b) return;
    b[from_end ? n - from_end : n / 2] ^= 0x10;
    write_file(f, b, n);
    free(b);
    expect_load(d, AV1PART_STATUS_MODEL_LOAD, file, what);
}

static void test_broken_bundles(void) {
    char d[4096], f[4096], sha[65], sha2[65];

    /* manifest missing */
    if (bundle_copy("no-manifest", d, sizeof d)) {
        unlink(path_in(f, sizeof f, d, "manifest.json"));
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "manifest.json", "manifest missing");
    }
    /* manifest not JSON / empty / truncated */
    if (bundle_copy("manifest-garbage", d, sizeof d)) {
        write_file(path_in(f, sizeof f, d, "manifest.json"), "{\"schema\": ", 11);
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "manifest.json", "manifest truncated");
        write_file(f, "", 0);
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "manifest.json", "manifest empty");
        write_file(f, "\x89PNG\r\n\x1a\n\0\0", 10);
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "manifest.json", "manifest binary");
        write_file(f, "[1,2,3]", 7);
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "manifest.json", "manifest is an array");
    }
    /* unknown schema_version */
    if (bundle_copy("schema99", d, sizeof d)) {
        CHECK(replace_in_file(path_in(f, sizeof f, d, "manifest.json"), "\"schema_version\": 1",
                              "\"schema_version\": 99") == 0, "edit schema_version");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "schema_version", "schema_version 99");
    }
    /* a stage file missing */
    if (bundle_copy("no-stage2", d, sizeof d)) {
        unlink(path_in(f, sizeof f, d, "stage2.onnx"));
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "stage2.onnx", "stage2.onnx missing");
    }
    /* the external data file missing, then truncated (hash mismatch) */
    if (bundle_copy("no-data", d, sizeof d)) {
        path_in(f, sizeof f, d, "backbone.data");
        size_t n;
        char *data = read_file(f, &n);
        unlink(f);
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "backbone.data", "backbone.data missing");
        if (data) {
            write_file(f, data, n / 2);
            expect_load(d, AV1PART_STATUS_MODEL_LOAD, "backbone.data", "backbone.data truncated");
            free(data);
        }
    }
    /* one flipped byte in a stage file: hash mismatch */
    if (bundle_copy("flipped", d, sizeof d)) flip_byte_expect(d, "stage3_rect.onnx", 0, "stage file hash mismatch");
    /* garbage ONNX whose hash the manifest matches: ORT must refuse it */
    if (bundle_copy("garbage-onnx", d, sizeof d)) {
        path_in(f, sizeof f, d, "stage1.onnx");
        CHECK(sha256_file_hex(f, sha) == 0, "hash stage1");
        char junk[4096];
        Rng r = {7};
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)rng_next(&r);
        write_file(f, junk, sizeof junk);
        sha256_hex(junk, sizeof junk, sha2);
        CHECK(replace_in_file(path_in(f, sizeof f, d, "manifest.json"), sha, sha2) == 0, "edit stage1 sha");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "stage1.onnx", "garbage onnx with matching hash");
    }
    /* an empty ONNX file whose hash matches */
    if (bundle_copy("empty-onnx", d, sizeof d)) {
        path_in(f, sizeof f, d, "stage2.onnx");
        CHECK(sha256_file_hex(f, sha) == 0, "hash stage2");
        write_file(f, "", 0);
        sha256_hex("", 0, sha2);
        CHECK(replace_in_file(path_in(f, sizeof f, d, "manifest.json"), sha, sha2) == 0, "edit stage2 sha");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "stage2.onnx", "empty onnx with matching hash");
    }
    /* a valid ONNX file of the wrong shape: stage1 (2 classes) replaced by
     * stage3_rect (4 classes), hash updated, so only the shape check catches it */
    if (bundle_copy("wrong-shape", d, sizeof d)) {
        swap_model_keep_hash(d, "stage1.onnx", "stage3_rect.onnx");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "stage1.onnx", "stage of the wrong output shape");
    }
    /* the trunk replaced by a stage model: input names/shapes differ */
    if (bundle_copy("wrong-trunk", d, sizeof d)) {
        swap_model_keep_hash(d, "trunk.onnx", "stage2.onnx");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "trunk.onnx", "trunk with the wrong inputs");
    }
    /* manifest not matching its files: the wrong hash for a present file */
    if (bundle_copy("wrong-hash", d, sizeof d)) {
        CHECK(sha256_file_hex(path_in(f, sizeof f, d, "stage3_ab.onnx"), sha) == 0, "hash stage3_ab");
        CHECK(replace_in_file(path_in(f, sizeof f, d, "manifest.json"), sha,
                              "0000000000000000000000000000000000000000000000000000000000000000") == 0,
              "edit stage3_ab sha");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "stage3_ab.onnx", "manifest hash mismatch");
    }
    /* manifest names a file that is not there */
    if (bundle_copy("renamed", d, sizeof d)) {
        CHECK(replace_in_file(path_in(f, sizeof f, d, "manifest.json"), "\"stage3_ab.onnx\"",
                              "\"stage3_xx.onnx\"") == 0, "rename stage3_ab in manifest");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "stage3_xx.onnx", "manifest names a missing file");
    }
    /* classes that do not form a tree / unknown partition name / unknown channel */
    if (bundle_copy("bad-next", d, sizeof d)) {
        CHECK(replace_in_file(path_in(f, sizeof f, d, "manifest.json"), "\"next\": \"stage3_ab\"",
                              "\"next\": \"stage9\"") == 0, "edit next");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "stage9", "class leads to an unknown stage");
    }
    if (bundle_copy("bad-partition", d, sizeof d)) {
        CHECK(replace_in_file(path_in(f, sizeof f, d, "manifest.json"), "\"partition\": \"VERT_4\"",
                              "\"partition\": \"VERT_8\"") == 0, "edit partition");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "VERT_8", "unknown partition name");
    }
    if (bundle_copy("dup-partition", d, sizeof d)) {
        /* VERT_4 leaf renamed to HORZ_4: HORZ_4 twice, VERT_4 never */
        CHECK(replace_in_file(path_in(f, sizeof f, d, "manifest.json"), "\"partition\": \"VERT_4\"",
                              "\"partition\": \"HORZ_4\"") == 0, "edit partition");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, NULL, "a partition appears twice");
    }
    if (bundle_copy("bad-side", d, sizeof d)) {
        CHECK(replace_in_file(path_in(f, sizeof f, d, "manifest.json"), "\"has_prev\"", "\"has_next\"") == 0,
              "edit side feature");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "has_next", "unknown side feature");
    }
    if (bundle_copy("bad-root", d, sizeof d)) {
        CHECK(replace_in_file(path_in(f, sizeof f, d, "manifest.json"), "\"root\": \"stage1\"",
                              "\"root\": \"stage7\"") == 0, "edit root");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "stage7", "unknown root stage");
    }
    /* data_files emptied: the ONNX files still reference backbone.data,
     * which would then escape the hash check */
    if (bundle_copy("no-data-files", d, sizeof d)) {
        path_in(f, sizeof f, d, "manifest.json");
        size_t n;
        char *m = read_file(f, &n);
        char *a = m ? strstr(m, "\"data_files\"") : NULL;
        char *open_br = a ? strchr(a, '[') : NULL;
        char *close_br = open_br ? strchr(open_br, ']') : NULL;
        CHECK(close_br != NULL, "find data_files in the manifest");
        if (close_br) {
            memmove(open_br + 1, close_br, strlen(close_br) + 1);
            write_file(f, m, strlen(m));
            expect_load(d, AV1PART_STATUS_MODEL_LOAD, "backbone.data", "data_files emptied");
            expect_load(d, AV1PART_STATUS_MODEL_LOAD, "does not list", "data_files emptied (message)");
        }
        free(m);
    }
    /* every weight is hashed: one changed byte of backbone.data */
    if (bundle_copy("weights-edited", d, sizeof d)) flip_byte_expect(d, "backbone.data", 5, "one weight changed");
    /* a stage file symlinked to a file outside the bundle directory */
    if (bundle_copy("link-outside", d, sizeof d)) {
        char outside[4096];
        path_in(outside, sizeof outside, g_tmp, "outside-stage2.onnx");
        path_in(f, sizeof f, d, "stage2.onnx");
        CHECK(rename(f, outside) == 0 && symlink(outside, f) == 0, "symlink stage2.onnx outside");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "outside the bundle directory", "stage linked outside");
    }
    /* ... to /dev/zero: refused at once instead of hashing forever */
    if (bundle_copy("link-dev-zero", d, sizeof d)) {
        path_in(f, sizeof f, d, "stage3_ab.onnx");
        CHECK(unlink(f) == 0 && symlink("/dev/zero", f) == 0, "symlink stage3_ab.onnx to /dev/zero");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "stage3_ab.onnx", "stage linked to /dev/zero");
    }
    /* the manifest a FIFO: refused without blocking in open() */
    if (bundle_copy("manifest-fifo", d, sizeof d)) {
        path_in(f, sizeof f, d, "manifest.json");
        CHECK(unlink(f) == 0 && mkfifo(f, 0600) == 0, "make manifest.json a FIFO");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "FIFO", "manifest is a FIFO");
    }
    /* a data file that is a directory */
    if (bundle_copy("data-dir", d, sizeof d)) {
        path_in(f, sizeof f, d, "backbone.data");
        CHECK(unlink(f) == 0 && mkdir(f, 0700) == 0, "make backbone.data a directory");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "backbone.data", "data file is a directory");
    }
    /* a manifest over the 1 MiB limit (valid JSON: trailing spaces) */
    if (bundle_copy("manifest-huge", d, sizeof d)) {
        path_in(f, sizeof f, d, "manifest.json");
        size_t n;
        char *m = read_file(f, &n);
        size_t big = n + (1u << 20);
        char *m2 = m ? malloc(big) : NULL;
        CHECK(m2 != NULL, "alloc");
        if (m2) {
            memcpy(m2, m, n);
            memset(m2 + n, ' ', big - n);
            write_file(f, m2, big);
            expect_load(d, AV1PART_STATUS_MODEL_LOAD, "over the limit", "manifest over 1 MiB");
        }
        free(m2);
        free(m);
    }
    /* sanity: an unmodified copy loads (so the failures above are the edits) */
    if (bundle_copy("pristine", d, sizeof d))
        expect_load(d, AV1PART_STATUS_OK, NULL, "pristine copy");
}

static void test_context_accessors(void) {
    Av1partContext *c = g_ctx;
    CHECK(av1part_context_execution_provider(c) == AV1PART_PROVIDER_CPU, "provider %d",
          av1part_context_execution_provider(c));
    CHECK(av1part_context_execution_provider(NULL) == AV1PART_PROVIDER_AUTO, "NULL ctx provider");
    const char *note = av1part_context_provider_note(c);
    CHECK(note != NULL, "provider note NULL");
    CHECK(av1part_context_provider_note(NULL) && !av1part_context_provider_note(NULL)[0], "NULL ctx note");
    const char *name = av1part_context_bundle_name(c);
    CHECK(name && !strcmp(name, "test-tiny"), "bundle name '%s'", name ? name : "(null)");
    CHECK(av1part_context_bundle_name(NULL) == NULL, "NULL ctx bundle name");
    CHECK(av1part_context_skip_below(c) == 0.0, "skip_below %g (test-tiny: 0)", av1part_context_skip_below(c));
    CHECK(av1part_context_skip_below(NULL) == -1.0, "NULL ctx skip_below");
    CHECK(av1part_context_uses_prev_frame(c) == 1, "test-tiny uses prev_y");
    CHECK(av1part_context_uses_prev_frame(NULL) == 0, "NULL ctx uses_prev");
    CHECK(av1part_context_decision_grid(c) == AV1PART_DEFAULT_DECISION_GRID, "decision grid %d",
          av1part_context_decision_grid(c));
    CHECK(av1part_context_decision_grid(NULL) == -1, "NULL ctx decision grid");

    size_t ns = av1part_context_stage_count(c);
    CHECK(ns == 4, "stage count %zu (test-tiny has 4)", ns);
    CHECK(av1part_context_stage_count(NULL) == 0, "NULL ctx stage count");
    const char *want_names[4] = {"stage1", "stage2", "stage3_rect", "stage3_ab"};
    int leaf_seen[10] = {0};
    for (size_t s = 0; s < ns; s++) {
        const char *sn = av1part_context_stage_name(c, s);
        CHECK(sn && s < 4 && !strcmp(sn, want_names[s]), "stage %zu name '%s'", s, sn ? sn : "(null)");
        size_t nc = av1part_context_stage_class_count(c, s);
        CHECK(nc >= 2 && nc <= AV1PART_MAX_CLASSES, "stage %zu classes %zu", s, nc);
        for (size_t k = 0; k < nc; k++) {
            const char *cn = av1part_context_stage_class_name(c, s, k);
            CHECK(cn && cn[0], "stage %zu class %zu name", s, k);
            int32_t t = av1part_context_stage_class_target(c, s, k);
            if (t >= 0) {
                CHECK(t <= 9, "leaf target %d", t);
                if (t <= 9) leaf_seen[t]++;
                /* a leaf class of test-tiny is named after its partition */
                CHECK(cn && t <= 9 && !strcmp(cn, PARTITION_NAMES[t]), "leaf %s -> %d", cn ? cn : "?", t);
            } else {
                int32_t next = -1 - t;
                CHECK(next > (int32_t)s && (size_t)next < ns, "stage %zu class %zu leads to stage %d", s, k, next);
            }
        }
        CHECK(av1part_context_stage_class_name(c, s, nc) == NULL, "class name past the end");
        CHECK(av1part_context_stage_class_target(c, s, nc) == INT32_MIN, "class target past the end");
    }
    for (int p = 0; p < 10; p++) CHECK(leaf_seen[p] == 1, "partition %d is a leaf %d times", p, leaf_seen[p]);
    CHECK(av1part_context_stage_name(c, ns) == NULL, "stage name past the end");
    CHECK(av1part_context_stage_name(c, SIZE_MAX) == NULL, "stage name SIZE_MAX");
    CHECK(av1part_context_stage_class_count(c, ns) == 0, "class count past the end");
    CHECK(av1part_context_stage_name(NULL, 0) == NULL, "NULL ctx stage name");
    CHECK(av1part_context_stage_class_count(NULL, 0) == 0, "NULL ctx class count");
    CHECK(av1part_context_stage_class_name(NULL, 0, 0) == NULL, "NULL ctx class name");
    CHECK(av1part_context_stage_class_target(NULL, 0, 0) == INT32_MIN, "NULL ctx class target");
    CHECK(av1part_context_stage_class_target(c, SIZE_MAX, 0) == INT32_MIN, "class target bad stage");
}

static void test_context_settings(void) {
    Av1partConfig cfg = tiny_config();
    Av1partContext *c = NULL;
    cfg.skip_below = 0.3;
    cfg.max_sessions = 2;
    cfg.intra_op_threads = 2;
    CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_OK, "skip_below 0.3");
    if (c) {
        CHECK(av1part_context_skip_below(c) == 0.3, "skip_below override %g", av1part_context_skip_below(c));
        av1part_context_free(&c);
        CHECK(c == NULL, "context_free did not NULL the pointer");
    }
    /* AUTO: CUDA if possible, else CPU with a note saying why */
    cfg = tiny_config();
    cfg.execution_provider = AV1PART_PROVIDER_AUTO;
    CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_OK, "AUTO provider");
    int cuda = 0;
    if (c) {
        Av1partProvider p = av1part_context_execution_provider(c);
        CHECK(p == AV1PART_PROVIDER_CPU || p == AV1PART_PROVIDER_CUDA, "AUTO gave provider %d", p);
        cuda = p == AV1PART_PROVIDER_CUDA;
        const char *note = av1part_context_provider_note(c);
        CHECK(note != NULL, "note NULL");
        if (!cuda) CHECK(note && note[0], "AUTO fell back to CPU without a note");
        if (g_verbose) fprintf(stderr, "    AUTO -> %s; note: %s\n", cuda ? "CUDA" : "CPU", note ? note : "");
        av1part_context_free(&c);
    }
    /* CUDA strictly required: unavailable unless this machine has it */
    cfg.execution_provider = AV1PART_PROVIDER_CUDA;
    cfg.require_provider = 1;
    Av1partStatus st = av1part_context_new(&cfg, &c);
    CHECK_STATUS(st, cuda ? AV1PART_STATUS_OK : AV1PART_STATUS_PROVIDER_UNAVAILABLE, "CUDA required");
    av1part_context_free(&c);
    /* free of NULL and of a NULL handle */
    av1part_context_free(NULL);
    c = NULL;
    av1part_context_free(&c);
}

/* ONNX Runtime is loaded in this process now: the same file again is
 * reused; a copy at another path conflicts; a missing one is ORT_LOAD. */
static void test_ort_conflict(void) {
    Av1partConfig cfg = tiny_config();
    Av1partContext *c = NULL;
    cfg.ort_library_path = g_ort;
    CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_OK, "same ORT library, explicitly");
    av1part_context_free(&c);
    char copy[4096];
    path_in(copy, sizeof copy, g_tmp, "libonnxruntime.so.1.31.1");
    CHECK(copy_file(g_ort, copy) == 0, "copy the ORT library");
    cfg.ort_library_path = copy;
    CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_ORT_CONFLICT, "another ORT copy");
    CHECK(c == NULL, "*out after conflict");
    char missing[4096];
    cfg.ort_library_path = path_in(missing, sizeof missing, g_tmp, "libonnxruntime.so.404");
    CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_ORT_LOAD, "missing ORT after load");
    CHECK(c == NULL, "*out after ORT_LOAD");
}

/* ---------- tests: predict_block ------------------------------------- */

typedef struct {
    const char *what;
    void (*mutate)(Av1partBlock *k, TBlock *b);
} BlockMut;

static uint16_t g_misaligned[300];

#define MUT(name, body) static void name(Av1partBlock *k, TBlock *b) { (void)k; (void)b; body; }
MUT(m_y_null, k->y = NULL)
MUT(m_u_null, k->u = NULL)
MUT(m_v_null, k->v = NULL)
MUT(m_ys0, k->y_stride = 0)
MUT(m_ys15, k->y_stride = 15)
MUT(m_ysneg, k->y_stride = -16)
MUT(m_yshuge, k->y_stride = PTRDIFF_MAX)
MUT(m_us7, k->u_stride = 7)
MUT(m_vs0, k->v_stride = 0)
MUT(m_ps15, k->prev_y = b->prev_y; k->prev_y_stride = 15)
MUT(m_bps0, k->bytes_per_sample = 0)
MUT(m_bps3, k->bytes_per_sample = 3)
MUT(m_bps1_bd10, k->bytes_per_sample = 1; k->bit_depth = 10)
MUT(m_bd0, k->bit_depth = 0)
MUT(m_bd7, k->bit_depth = 7)
MUT(m_bd9, k->bit_depth = 9)
MUT(m_bd16, k->bit_depth = 16)
MUT(m_bdneg, k->bit_depth = -8)
MUT(m_y_over, b->y[255] = 1024)
MUT(m_u_over, b->u[63] = 1024)
MUT(m_v_over, b->v[0] = 0xFFFF)
MUT(m_p_over, b->prev_y[17] = 1024; k->prev_y = b->prev_y)
MUT(m_8_over, k->bit_depth = 8; for (int i = 0; i < 256; i++) { b->y[i] &= 255; b->prev_y[i] &= 255; } for (int i = 0; i < 64; i++) { b->u[i] &= 255; b->v[i] &= 255; } b->prev_y[0] = 256; k->prev_y = b->prev_y)
MUT(m_12_over, k->bit_depth = 12; b->u[5] = 4096)
MUT(m_q256, k->base_qindex = 256)
MUT(m_qneg, k->base_qindex = -1)
MUT(m_ft3, k->frame_type = 3)
MUT(m_ftneg, k->frame_type = -1)
MUT(m_misaligned, memcpy((char *)g_misaligned + 1, b->y, 512); k->y = (const char *)g_misaligned + 1)
MUT(m_reserved0, k->reserved[0] = 1)
MUT(m_reserved15, k->reserved[15] = 0x80)

static const BlockMut BLOCK_MUTS[] = {
    {"y NULL", m_y_null},
    {"u NULL", m_u_null},
    {"v NULL", m_v_null},
    {"y_stride 0", m_ys0},
    {"y_stride 15", m_ys15},
    {"y_stride -16", m_ysneg},
    {"y_stride PTRDIFF_MAX", m_yshuge},
    {"u_stride 7", m_us7},
    {"v_stride 0", m_vs0},
    {"prev_y_stride 15", m_ps15},
    {"bytes_per_sample 0", m_bps0},
    {"bytes_per_sample 3", m_bps3},
    {"8-bit storage at bit depth 10", m_bps1_bd10},
    {"bit depth 0", m_bd0},
    {"bit depth 7", m_bd7},
    {"bit depth 9", m_bd9},
    {"bit depth 16", m_bd16},
    {"bit depth -8", m_bdneg},
    {"10-bit Y sample 1024", m_y_over},
    {"10-bit U sample 1024", m_u_over},
    {"10-bit V sample 65535", m_v_over},
    {"10-bit prev_y sample 1024", m_p_over},
    {"8-bit (16-bit storage) prev_y sample 256", m_8_over},
    {"12-bit U sample 4096", m_12_over},
    {"qindex 256", m_q256},
    {"qindex -1", m_qneg},
    {"frame type 3", m_ft3},
    {"frame type -1", m_ftneg},
    {"misaligned 16-bit Y pointer", m_misaligned},
    {"reserved[0] set", m_reserved0},
    {"reserved[15] set", m_reserved15},
};

static void test_block_errors(void) {
    Rng r = {11};
    TBlock b;
    Av1partPrediction p;
    for (size_t i = 0; i < sizeof BLOCK_MUTS / sizeof BLOCK_MUTS[0]; i++) {
        tblock_random(&b, &r, 10, 0);
        Av1partBlock k = tblock_view(&b);
        BLOCK_MUTS[i].mutate(&k, &b);
        fill_garbage(&p, 1);
        CHECK_STATUS(av1part_predict_block(g_ctx, &k, &p), AV1PART_STATUS_INVALID_ARGUMENT, BLOCK_MUTS[i].what);
        CHECK(is_cleared(&p), "%s: output not cleared", BLOCK_MUTS[i].what);
    }
    tblock_random(&b, &r, 10, 0);
    Av1partBlock k = tblock_view(&b);
    fill_garbage(&p, 1);
    CHECK_STATUS(av1part_predict_block(NULL, &k, &p), AV1PART_STATUS_INVALID_ARGUMENT, "NULL ctx");
    CHECK(is_cleared(&p), "NULL ctx: output not cleared");
    CHECK_STATUS(av1part_predict_block(g_ctx, NULL, &p), AV1PART_STATUS_INVALID_ARGUMENT, "NULL block");
    CHECK_STATUS(av1part_predict_block(g_ctx, &k, NULL), AV1PART_STATUS_INVALID_ARGUMENT, "NULL out");
    /* the valid block itself still works afterwards */
    CHECK_STATUS(av1part_predict_block(g_ctx, &k, &p), AV1PART_STATUS_OK, "valid block after errors");
}

static void test_block_valid(void) {
    Rng r = {21};
    TBlock b;
    Av1partPrediction p, q;
    /* each bit depth, with and without prev_y, each frame type */
    for (int bd = 8; bd <= 12; bd += 2)
        for (int prev = 0; prev < 2; prev++)
            for (int ft = 0; ft < 3; ft++) {
                tblock_random(&b, &r, bd, prev);
                b.frame_type = ft;
                Av1partBlock k = tblock_view(&b);
                char what[64];
                snprintf(what, sizeof what, "bd %d prev %d ft %d", bd, prev, ft);
                CHECK_STATUS(av1part_predict_block(g_ctx, &k, &p), AV1PART_STATUS_OK, what);
                check_prediction(&p, what);
                CHECK(((p.flags & AV1PART_PREDICTION_FLAG_HAS_PREV) != 0) == prev, "%s: flags %#x", what, p.flags);
                CHECK(!(p.flags & AV1PART_PREDICTION_FLAG_PARTIAL), "%s: PARTIAL on a block", what);
                /* deterministic: the same call twice gives the same bits */
                CHECK_STATUS(av1part_predict_block(g_ctx, &k, &q), AV1PART_STATUS_OK, what);
                CHECK(!memcmp(&p, &q, sizeof p), "%s: not deterministic", what);
            }
    /* extremes: all zero and all max are valid */
    for (int bd = 8; bd <= 12; bd += 2) {
        for (int v = 0; v < 2; v++) {
            tblock_random(&b, &r, bd, 1);
            uint16_t s = v ? (uint16_t)((1 << bd) - 1) : 0;
            for (int i = 0; i < 256; i++) b.y[i] = b.prev_y[i] = s;
            for (int i = 0; i < 64; i++) b.u[i] = b.v[i] = s;
            Av1partBlock k = tblock_view(&b);
            char what[64];
            snprintf(what, sizeof what, "bd %d all %u", bd, s);
            CHECK_STATUS(av1part_predict_block(g_ctx, &k, &p), AV1PART_STATUS_OK, what);
            check_prediction(&p, what);
        }
    }
    /* qindex 0 and 255 */
    tblock_random(&b, &r, 8, 0);
    b.qindex = 255;
    Av1partBlock k = tblock_view(&b);
    CHECK_STATUS(av1part_predict_block(g_ctx, &k, &p), AV1PART_STATUS_OK, "qindex 255");
    b.qindex = 0;
    k = tblock_view(&b);
    CHECK_STATUS(av1part_predict_block(g_ctx, &k, &p), AV1PART_STATUS_OK, "qindex 0");
}

/* 8-bit samples stored as uint8 and as uint16 give identical results; a
 * block inside a larger strided buffer equals the contiguous one. */
static void test_block_layouts(void) {
    Rng r = {31};
    TBlock b;
    Av1partPrediction p16, p8, ps;
    for (int it = 0; it < 4; it++) {
        tblock_random(&b, &r, 8, it & 1);
        Av1partBlock k = tblock_view(&b);
        CHECK_STATUS(av1part_predict_block(g_ctx, &k, &p16), AV1PART_STATUS_OK, "8-bit in u16");

        uint8_t y8[256], u8[64], v8[64], py8[256];
        for (int i = 0; i < 256; i++) { y8[i] = (uint8_t)b.y[i]; py8[i] = (uint8_t)b.prev_y[i]; }
        for (int i = 0; i < 64; i++) { u8[i] = (uint8_t)b.u[i]; v8[i] = (uint8_t)b.v[i]; }
        Av1partBlock k8 = k;
        k8.y = y8; k8.u = u8; k8.v = v8; k8.prev_y = b.has_prev ? py8 : NULL;
        k8.bytes_per_sample = 1;
        CHECK_STATUS(av1part_predict_block(g_ctx, &k8, &p8), AV1PART_STATUS_OK, "8-bit in u8");
        CHECK(!memcmp(&p16, &p8, sizeof p8), "u8 and u16 storage differ (it %d)", it);

        /* strided: the block at (5, 3) of 40-sample-wide planes */
        enum { YS = 40, CS = 23 };
        uint16_t ys[YS * 20], us[CS * 12], vs[CS * 12], ps_[YS * 20];
        for (int i = 0; i < YS * 20; i++) ys[i] = ps_[i] = (uint16_t)(rng_next(&r) & 255);
        for (int i = 0; i < CS * 12; i++) us[i] = vs[i] = (uint16_t)(rng_next(&r) & 255);
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++) {
                ys[(3 + y) * YS + 5 + x] = b.y[y * 16 + x];
                ps_[(3 + y) * YS + 5 + x] = b.prev_y[y * 16 + x];
            }
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) {
                us[(2 + y) * CS + 4 + x] = b.u[y * 8 + x];
                vs[(2 + y) * CS + 4 + x] = b.v[y * 8 + x];
            }
        Av1partBlock kst = k;
        kst.y = ys + 3 * YS + 5; kst.y_stride = YS;
        kst.u = us + 2 * CS + 4; kst.u_stride = CS;
        kst.v = vs + 2 * CS + 4; kst.v_stride = CS;
        kst.prev_y = b.has_prev ? ps_ + 3 * YS + 5 : NULL; kst.prev_y_stride = YS;
        CHECK_STATUS(av1part_predict_block(g_ctx, &kst, &ps), AV1PART_STATUS_OK, "strided");
        CHECK(!memcmp(&p16, &ps, sizeof ps), "strided block differs (it %d)", it);
    }
}

static void test_blocks_batch(void) {
    enum { N = 37 };
    Rng r = {41};
    static TBlock tb[N];
    Av1partBlock k[N];
    Av1partPrediction single[N], batch[N];
    for (int i = 0; i < N; i++) {
        tblock_random(&tb[i], &r, 8 + 2 * (i % 3), i % 2);
        k[i] = tblock_view(&tb[i]);
        CHECK_STATUS(av1part_predict_block(g_ctx, &k[i], &single[i]), AV1PART_STATUS_OK, "single");
    }
    CHECK_STATUS(av1part_predict_blocks(g_ctx, k, N, batch), AV1PART_STATUS_OK, "batch of 37");
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double d = prob_diff(&single[i], &batch[i]);
        if (d > worst) worst = d;
        CHECK(same_partition(&single[i], &batch[i], 1e-6), "block %d: partition %d vs %d", i, single[i].partition,
              batch[i].partition);
        CHECK(single[i].flags == batch[i].flags && single[i].stages_run == batch[i].stages_run,
              "block %d: flags/stages differ", i);
        check_prediction(&batch[i], "batch");
    }
    CHECK(worst <= 1e-6, "batched vs single: max |dp| %.3g > 1e-6 (documented bound)", worst);
    if (g_verbose) fprintf(stderr, "    batch vs single: max |dp| = %.3g\n", worst);

    /* n == 1 equals predict_block */
    CHECK_STATUS(av1part_predict_blocks(g_ctx, k, 1, batch), AV1PART_STATUS_OK, "batch of 1");
    CHECK(prob_diff(&single[0], &batch[0]) <= 1e-6, "batch of 1 differs");

    /* errors: n 0, NULL pointers, one bad block fails all and is named */
    fill_garbage(batch, N);
    CHECK_STATUS(av1part_predict_blocks(g_ctx, k, 0, batch), AV1PART_STATUS_INVALID_ARGUMENT, "n = 0");
    CHECK_STATUS(av1part_predict_blocks(g_ctx, NULL, 3, batch), AV1PART_STATUS_INVALID_ARGUMENT, "NULL blocks");
    CHECK_STATUS(av1part_predict_blocks(g_ctx, k, 3, NULL), AV1PART_STATUS_INVALID_ARGUMENT, "NULL out");
    CHECK_STATUS(av1part_predict_blocks(NULL, k, 3, batch), AV1PART_STATUS_INVALID_ARGUMENT, "NULL ctx");
    CHECK(is_cleared(&batch[0]) && is_cleared(&batch[2]), "NULL ctx: outputs not cleared");
    Av1partBlock bad[5];
    memcpy(bad, k, sizeof bad);
    bad[3].bit_depth = 11;
    fill_garbage(batch, 5);
    CHECK_STATUS_MSG(av1part_predict_blocks(g_ctx, bad, 5, batch), AV1PART_STATUS_INVALID_ARGUMENT,
                     "bad block 3 of 5", "3");
    for (int i = 0; i < 5; i++) CHECK(is_cleared(&batch[i]), "bad batch: output %d not cleared", i);
    bad[3] = k[3];
    bad[4].y = NULL;
    CHECK_STATUS_MSG(av1part_predict_blocks(g_ctx, bad, 5, batch), AV1PART_STATUS_INVALID_ARGUMENT,
                     "NULL y in block 4 of 5", "4");
}

/* ---------- tests: predict_frame -------------------------------------- */

typedef struct {
    int w, h, bd, bps, with_prev, pad;
    uint16_t *y, *u, *v, *py; /* 16-bit copies (always), stride w+pad / w/2+pad */
    void *y8, *u8, *v8, *py8; /* storage as given to the library when bps == 1 */
    int ys, cs;
} TFrame;

static void tframe_make(TFrame *f, int w, int h, int bd, int bps, int with_prev, int pad, uint64_t seed) {
    memset(f, 0, sizeof *f);
    f->w = w; f->h = h; f->bd = bd; f->bps = bps; f->with_prev = with_prev; f->pad = pad;
    f->ys = w + pad;
    f->cs = w / 2 + pad;
    Rng r = {seed};
    int maxv = (1 << bd) - 1;
    f->y = calloc((size_t)f->ys * (size_t)h, 2);
    f->py = calloc((size_t)f->ys * (size_t)h, 2);
    f->u = calloc((size_t)f->cs * (size_t)(h / 2), 2);
    f->v = calloc((size_t)f->cs * (size_t)(h / 2), 2);
    /* content: diagonal gradient + blocky texture + noise, so blocks differ */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = (x * 3 + y * 2) % 256 + (((x / 8) ^ (y / 8)) & 1) * 64 + (int)(rng_next(&r) % 32);
            v = v * maxv / 351;
            f->y[y * f->ys + x] = (uint16_t)v;
            f->py[y * f->ys + x] = (uint16_t)((v + (int)(rng_next(&r) % 16)) % (maxv + 1));
        }
    for (int y = 0; y < h / 2; y++)
        for (int x = 0; x < w / 2; x++) {
            f->u[y * f->cs + x] = (uint16_t)((x * 5 + y) % (maxv + 1));
            f->v[y * f->cs + x] = (uint16_t)(rng_next(&r) % (uint64_t)(maxv + 1));
        }
    if (bps == 1) {
        size_t ny = (size_t)f->ys * (size_t)h, nc = (size_t)f->cs * (size_t)(h / 2);
        uint8_t *a = malloc(ny), *b = malloc(nc), *c = malloc(nc), *d = malloc(ny);
        for (size_t i = 0; i < ny; i++) { a[i] = (uint8_t)f->y[i]; d[i] = (uint8_t)f->py[i]; }
        for (size_t i = 0; i < nc; i++) { b[i] = (uint8_t)f->u[i]; c[i] = (uint8_t)f->v[i]; }
        f->y8 = a; f->u8 = b; f->v8 = c; f->py8 = d;
    }
}

static void tframe_free(TFrame *f) {
    free(f->y); free(f->u); free(f->v); free(f->py);
    free(f->y8); free(f->u8); free(f->v8); free(f->py8);
}

static Av1partFrame tframe_view(const TFrame *f, int qindex, int ft) {
    Av1partFrame a;
    memset(&a, 0, sizeof a);
    a.y = f->bps == 1 ? f->y8 : (void *)f->y;
    a.u = f->bps == 1 ? f->u8 : (void *)f->u;
    a.v = f->bps == 1 ? f->v8 : (void *)f->v;
    a.prev_y = f->with_prev ? (f->bps == 1 ? f->py8 : (void *)f->py) : NULL;
    a.y_stride = f->ys; a.prev_y_stride = f->ys;
    a.u_stride = f->cs; a.v_stride = f->cs;
    a.width = f->w; a.height = f->h;
    a.bytes_per_sample = f->bps;
    a.bit_depth = f->bd;
    a.base_qindex = qindex;
    a.frame_type = ft;
    return a;
}

/* Block (bx, by) of the frame, samples past the edge replicated. */
static void tframe_block(const TFrame *f, int bx, int by, int qindex, int ft, TBlock *b) {
    memset(b, 0, sizeof *b);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) {
            int sx = bx * 16 + x, sy = by * 16 + y;
            if (sx > f->w - 1) sx = f->w - 1;
            if (sy > f->h - 1) sy = f->h - 1;
            b->y[y * 16 + x] = f->y[sy * f->ys + sx];
            b->prev_y[y * 16 + x] = f->py[sy * f->ys + sx];
        }
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            int sx = bx * 8 + x, sy = by * 8 + y;
            if (sx > f->w / 2 - 1) sx = f->w / 2 - 1;
            if (sy > f->h / 2 - 1) sy = f->h / 2 - 1;
            b->u[y * 8 + x] = f->u[sy * f->cs + sx];
            b->v[y * 8 + x] = f->v[sy * f->cs + sx];
        }
    b->has_prev = f->with_prev;
    b->bit_depth = f->bd;
    b->qindex = qindex;
    b->frame_type = ft;
}

static void frame_vs_blocks(int w, int h, int bd, int bps, int prev, int pad) {
    char what[96];
    snprintf(what, sizeof what, "frame %dx%d bd %d bps %d prev %d pad %d", w, h, bd, bps, prev, pad);
    TFrame f;
    tframe_make(&f, w, h, bd, bps, prev, pad, (uint64_t)(w * 131 + h * 7 + bd));
    int q = 97, ft = prev ? AV1PART_FRAME_TYPE_INTER : AV1PART_FRAME_TYPE_KEY;
    Av1partFrame a = tframe_view(&f, q, ft);
    size_t n = av1part_frame_block_count(w, h);
    int bw = (w + 15) / 16, bh = (h + 15) / 16;
    CHECK(n == (size_t)(bw * bh), "%s: block count %zu", what, n);
    Av1partPrediction *out = malloc((n + 1) * sizeof *out);
    fill_garbage(out, n + 1);
    CHECK_STATUS(av1part_predict_frame(g_ctx, &a, out, n + 1), AV1PART_STATUS_OK, what);
    /* past the block count: untouched */
    Av1partPrediction garbage;
    fill_garbage(&garbage, 1);
    CHECK(!memcmp(&out[n], &garbage, sizeof garbage), "%s: wrote past the block count", what);

    double worst = 0;
    int mism = 0;
    for (int by = 0; by < bh; by++)
        for (int bx = 0; bx < bw; bx++) {
            TBlock b;
            tframe_block(&f, bx, by, q, ft, &b);
            Av1partBlock k = tblock_view(&b);
            Av1partPrediction p;
            CHECK_STATUS(av1part_predict_block(g_ctx, &k, &p), AV1PART_STATUS_OK, what);
            const Av1partPrediction *o = &out[by * bw + bx];
            double d = prob_diff(o, &p);
            if (d > worst) worst = d;
            int partial = (bx * 16 + 16 > w) || (by * 16 + 16 > h);
            if (!same_partition(o, &p, 1e-6)) mism++;
            CHECK(((o->flags & AV1PART_PREDICTION_FLAG_PARTIAL) != 0) == partial, "%s: block (%d,%d) flags %#x",
                  what, bx, by, o->flags);
            CHECK(((o->flags & AV1PART_PREDICTION_FLAG_HAS_PREV) != 0) == prev, "%s: block (%d,%d) HAS_PREV",
                  what, bx, by);
            check_prediction(o, what);
        }
    CHECK(worst <= 1e-6, "%s: frame vs per-block max |dp| %.3g > 1e-6", what, worst);
    CHECK(mism == 0, "%s: %d partitions differ from per-block predictions", what, mism);
    if (g_verbose) fprintf(stderr, "    %s: %zu blocks, max |dp| %.3g\n", what, n, worst);
    free(out);
    tframe_free(&f);
}

static void test_frame_vs_blocks(void) {
    frame_vs_blocks(176, 144, 8, 1, 1, 0);  /* QCIF, 8-bit bytes, with prev */
    frame_vs_blocks(176, 144, 8, 2, 0, 4);  /* 8-bit in 16-bit, padded stride */
    frame_vs_blocks(50, 34, 10, 2, 1, 0);   /* partial blocks on both edges */
    frame_vs_blocks(64, 48, 12, 2, 0, 16);  /* 12-bit */
    frame_vs_blocks(2, 2, 8, 1, 0, 0);      /* smallest frame: one partial block */
    frame_vs_blocks(18, 16, 10, 2, 1, 3);   /* one column of partial blocks */
}

/* predict_frame's results do not depend on frame_threads (1, 3, default). */
static void test_frame_threads(void) {
    TFrame f;
    tframe_make(&f, 176, 144, 10, 2, 1, 0, 77);
    Av1partFrame a = tframe_view(&f, 60, AV1PART_FRAME_TYPE_INTER);
    size_t n = av1part_frame_block_count(176, 144);
    Av1partPrediction *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    CHECK_STATUS(av1part_predict_frame(g_ctx, &a, ref, n), AV1PART_STATUS_OK, "default frame_threads");
    const int32_t counts[] = {1, 3, 8};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        Av1partConfig cfg = tiny_config();
        cfg.skip_below = 0.0;
        cfg.frame_threads = counts[i];
        Av1partContext *c = NULL;
        char what[64];
        snprintf(what, sizeof what, "frame_threads %d", counts[i]);
        CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_OK, what);
        if (!c) continue;
        CHECK_STATUS(av1part_predict_frame(c, &a, got, n), AV1PART_STATUS_OK, what);
        CHECK(!memcmp(ref, got, n * sizeof *got), "%s: results differ from the default context's", what);
        av1part_context_free(&c);
    }
    free(ref);
    free(got);
    tframe_free(&f);
}

static void test_frame_errors(void) {
    TFrame f;
    tframe_make(&f, 64, 48, 10, 2, 1, 0, 5);
    Av1partFrame good = tframe_view(&f, 50, 1), a;
    size_t n = av1part_frame_block_count(64, 48);
    Av1partPrediction out[16];
    CHECK(n == 12, "64x48 block count %zu", n);

#define FRAME_BAD(what, stmt, cap)                                                    \
    do {                                                                              \
        a = good;                                                                     \
        stmt;                                                                         \
        fill_garbage(out, 16);                                                        \
        CHECK_STATUS(av1part_predict_frame(g_ctx, &a, out, (cap)), AV1PART_STATUS_INVALID_ARGUMENT, what); \
        int cl_ = 1;                                                                  \
        size_t cap_ = (cap);                                                          \
        size_t cnt_ = av1part_frame_block_count(a.width, a.height);                  \
        /* cleared: min(capacity, block count) (0 for an invalid size); beyond: untouched */ \
        size_t clr_ = cnt_ <= cap_ ? cnt_ : cap_;                                     \
        for (size_t i_ = 0; i_ < clr_; i_++) cl_ &= is_cleared(&out[i_]);             \
        CHECK(cl_, "%s: outputs not cleared", what);                                  \
        Av1partPrediction g_;                                                         \
        fill_garbage(&g_, 1);                                                         \
        for (size_t i_ = cap_; i_ < 16; i_++)                                         \
            CHECK(!memcmp(&out[i_], &g_, sizeof g_), "%s: wrote out[%zu] past the capacity", what, i_); \
    } while (0)

    FRAME_BAD("width 63 (odd)", a.width = 63, 16);
    FRAME_BAD("height 47 (odd)", a.height = 47, 16);
    FRAME_BAD("width 0", a.width = 0, 16);
    FRAME_BAD("height -2", a.height = -2, 16);
    FRAME_BAD("y_stride < width", a.y_stride = 62, 16);
    FRAME_BAD("y_stride 0", a.y_stride = 0, 16);
    FRAME_BAD("u_stride < width/2", a.u_stride = 31, 16);
    FRAME_BAD("v_stride negative", a.v_stride = -32, 16);
    FRAME_BAD("prev_y_stride < width", a.prev_y_stride = 10, 16);
    FRAME_BAD("y NULL", a.y = NULL, 16);
    FRAME_BAD("u NULL", a.u = NULL, 16);
    FRAME_BAD("v NULL", a.v = NULL, 16);
    FRAME_BAD("bytes_per_sample 4", a.bytes_per_sample = 4, 16);
    FRAME_BAD("bytes 1 at bit depth 10", a.bytes_per_sample = 1, 16);
    FRAME_BAD("bit depth 9", a.bit_depth = 9, 16);
    FRAME_BAD("bit depth 14", a.bit_depth = 14, 16);
    FRAME_BAD("qindex 300", a.base_qindex = 300, 16);
    FRAME_BAD("frame type 5", a.frame_type = 5, 16);
    FRAME_BAD("capacity one short", (void)0, n - 1);
    FRAME_BAD("capacity 0", (void)0, 0);
    FRAME_BAD("y_stride PTRDIFF_MAX", a.y_stride = PTRDIFF_MAX, 16);
    FRAME_BAD("reserved[0] set", a.reserved[0] = 1, 16);
    FRAME_BAD("reserved[15] set", a.reserved[15] = 0xFF, 16);
    /* sample above the maximum in the last sample of each plane */
    uint16_t keep = f.v[(size_t)f.cs * 23 + 31];
    f.v[(size_t)f.cs * 23 + 31] = 1024;
    FRAME_BAD("10-bit V sample 1024 (last sample)", (void)0, 16);
    f.v[(size_t)f.cs * 23 + 31] = keep;
    keep = f.py[(size_t)f.ys * 47 + 63];
    f.py[(size_t)f.ys * 47 + 63] = 4000;
    FRAME_BAD("10-bit prev_y sample 4000", (void)0, 16);
    f.py[(size_t)f.ys * 47 + 63] = keep;
    keep = f.y[0];
    f.y[0] = 1024;
    FRAME_BAD("10-bit Y sample 1024 (first)", (void)0, 16);
    f.y[0] = keep;
#undef FRAME_BAD

    fill_garbage(out, 16);
    CHECK_STATUS(av1part_predict_frame(NULL, &good, out, 16), AV1PART_STATUS_INVALID_ARGUMENT, "NULL ctx");
    CHECK(is_cleared(&out[0]) && is_cleared(&out[n - 1]), "NULL ctx: outputs not cleared");
    CHECK_STATUS(av1part_predict_frame(g_ctx, NULL, out, 16), AV1PART_STATUS_INVALID_ARGUMENT, "NULL frame");
    CHECK_STATUS(av1part_predict_frame(g_ctx, &good, NULL, 16), AV1PART_STATUS_INVALID_ARGUMENT, "NULL out");
    /* restored frame is fine, with exactly the capacity needed */
    CHECK_STATUS(av1part_predict_frame(g_ctx, &good, out, n), AV1PART_STATUS_OK, "exact capacity");
    tframe_free(&f);
}

/* A stage whose rows do not sum to 1 ([0.9, 0.9]) loads, but every
 * prediction fails with INFERENCE naming the stage; the same stage with a
 * proper distribution ([0.25, 0.75]) is used exactly. */
static void test_row_sum_check(void) {
    char d[4096], fix[4096];
    const char *cases[2] = {"stage1_rows_sum_1p8.onnx", "stage1_rows_sum_1.onnx"};
    for (int c = 0; c < 2; c++) {
        if (!bundle_copy(c ? "rows-ok" : "rows-1p8", d, sizeof d)) continue;
        snprintf(fix, sizeof fix, "%s/tests/fixtures/%s", g_root, cases[c]);
        install_model_keep_hash(d, "stage1.onnx", fix);
        Av1partConfig cfg = tiny_config();
        cfg.model_dir = d;
        Av1partContext *ctx = NULL;
        CHECK_STATUS(av1part_context_new(&cfg, &ctx), AV1PART_STATUS_OK, cases[c]);
        if (!ctx) continue;
        Rng r = {31};
        TBlock b;
        tblock_random(&b, &r, 10, 1);
        Av1partBlock k = tblock_view(&b);
        Av1partPrediction p;
        fill_garbage(&p, 1);
        Av1partStatus st = av1part_predict_block(ctx, &k, &p);
        if (c == 0) {
            CHECK_STATUS_MSG(st, AV1PART_STATUS_INFERENCE, "rows sum to 1.8", "stage1");
            CHECK(strstr(av1part_last_error(), "sums to") != NULL, "message: %s", av1part_last_error());
            CHECK(is_cleared(&p), "rows sum to 1.8: output not cleared");
            TFrame fr;
            tframe_make(&fr, 32, 32, 10, 2, 0, 0, 3);
            Av1partFrame v = tframe_view(&fr, 80, 1);
            Av1partPrediction out[4];
            CHECK_STATUS_MSG(av1part_predict_frame(ctx, &v, out, 4), AV1PART_STATUS_INFERENCE, "frame, 1.8",
                             "stage1");
            tframe_free(&fr);
        } else {
            CHECK_STATUS(st, AV1PART_STATUS_OK, "rows sum to 1");
            CHECK(p.stage_probabilities[0][0] == 0.25f && p.stage_probabilities[0][1] == 0.75f,
                  "stage1 row %g %g", p.stage_probabilities[0][0], p.stage_probabilities[0][1]);
            double sum = 0;
            for (int i = 0; i < 10; i++) sum += p.probabilities[i];
            CHECK(fabs(sum - 1.0) < 1e-5, "ten probabilities sum to %g", sum);
        }
        av1part_context_free(&ctx);
    }
    CHECK(AV1PART_PROB_SUM_TOLERANCE > 0 && AV1PART_PROB_SUM_TOLERANCE <= 1e-3, "tolerance %g",
          (double)AV1PART_PROB_SUM_TOLERANCE);
}

/* decision_grid: validated; default 1024; -1 turns rounding off; rounded
 * and unrounded decisions agree except where the top two are within what
 * rounding can move; probabilities are returned unrounded either way. */
static void test_decision_grid(void) {
    Av1partConfig cfg = tiny_config();
    Av1partContext *c = NULL;
    int bad[4] = {3, 1000, 1 << 17, 12};
    for (int i = 0; i < 4; i++) {
        cfg.decision_grid = bad[i];
        CHECK_STATUS_MSG(av1part_context_new(&cfg, &c), AV1PART_STATUS_INVALID_ARGUMENT, "bad decision_grid",
                         "decision_grid");
    }
    cfg.decision_grid = -1;
    cfg.skip_below = 0.0;
    CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_OK, "decision_grid -1");
    if (!c) return;
    CHECK(av1part_context_decision_grid(c) == 0, "grid -1 -> %d", av1part_context_decision_grid(c));
    Rng r = {41};
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        TBlock b;
        tblock_random(&b, &r, 8 + 2 * (i % 3), i % 2);
        Av1partBlock k = tblock_view(&b);
        Av1partPrediction raw, grid;
        CHECK_STATUS(av1part_predict_block(c, &k, &raw), AV1PART_STATUS_OK, "raw");
        CHECK_STATUS(av1part_predict_block(g_ctx, &k, &grid), AV1PART_STATUS_OK, "grid");
        CHECK(!memcmp(raw.probabilities, grid.probabilities, sizeof raw.probabilities),
              "block %d: probabilities depend on the grid", i);
        if (raw.partition != grid.partition) {
            differ++;
            CHECK(same_partition(&raw, &grid, 3.0 / 1024), "block %d: %d vs %d beyond a near-tie", i,
                  raw.partition, grid.partition);
        }
    }
    if (g_verbose) fprintf(stderr, "    decision grid: %d of 200 partitions differ from unrounded\n", differ);
    av1part_context_free(&c);
}

/* Policies and prune sets: greedy and balanced are validated and reported; a prune set
 * holds the partition, grows with the target, and refuses bad input. */
static void test_policies(void) {
    Av1partConfig cfg = tiny_config();
    Av1partContext *c = NULL;
    cfg.decision_policy = 3;
    CHECK_STATUS_MSG(av1part_context_new(&cfg, &c), AV1PART_STATUS_INVALID_ARGUMENT, "policy 3", "decision_policy");
    cfg.decision_policy = AV1PART_POLICY_BALANCED;
    CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_OK, "balanced context");
    if (c) {
        CHECK(av1part_context_decision_policy(c) == AV1PART_POLICY_BALANCED, "policy %d",
              av1part_context_decision_policy(c));
        av1part_context_free(&c);
    }
    cfg.decision_policy = AV1PART_POLICY_GREEDY;
    cfg.skip_below = 0.0;
    CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_OK, "greedy context");
    if (!c) return;
    CHECK(av1part_context_decision_policy(c) == AV1PART_POLICY_GREEDY, "policy %d", av1part_context_decision_policy(c));
    CHECK(av1part_context_decision_policy(g_ctx) == AV1PART_POLICY_FLAT, "default policy");
    CHECK(av1part_context_decision_policy(NULL) == -1, "NULL ctx policy");
    Rng r = {77};
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        TBlock b;
        tblock_random(&b, &r, 10, i % 2);
        Av1partBlock k = tblock_view(&b);
        Av1partPrediction pf, pg;
        CHECK_STATUS(av1part_predict_block(g_ctx, &k, &pf), AV1PART_STATUS_OK, "flat");
        CHECK_STATUS(av1part_predict_block(c, &k, &pg), AV1PART_STATUS_OK, "greedy");
        CHECK(!memcmp(pf.probabilities, pg.probabilities, sizeof pf.probabilities), "policy changed probabilities");
        differ += pf.partition != pg.partition;
        uint32_t m1 = 0xFFFF, m2 = 0, m3 = 0;
        CHECK_STATUS(av1part_context_prune_set(g_ctx, &pf, 0.001, &m1), AV1PART_STATUS_OK, "prune 0.001");
        CHECK(m1 == (1u << pf.partition), "block %d: smallest prune set %#x, partition %d", i, m1, pf.partition);
        CHECK_STATUS(av1part_context_prune_set(g_ctx, &pf, 0.9, &m2), AV1PART_STATUS_OK, "prune 0.9");
        CHECK_STATUS(av1part_context_prune_set(g_ctx, &pf, 1.0, &m3), AV1PART_STATUS_OK, "prune 1.0");
        CHECK((m2 & m1) == m1 && (m3 & m2) == m2 && m3 < (1u << 10), "block %d: sets %#x %#x %#x", i, m1, m2, m3);
    }
    CHECK(differ > 0, "greedy never differs from flat on 100 blocks");
    Av1partPrediction p;
    TBlock b;
    tblock_random(&b, &r, 8, 0);
    Av1partBlock k = tblock_view(&b);
    CHECK_STATUS(av1part_predict_block(g_ctx, &k, &p), AV1PART_STATUS_OK, "flat");
    uint32_t m = 0xABCD;
    CHECK_STATUS_MSG(av1part_context_prune_set(g_ctx, &p, 0.0, &m), AV1PART_STATUS_INVALID_ARGUMENT, "recall 0",
                     "target_recall");
    CHECK(m == 0, "mask not cleared on failure");
    CHECK_STATUS(av1part_context_prune_set(g_ctx, &p, 1.5, &m), AV1PART_STATUS_INVALID_ARGUMENT, "recall 1.5");
    CHECK_STATUS(av1part_context_prune_set(g_ctx, &p, NAN, &m), AV1PART_STATUS_INVALID_ARGUMENT, "recall NaN");
    CHECK_STATUS(av1part_context_prune_set(NULL, &p, 0.9, &m), AV1PART_STATUS_INVALID_ARGUMENT, "NULL ctx");
    CHECK_STATUS(av1part_context_prune_set(g_ctx, NULL, 0.9, &m), AV1PART_STATUS_INVALID_ARGUMENT, "NULL pred");
    CHECK_STATUS(av1part_context_prune_set(g_ctx, &p, 0.9, NULL), AV1PART_STATUS_INVALID_ARGUMENT, "NULL mask");
    Av1partPrediction cleared;
    memset(&cleared, 0, sizeof cleared);
    cleared.partition = -1;
    CHECK_STATUS(av1part_context_prune_set(g_ctx, &cleared, 0.9, &m), AV1PART_STATUS_INVALID_ARGUMENT, "cleared");
    av1part_context_free(&c);
}

/* ---------- golden parity through the C ABI --------------------------- */

static int j_u16s(const JVal *a, uint16_t *dst, size_t n) {
    if (!a || a->t != J_ARR || a->n != n) return -1;
    for (size_t i = 0; i < n; i++) dst[i] = (uint16_t)a->items[i].num;
    return 0;
}

static int golden_blocks(const JVal *g, TBlock **out, size_t *count) {
    const JVal *bl = j_get(g, "blocks");
    if (!bl || bl->t != J_ARR || bl->n == 0) return -1;
    TBlock *t = calloc(bl->n, sizeof *t);
    for (size_t i = 0; i < bl->n; i++) {
        const JVal *b = &bl->items[i];
        const JVal *py = j_get(b, "prev_y");
        if (j_u16s(j_get(b, "y"), t[i].y, 256) || j_u16s(j_get(b, "u"), t[i].u, 64) ||
            j_u16s(j_get(b, "v"), t[i].v, 64) || !py || !j_get(b, "bit_depth") || !j_get(b, "qindex") ||
            !j_get(b, "intra")) {
            free(t);
            return -1;
        }
        t[i].has_prev = py->t != J_NULL;
        if (t[i].has_prev && j_u16s(py, t[i].prev_y, 256)) { free(t); return -1; }
        t[i].bit_depth = (int)j_get(b, "bit_depth")->num;
        t[i].qindex = (int)j_get(b, "qindex")->num;
        t[i].frame_type = j_get(b, "intra")->num != 0 ? AV1PART_FRAME_TYPE_KEY : AV1PART_FRAME_TYPE_INTER;
    }
    *out = t;
    *count = bl->n;
    return 0;
}

/* One result object (probabilities, partition, stages) against a prediction. */
static void golden_compare(const Av1partContext *ctx, const JVal *res, const Av1partPrediction *p, size_t i,
                           const char *run, double *worst) {
    const JVal *pr = j_get(res, "probabilities");
    const JVal *pa = j_get(res, "partition");
    const JVal *st = j_get(res, "stages");
    CHECK(pr && pr->t == J_ARR && pr->n == 10 && pa && st && st->t == J_OBJ, "%s: golden %zu malformed", run, i);
    if (!(pr && pr->t == J_ARR && pr->n == 10 && pa && st && st->t == J_OBJ)) return;
    for (int k = 0; k < 10; k++) {
        double d = fabs(pr->items[k].num - (double)p->probabilities[k]);
        if (d > *worst) *worst = d;
        CHECK(d <= 1e-5, "%s: block %zu p[%d] = %.7f, golden %.7f", run, i, k, (double)p->probabilities[k],
              pr->items[k].num);
    }
    /* The golden partition is the argmax of unrounded probabilities. Another
     * CPU's last bits may pick another one within 1e-4 of the top; the
     * decision grid (when on) within what rounding three stages can move. */
    int grid = av1part_context_decision_grid(ctx);
    double margin = grid > 0 ? 3.0 / grid : 1e-4;
    if (p->partition >= 0 && p->partition < 10) {
        double top = pr->items[(int)pa->num].num;
        CHECK((int)pa->num == p->partition || top - pr->items[p->partition].num <= margin,
              "%s: block %zu partition %d, golden %d", run, i, p->partition, (int)pa->num);
    } else {
        CHECK(0, "%s: block %zu partition %d", run, i, p->partition);
    }
    size_t ns = av1part_context_stage_count(ctx);
    for (size_t s = 0; s < ns; s++) {
        const JVal *sv = j_get(st, av1part_context_stage_name(ctx, s));
        CHECK(sv != NULL, "%s: golden lacks stage %s", run, av1part_context_stage_name(ctx, s));
        if (!sv) continue;
        int ran = (p->stages_run >> s) & 1;
        CHECK(ran == (sv->t != J_NULL), "%s: block %zu stage %zu ran=%d, golden %s", run, i, s, ran,
              sv->t == J_NULL ? "null" : "ran");
        if (ran && sv->t == J_ARR) {
            CHECK(sv->n == av1part_context_stage_class_count(ctx, s), "%s: stage %zu class count", run, s);
            for (size_t k = 0; k < sv->n && k < AV1PART_MAX_CLASSES; k++)
                CHECK(fabs(sv->items[k].num - (double)p->stage_probabilities[s][k]) <= 1e-5,
                      "%s: block %zu stage %zu class %zu %.7f vs golden %.7f", run, i, s, k,
                      (double)p->stage_probabilities[s][k], sv->items[k].num);
        }
    }
}

/* golden.json of the bundle `dir` against `ctx` (a context on it, exact
 * mode), then each skip run with a context of its own */
static void golden_check(const char *dir, Av1partContext *ctx) {
    char path[4096];
    size_t len;
    char *text = read_file(path_in(path, sizeof path, dir, "golden.json"), &len);
    CHECK(text != NULL, "cannot read %s", path);
    if (!text) return;
    JVal g;
    int perr = j_load(text, &g);
    free(text);
    CHECK(perr == 0, "golden.json does not parse");
    if (perr) return;
    TBlock *tb = NULL;
    size_t n = 0;
    CHECK(golden_blocks(&g, &tb, &n) == 0, "golden.json blocks malformed");
    if (!tb) { j_free(&g); return; }
    const JVal *bl = j_get(&g, "blocks");
    Av1partBlock *k = calloc(n, sizeof *k);
    Av1partPrediction *p = calloc(n, sizeof *p);
    for (size_t i = 0; i < n; i++) k[i] = tblock_view(&tb[i]);

    /* exact mode, one block at a time and batched */
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK_STATUS(av1part_predict_block(ctx, &k[i], &p[i]), AV1PART_STATUS_OK, "golden block");
        golden_compare(ctx, &bl->items[i], &p[i], i, "exact/single", &worst);
    }
    CHECK_STATUS(av1part_predict_blocks(ctx, k, n, p), AV1PART_STATUS_OK, "golden batch");
    for (size_t i = 0; i < n; i++) golden_compare(ctx, &bl->items[i], &p[i], i, "exact/batch", &worst);

    /* the skip runs, each with its own context */
    const JVal *runs = j_get(&g, "skip_runs");
    for (size_t r = 0; runs && runs->t == J_ARR && r < runs->n; r++) {
        const JVal *run = &runs->items[r];
        const JVal *sb = j_get(run, "skip_below"), *res = j_get(run, "results");
        const JVal *nskip = j_get(run, "skipped_stage_runs");
        CHECK(sb && res && res->t == J_ARR && res->n == n, "skip run %zu malformed", r);
        if (!(sb && res && res->t == J_ARR && res->n == n)) continue;
        Av1partConfig cfg = tiny_config();
        cfg.model_dir = dir;
        cfg.skip_below = sb->num;
        Av1partContext *c = NULL;
        CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_OK, "skip-run context");
        if (!c) continue;
        CHECK_STATUS(av1part_predict_blocks(c, k, n, p), AV1PART_STATUS_OK, "skip-run batch");
        long skipped = 0;
        size_t ns = av1part_context_stage_count(c);
        char name[64];
        snprintf(name, sizeof name, "skip_below %.3g", sb->num);
        for (size_t i = 0; i < n; i++) {
            golden_compare(c, &res->items[i], &p[i], i, name, &worst);
            for (size_t s = 0; s < ns; s++) skipped += !((p[i].stages_run >> s) & 1);
        }
        if (nskip) CHECK(skipped == (long)nskip->num, "%s: %ld stage runs skipped, golden %ld", name, skipped,
                         (long)nskip->num);
        av1part_context_free(&c);
    }
    if (g_verbose) fprintf(stderr, "    golden %s: %zu blocks, max |dp| %.3g\n", dir, n, worst);
    free(k);
    free(p);
    free(tb);
    j_free(&g);
}

static void test_golden(void) { golden_check(g_tiny, g_ctx); }

/* The fused bundle (schema 2, one graph): its golden set through the C ABI,
 * and a manifest whose stage output the graph lacks is a model-load error
 * naming the file and the output. */
static void test_fused_bundle(void) {
    char fused[2400], d[4096], f[4096];
    snprintf(fused, sizeof fused, "%s/onnx/test-fused", g_root);
    Av1partConfig cfg = tiny_config();
    cfg.model_dir = fused;
    cfg.skip_below = 0.0;
    Av1partContext *c = NULL;
    CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_OK, "test-fused");
    if (c) {
        CHECK(av1part_context_stage_count(c) == 4, "fused stages %zu", av1part_context_stage_count(c));
        golden_check(fused, c);
        av1part_context_free(&c);
    }
    int n = snprintf(d, sizeof d, "%s/fused-bad-output", g_tmp);
    if (n > 0 && (size_t)n < sizeof d && copy_dir(fused, d) == 0) {
        path_in(f, sizeof f, d, "manifest.json");
        CHECK(replace_in_file(f, "\"output\": {\n        \"name\": \"stage2\"",
                              "\"output\": {\n        \"name\": \"stage2x\"") == 0, "rename the stage2 output");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "model.onnx", "fused output missing (file)");
        expect_load(d, AV1PART_STATUS_MODEL_LOAD, "stage2x", "fused output missing (output)");
    } else {
        CHECK(0, "copy %s", fused);
    }
}

/* ---------- stress: many threads, one context, exact results ---------- */

enum { POOL = 64 };
static TBlock g_pool[POOL];
static Av1partBlock g_pool_k[POOL];
static Av1partPrediction g_pool_ref[POOL];
static TFrame g_sframe;
static Av1partFrame g_sframe_view;
static Av1partPrediction g_sframe_ref[12];
static int g_calls;

typedef struct {
    int id;
    long calls, mismatches, errors, bad_status;
} StressArg;

static void *stress_thread(void *arg) {
    StressArg *a = arg;
    Av1partPrediction p, fr[12];
    for (int i = 0; i < g_calls; i++) {
        if (i % 25 == 24) {
            /* a frame call: same batch as the reference, must match exactly */
            if (av1part_predict_frame(g_ctx, &g_sframe_view, fr, 12) != AV1PART_STATUS_OK) a->bad_status++;
            else if (memcmp(fr, g_sframe_ref, sizeof fr)) a->mismatches++;
        } else if (i % 50 == 7) {
            /* an invalid call in between: error, and our thread's message */
            Av1partBlock bad = g_pool_k[i % POOL];
            bad.bit_depth = 9;
            if (av1part_predict_block(g_ctx, &bad, &p) != AV1PART_STATUS_INVALID_ARGUMENT ||
                av1part_last_error()[0] == '\0' || !is_cleared(&p))
                a->errors++;
        } else {
            int j = (i * 7 + a->id * 13) % POOL;
            if (av1part_predict_block(g_ctx, &g_pool_k[j], &p) != AV1PART_STATUS_OK) a->bad_status++;
            else if (memcmp(&p, &g_pool_ref[j], sizeof p)) a->mismatches++;
        }
        a->calls++;
    }
    return NULL;
}

static int env_int(const char *name, int def) {
    const char *s = getenv(name);
    if (!s || !*s) return def;
    char *e;
    long v = strtol(s, &e, 10);
    return (*e || v <= 0 || v > 10000000) ? def : (int)v;
}

static void test_stress(void) {
    int nthreads = env_int("AV1PART_STRESS_THREADS", 8);
    g_calls = env_int("AV1PART_STRESS_CALLS", 2000);
    if (nthreads > 64) nthreads = 64;
    Rng r = {99};
    for (int i = 0; i < POOL; i++) {
        tblock_random(&g_pool[i], &r, 8 + 2 * (i % 3), (i / 3) % 2);
        g_pool_k[i] = tblock_view(&g_pool[i]);
        CHECK_STATUS(av1part_predict_block(g_ctx, &g_pool_k[i], &g_pool_ref[i]), AV1PART_STATUS_OK, "stress ref");
    }
    tframe_make(&g_sframe, 64, 48, 10, 2, 1, 0, 1234);
    g_sframe_view = tframe_view(&g_sframe, 120, 1);
    CHECK_STATUS(av1part_predict_frame(g_ctx, &g_sframe_view, g_sframe_ref, 12), AV1PART_STATUS_OK, "stress frame");

    pthread_t th[64];
    StressArg args[64];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int started = 0;
    for (int t = 0; t < nthreads; t++) {
        memset(&args[t], 0, sizeof args[t]);
        args[t].id = t;
        if (pthread_create(&th[t], NULL, stress_thread, &args[t]) == 0) started++;
        else check_fail(__FILE__, __LINE__, "pthread_create %d", t);
    }
    long calls = 0, mism = 0, errs = 0, bad = 0;
    for (int t = 0; t < started; t++) {
        pthread_join(th[t], NULL);
        calls += args[t].calls;
        mism += args[t].mismatches;
        errs += args[t].errors;
        bad += args[t].bad_status;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    CHECK(calls == (long)nthreads * g_calls, "calls %ld", calls);
    CHECK(mism == 0, "%ld results differ from the single-threaded ones", mism);
    CHECK(bad == 0, "%ld valid calls failed", bad);
    CHECK(errs == 0, "%ld invalid calls misbehaved", errs);
    fprintf(stderr, "    stress: %d threads x %d calls = %ld calls in %.2f s, %ld mismatches\n", nthreads,
            g_calls, calls, secs, mism);
    tframe_free(&g_sframe);
}

/* ---------- the missing-library process ------------------------------- */

static void test_ort_missing(void) {
    Av1partConfig cfg = tiny_config();
    Av1partContext *c = NULL;
    char p[4096];
    /* explicit path that does not exist */
    cfg.ort_library_path = path_in(p, sizeof p, g_tmp, "libonnxruntime.so.404");
    CHECK_STATUS_MSG(av1part_context_new(&cfg, &c), AV1PART_STATUS_ORT_LOAD, "missing ORT", "libonnxruntime.so.404");
    CHECK(c == NULL, "*out after missing ORT");
    /* not a shared library */
    write_file(path_in(p, sizeof p, g_tmp, "libjunk.so"), "not an ELF file", 15);
    cfg.ort_library_path = p;
    CHECK_STATUS_MSG(av1part_context_new(&cfg, &c), AV1PART_STATUS_ORT_LOAD, "junk ORT", "libjunk.so");
    /* a real shared library that is not ONNX Runtime */
    const char *libm = access("/lib/x86_64-linux-gnu/libm.so.6", R_OK) == 0 ? "/lib/x86_64-linux-gnu/libm.so.6"
                       : access("/usr/lib64/libm.so.6", R_OK) == 0     ? "/usr/lib64/libm.so.6"
                                                                        : NULL;
    if (libm) {
        cfg.ort_library_path = libm;
        CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_ORT_LOAD, "libm as ORT");
    }
    /* $AV1PART_ORT_LIB names a missing file and the config names none */
    setenv("AV1PART_ORT_LIB", path_in(p, sizeof p, g_tmp, "from-env.so"), 1);
    cfg.ort_library_path = NULL;
    CHECK_STATUS_MSG(av1part_context_new(&cfg, &c), AV1PART_STATUS_ORT_LOAD, "AV1PART_ORT_LIB missing",
                     "from-env.so");
    unsetenv("AV1PART_ORT_LIB");
    /* the failures left nothing behind: the real library loads now */
    cfg.ort_library_path = g_ort;
    CHECK_STATUS(av1part_context_new(&cfg, &c), AV1PART_STATUS_OK, "real ORT after failures");
    av1part_context_free(&c);
}

/* ---------- driver ---------------------------------------------------- */

typedef struct {
    const char *name;
    void (*fn)(void);
    int needs_ctx;
} Test;

static const Test MAIN_TESTS[] = {
    {"version and ABI", test_version, 0},
    {"status strings", test_status_strings, 0},
    {"partition names", test_partition_names, 0},
    {"config defaults", test_config_default, 0},
    {"frame block count", test_frame_block_count, 0},
    {"last error is per thread", test_last_error_per_thread, 0},
    {"context_new: bad arguments", test_context_new_bad_args, 0},
    {"context_new: broken bundles", test_broken_bundles, 0},
    {"context accessors", test_context_accessors, 1},
    {"context settings and providers", test_context_settings, 1},
    {"ORT reuse, conflict, missing after load", test_ort_conflict, 1},
    {"predict_block: invalid input", test_block_errors, 1},
    {"predict_block: valid input", test_block_valid, 1},
    {"predict_block: storage and strides", test_block_layouts, 1},
    {"predict_blocks: batch = single, errors", test_blocks_batch, 1},
    {"predict_frame = per-block predictions", test_frame_vs_blocks, 1},
    {"predict_frame: invalid input", test_frame_errors, 1},
    {"predict_frame: frame_threads does not change results", test_frame_threads, 1},
    {"golden.json parity through the C ABI", test_golden, 1},
    {"fused bundle (schema 2): golden set, output mismatch", test_fused_bundle, 0},
    {"stage rows must sum to 1", test_row_sum_check, 1},
    {"decision grid", test_decision_grid, 1},
    {"decision policies and prune sets", test_policies, 1},
    {"stress: threads x calls, exact", test_stress, 1},
};

static const Test ORT_TESTS[] = {
    {"ONNX Runtime missing or wrong (fresh process)", test_ort_missing, 0},
};

int main(int argc, char **argv) {
    int ort_mode = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) g_verbose = 1;
        else if (!strcmp(argv[i], "--ort-missing")) ort_mode = 1;
        else {
            fprintf(stderr, "usage: %s [--verbose] [--ort-missing]\n", argv[0]);
            return 2;
        }
    }
    const char *root = getenv("AV1PART_TEST_ROOT");
    snprintf(g_root, sizeof g_root, "%s", root && *root ? root : AV1PART_ROOT);
    snprintf(g_tiny, sizeof g_tiny, "%s/onnx/test-tiny", g_root);
    snprintf(g_ort, sizeof g_ort, "%s/.deps/onnxruntime/lib/libonnxruntime.so.1.31.1", g_root);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/av1part-c-harness-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 2;
    }
    printf("av1part C harness: library %s, header ABI %d, bundle %s%s\n", av1part_version(), AV1PART_ABI_VERSION,
           g_tiny, ort_mode ? " (ONNX Runtime error process)" : "");
    fflush(stdout);

    const Test *tests = ort_mode ? ORT_TESTS : MAIN_TESTS;
    size_t nt = ort_mode ? sizeof ORT_TESTS / sizeof ORT_TESTS[0] : sizeof MAIN_TESTS / sizeof MAIN_TESTS[0];
    int passed = 0, failed = 0, ctx_tried = 0;
    for (size_t i = 0; i < nt; i++) {
        if (tests[i].needs_ctx && !ctx_tried) {
            ctx_tried = 1;
            Av1partConfig cfg = tiny_config();
            cfg.skip_below = 0.0;
            Av1partStatus st = av1part_context_new(&cfg, &g_ctx);
            if (st != AV1PART_STATUS_OK)
                fprintf(stderr, "cannot load %s: %s: %s\n", g_tiny, av1part_status_string(st), av1part_last_error());
        }
        g_test_failures = 0;
        if (tests[i].needs_ctx && !g_ctx) {
            g_test_failures = 1;
            fprintf(stderr, "    no context (test-tiny did not load)\n");
        } else {
            tests[i].fn();
        }
        if (g_test_failures) failed++; else passed++;
        printf("%s - %s\n", g_test_failures ? "FAIL" : "ok  ", tests[i].name);
        fflush(stdout);
    }
    av1part_context_free(&g_ctx);
    remove_tree(g_tmp);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
