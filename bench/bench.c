/*
 * av1part-bench: per-block latency of libav1part through its C ABI.
 *
 * For each input (a Y4M clip, or a synthetic frame of a given size) it times
 *   block  av1part_predict_block() on every 16x16 block of the frames, one
 *          call per block (batch 1), as an encoder's partition search would;
 *   frame  av1part_predict_frame() on whole frames (batched inside).
 * and prints median / p99 / mean microseconds per block and blocks per
 * second, with the execution provider, bundle, thread settings and machine.
 * Timing is wall-clock (CLOCK_MONOTONIC) around each call, one calling
 * thread unless --callers N is given (then N threads share one context and
 * the block rows report aggregate throughput).
 *
 * Usage: av1part-bench [options]
 *   --bundle DIR         model bundle (default onnx/default, else onnx/test-tiny)
 *   --y4m FILE           a 4:2:0 Y4M (8- or 10-bit); may be repeated
 *   --synthetic WxH      a synthetic frame sequence (pattern below); may be repeated
 *   --frames N           frames per input (default 3)
 *   --frame-reps N       timed predict_frame calls per frame (default 3)
 *   --max-block-calls N  cap on timed predict_block calls per input (default 20000)
 *   --warmup N           untimed calls before timing (default 50)
 *   --intra-op-threads N ONNX Runtime intra-op threads per session (default 1)
 *   --max-sessions N     sessions per model (default 0 = library default)
 *   --frame-threads N    threads inside av1part_predict_frame (default 0 =
 *                        max_sessions; 1 = the calling thread only)
 *   --callers N          calling threads for the block mode (default 1)
 *   --provider P         cpu | auto | cuda (default cpu)
 *   --skip-below X       cascade skip threshold (default: the bundle's)
 *   --qindex Q           base qindex passed with every block (default 128)
 *
 * Synthetic pattern (when no Y4M): luma = smooth diagonal gradient plus a
 * moving 24x24 checkerboard of contrast 64 and uniform noise of +-8, chroma =
 * slow gradients; frame t shifts the pattern by (t, t/2) pixels. 8-bit.
 */
#define _GNU_SOURCE 1
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/utsname.h>

#include "av1part.h"

#ifndef AV1PART_ROOT
#define AV1PART_ROOT "."
#endif

/* ---------- frames --------------------------------------------------- */

typedef struct {
    int w, h, bd;           /* bd 8 or 10 */
    int nframes;
    uint16_t **y, **u, **v; /* per frame, contiguous, 16-bit storage */
    char label[512];
} Clip;

static void die(const char *fmt, const char *arg) {
    fprintf(stderr, "av1part-bench: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

static void clip_alloc(Clip *c) {
    c->y = calloc((size_t)c->nframes, sizeof *c->y);
    c->u = calloc((size_t)c->nframes, sizeof *c->u);
    c->v = calloc((size_t)c->nframes, sizeof *c->v);
    for (int f = 0; f < c->nframes; f++) {
        c->y[f] = malloc((size_t)c->w * (size_t)c->h * 2);
        c->u[f] = malloc((size_t)(c->w / 2) * (size_t)(c->h / 2) * 2);
        c->v[f] = malloc((size_t)(c->w / 2) * (size_t)(c->h / 2) * 2);
        if (!c->y[f] || !c->u[f] || !c->v[f]) die("%s", "out of memory");
    }
}

static void clip_free(Clip *c) {
    for (int f = 0; f < c->nframes; f++) { free(c->y[f]); free(c->u[f]); free(c->v[f]); }
    free(c->y); free(c->u); free(c->v);
}

/* Reads up to maxf frames of a 4:2:0 Y4M (C420*, 8-bit, or C420p10). */
static void clip_y4m(Clip *c, const char *path, int maxf) {
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    char hdr[1024];
    if (!fgets(hdr, sizeof hdr, f) || strncmp(hdr, "YUV4MPEG2 ", 10)) die("%s: not a Y4M file", path);
    c->bd = 8;
    int chroma_ok = 1;
    for (char *tok = strtok(hdr + 10, " \n"); tok; tok = strtok(NULL, " \n")) {
        if (tok[0] == 'W') c->w = atoi(tok + 1);
        else if (tok[0] == 'H') c->h = atoi(tok + 1);
        else if (tok[0] == 'C') {
            if (!strncmp(tok, "C420p10", 7)) c->bd = 10;
            else if (!strncmp(tok, "C420p12", 7)) c->bd = 12;
            else if (strncmp(tok, "C420", 4)) chroma_ok = 0;
        }
    }
    if (!chroma_ok) die("%s: only 4:2:0 Y4M is supported", path);
    if (c->w <= 0 || c->h <= 0 || (c->w & 1) || (c->h & 1)) die("%s: bad or odd frame size", path);
    size_t bps = c->bd > 8 ? 2 : 1;
    size_t ny = (size_t)c->w * (size_t)c->h, nc = ny / 4;
    c->nframes = maxf;
    clip_alloc(c);
    uint8_t *buf = malloc((ny + 2 * nc) * bps);
    int got = 0;
    char line[256];
    while (got < maxf && fgets(line, sizeof line, f) && !strncmp(line, "FRAME", 5)) {
        if (fread(buf, bps, ny + 2 * nc, f) != ny + 2 * nc) break;
        uint16_t *dst[3] = {c->y[got], c->u[got], c->v[got]};
        size_t off[3] = {0, ny, ny + nc}, cnt[3] = {ny, nc, nc};
        for (int p = 0; p < 3; p++)
            for (size_t i = 0; i < cnt[p]; i++)
                dst[p][i] = bps == 1 ? buf[off[p] + i]
                                     : (uint16_t)(buf[2 * (off[p] + i)] | buf[2 * (off[p] + i) + 1] << 8);
        got++;
    }
    free(buf);
    fclose(f);
    if (got == 0) die("%s: no frames", path);
    for (int i = got; i < c->nframes; i++) { free(c->y[i]); free(c->u[i]); free(c->v[i]); }
    c->nframes = got;
    const char *base = strrchr(path, '/');
    snprintf(c->label, sizeof c->label, "%s %dx%d %d-bit %df", base ? base + 1 : path, c->w, c->h, c->bd, got);
}

static void clip_synthetic(Clip *c, int w, int h, int nframes) {
    memset(c, 0, sizeof *c);
    c->w = w; c->h = h; c->bd = 8; c->nframes = nframes;
    clip_alloc(c);
    uint64_t s = 0x1234567ull;
    for (int f = 0; f < nframes; f++) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int sx = x + f, sy = y + f / 2;
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                int v = 40 + (sx + sy) * 120 / (w + h) + ((((sx / 24) ^ (sy / 24)) & 1) ? 64 : 0) +
                        (int)((s >> 33) % 17) - 8;
                c->y[f][(size_t)y * (size_t)w + (size_t)x] = (uint16_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        for (int y = 0; y < h / 2; y++)
            for (int x = 0; x < w / 2; x++) {
                c->u[f][(size_t)y * (size_t)(w / 2) + (size_t)x] = (uint16_t)(96 + (x * 64) / (w / 2));
                c->v[f][(size_t)y * (size_t)(w / 2) + (size_t)x] = (uint16_t)(160 - (y * 64) / (h / 2));
            }
    }
    snprintf(c->label, sizeof c->label, "synthetic %dx%d 8-bit %df", w, h, nframes);
}

/* ---------- timing helpers ------------------------------------------- */

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* value at quantile q (nearest rank) of a sorted array */
static double quantile(const double *s, size_t n, double q) {
    if (n == 0) return NAN;
    size_t k = (size_t)ceil(q * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return s[k - 1];
}

/* ---------- block mode ------------------------------------------------ */

typedef struct {
    const Av1partContext *ctx;
    const Clip *clip;
    int qindex;
    size_t first, count, stride; /* global block indices first, first+stride, ... */
    double *lat;                  /* count latencies, µs */
    long errors;
    int hist[AV1PART_NUM_PARTITIONS];
} BlockJob;

static size_t blocks_per_frame(const Clip *c) { return (size_t)(c->w / 16) * (size_t)(c->h / 16); }

/* Global block index -> frame, block (full 16x16 blocks inside the frame;
 * the partial edge blocks are left to the frame mode). */
static Av1partBlock block_at(const Clip *c, size_t gi, int qindex) {
    size_t bpf = blocks_per_frame(c), bw = (size_t)(c->w / 16);
    int f = (int)((gi / bpf) % (size_t)c->nframes);
    size_t b = gi % bpf, bx = b % bw, by = b / bw;
    Av1partBlock k;
    memset(&k, 0, sizeof k);
    size_t yo = by * 16 * (size_t)c->w + bx * 16, co = by * 8 * (size_t)(c->w / 2) + bx * 8;
    k.y = c->y[f] + yo;
    k.u = c->u[f] + co;
    k.v = c->v[f] + co;
    k.prev_y = f > 0 ? c->y[f - 1] + yo : NULL;
    k.y_stride = c->w;
    k.prev_y_stride = c->w;
    k.u_stride = c->w / 2;
    k.v_stride = c->w / 2;
    k.bytes_per_sample = 2;
    k.bit_depth = c->bd;
    k.base_qindex = qindex;
    k.frame_type = f == 0 ? AV1PART_FRAME_TYPE_KEY : AV1PART_FRAME_TYPE_INTER;
    return k;
}

static void *block_worker(void *arg) {
    BlockJob *j = arg;
    Av1partPrediction p;
    for (size_t i = 0; i < j->count; i++) {
        Av1partBlock k = block_at(j->clip, j->first + i * j->stride, j->qindex);
        double t0 = now_us();
        Av1partStatus st = av1part_predict_block(j->ctx, &k, &p);
        double t1 = now_us();
        j->lat[i] = t1 - t0;
        if (st != AV1PART_STATUS_OK) j->errors++;
        else j->hist[p.partition]++;
    }
    return NULL;
}

/* ---------- main ------------------------------------------------------- */

static void cpu_model(char *out, size_t cap) {
    snprintf(out, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ' || *p == '\t') p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(out, cap, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

static int dir_exists(const char *p) { return access(p, R_OK | X_OK) == 0; }

int main(int argc, char **argv) {
    const char *bundle = NULL;
    const char *y4ms[16];
    int ny4m = 0;
    int synth[16][2];
    int nsynth = 0;
    int frames = 3, frame_reps = 3, warmup = 50, threads = 1, max_sessions = 0, frame_threads = 0, callers = 1,
        qindex = 128;
    long max_block_calls = 20000;
    int provider = AV1PART_PROVIDER_CPU;
    double skip_below = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED() do { if (!v) die("%s needs a value", a); i++; } while (0)
        if (!strcmp(a, "--bundle")) { NEED(); bundle = v; }
        else if (!strcmp(a, "--y4m")) { NEED(); if (ny4m < 16) y4ms[ny4m++] = v; }
        else if (!strcmp(a, "--synthetic")) {
            NEED();
            if (nsynth < 16 && sscanf(v, "%dx%d", &synth[nsynth][0], &synth[nsynth][1]) == 2) nsynth++;
            else die("--synthetic %s: want WxH", v);
        }
        else if (!strcmp(a, "--frames")) { NEED(); frames = atoi(v); }
        else if (!strcmp(a, "--frame-reps")) { NEED(); frame_reps = atoi(v); }
        else if (!strcmp(a, "--max-block-calls")) { NEED(); max_block_calls = atol(v); }
        else if (!strcmp(a, "--warmup")) { NEED(); warmup = atoi(v); }
        else if (!strcmp(a, "--intra-op-threads")) { NEED(); threads = atoi(v); }
        else if (!strcmp(a, "--max-sessions")) { NEED(); max_sessions = atoi(v); }
        else if (!strcmp(a, "--frame-threads")) { NEED(); frame_threads = atoi(v); }
        else if (!strcmp(a, "--callers")) { NEED(); callers = atoi(v); }
        else if (!strcmp(a, "--qindex")) { NEED(); qindex = atoi(v); }
        else if (!strcmp(a, "--skip-below")) { NEED(); skip_below = atof(v); }
        else if (!strcmp(a, "--provider")) {
            NEED();
            provider = !strcmp(v, "cpu") ? AV1PART_PROVIDER_CPU : !strcmp(v, "cuda") ? AV1PART_PROVIDER_CUDA
                     : !strcmp(v, "auto") ? AV1PART_PROVIDER_AUTO : -1;
            if (provider < 0) die("--provider %s: want cpu, auto or cuda", v);
        }
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: av1part-bench [options]\n"
                   "  --bundle DIR         model bundle (default onnx/default, else onnx/test-tiny)\n"
                   "  --y4m FILE           a 4:2:0 Y4M (8/10/12-bit); repeatable\n"
                   "  --synthetic WxH      synthetic frames (gradient + moving checkerboard + noise); repeatable\n"
                   "  --frames N           frames per input (default 3)\n"
                   "  --frame-reps N       timed predict_frame calls per frame (default 3)\n"
                   "  --max-block-calls N  cap on timed predict_block calls per input (default 20000)\n"
                   "  --warmup N           untimed block calls first (default 50)\n"
                   "  --intra-op-threads N ONNX Runtime intra-op threads per session (default 1)\n"
                   "  --max-sessions N     sessions per model (default 0: library default)\n"
                   "  --frame-threads N    threads inside predict_frame (default 0: max_sessions)\n"
                   "  --callers N          calling threads in block mode (default 1)\n"
                   "  --provider P         cpu | auto | cuda (default cpu)\n"
                   "  --skip-below X       cascade skip threshold (default: the bundle's)\n"
                   "  --qindex Q           base qindex (default 128)\n"
                   "Without --y4m/--synthetic: synthetic 176x144, 1280x720 and 1920x1080.\n");
            return 0;
        }
        else die("unknown option %s", a);
#undef NEED
    }
    if (frames < 1 || frame_reps < 1 || callers < 1 || callers > 64 || warmup < 0 || max_block_calls < 1)
        die("%s", "bad --frames/--frame-reps/--callers/--warmup/--max-block-calls");

    static char bundle_buf[4096];
    int fallback = 0;
    if (!bundle) {
        snprintf(bundle_buf, sizeof bundle_buf, "%s/onnx/default", AV1PART_ROOT);
        if (!dir_exists(bundle_buf)) {
            snprintf(bundle_buf, sizeof bundle_buf, "%s/onnx/test-tiny", AV1PART_ROOT);
            fallback = 1;
        }
        bundle = bundle_buf;
    }

    Av1partConfig cfg;
    av1part_config_default(&cfg);
    cfg.model_dir = bundle;
    cfg.execution_provider = provider;
    cfg.intra_op_threads = threads;
    cfg.max_sessions = max_sessions;
    cfg.frame_threads = frame_threads;
    cfg.skip_below = skip_below;
    Av1partContext *ctx = NULL;
    double tl0 = now_us();
    Av1partStatus st = av1part_context_new(&cfg, &ctx);
    double tload = now_us() - tl0;
    if (st != AV1PART_STATUS_OK) {
        fprintf(stderr, "av1part-bench: cannot load %s: %s: %s\n", bundle, av1part_status_string(st),
                av1part_last_error());
        return 1;
    }

    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    struct utsname un;
    uname(&un);
    double load[3] = {0, 0, 0};
    getloadavg(load, 3);
    Av1partProvider prov = av1part_context_execution_provider(ctx);
    printf("# av1part-bench\n");
    printf("library      : av1part %s (ABI %u)\n", av1part_version(), av1part_abi_version());
    printf("bundle       : %s (name '%s', %zu stages, skip_below %.3g)%s\n", bundle,
           av1part_context_bundle_name(ctx), av1part_context_stage_count(ctx), av1part_context_skip_below(ctx),
           fallback ? "  ** onnx/default missing: TEST BUNDLE (random weights) **" : "");
    printf("provider     : %s%s%s\n", prov == AV1PART_PROVIDER_CUDA ? "CUDA" : "CPU",
           av1part_context_provider_note(ctx)[0] ? " - " : "", av1part_context_provider_note(ctx));
    printf("threads      : intra-op %d per session; max_sessions %d, frame_threads %d (0 = library default:\n"
           "               min(cores, 8) sessions; frame_threads = max_sessions); %d calling thread%s\n",
           threads, max_sessions, frame_threads, callers, callers > 1 ? "s" : "");
    printf("machine      : %s, %ld online cores, %s %s, load average %.2f %.2f %.2f\n", cpu,
           sysconf(_SC_NPROCESSORS_ONLN), un.sysname, un.release, load[0], load[1], load[2]);
    printf("context load : %.1f ms\n", tload / 1000.0);
    printf("timing       : CLOCK_MONOTONIC around each call; block = av1part_predict_block (batch 1) on every\n"
           "               full 16x16 block, prev_y = previous frame, qindex %d; frame = av1part_predict_frame;\n"
           "               %d warm-up calls untimed\n\n", qindex, warmup);

    int ninputs = ny4m + nsynth;
    if (ninputs == 0) {
        synth[0][0] = 176; synth[0][1] = 144;
        synth[1][0] = 1280; synth[1][1] = 720;
        synth[2][0] = 1920; synth[2][1] = 1080;
        nsynth = 3;
        ninputs = 3;
    }

    printf("%-52s %-5s %8s %10s %10s %10s %10s %12s\n", "input", "mode", "calls", "median_us", "p99_us", "mean_us",
           "us/block", "blocks/s");
    int rc = 0;
    for (int in = 0; in < ninputs; in++) {
        Clip c;
        if (in < ny4m) clip_y4m(&c, y4ms[in], frames);
        else clip_synthetic(&c, synth[in - ny4m][0], synth[in - ny4m][1], frames);
        if (c.w < 16 || c.h < 16) die("%s: frame smaller than one block", c.label);

        /* ---- block mode ---- */
        size_t total = blocks_per_frame(&c) * (size_t)c.nframes;
        size_t n = total < (size_t)max_block_calls ? total : (size_t)max_block_calls;
        {
            Av1partPrediction p;
            for (int w = 0; w < warmup; w++) {
                Av1partBlock k = block_at(&c, (size_t)w % total, qindex);
                av1part_predict_block(ctx, &k, &p);
            }
        }
        double *lat = malloc(n * sizeof *lat);
        BlockJob jobs[64];
        pthread_t th[64];
        double t0 = now_us();
        for (int t = 0; t < callers; t++) {
            memset(&jobs[t], 0, sizeof jobs[t]);
            jobs[t].ctx = ctx;
            jobs[t].clip = &c;
            jobs[t].qindex = qindex;
            jobs[t].first = (size_t)t;
            jobs[t].stride = (size_t)callers;
            jobs[t].count = n / (size_t)callers + ((size_t)t < n % (size_t)callers);
            size_t off = 0;
            for (int u = 0; u < t; u++) off += jobs[u].count;
            jobs[t].lat = lat + off;
            if (callers == 1) block_worker(&jobs[0]);
            else pthread_create(&th[t], NULL, block_worker, &jobs[t]);
        }
        if (callers > 1)
            for (int t = 0; t < callers; t++) pthread_join(th[t], NULL);
        double wall = now_us() - t0;
        long errors = 0;
        double sum = 0;
        for (int t = 0; t < callers; t++) errors += jobs[t].errors;
        for (size_t i = 0; i < n; i++) sum += lat[i];
        qsort(lat, n, sizeof *lat, cmp_d);
        printf("%-52.52s %-5s %8zu %10.1f %10.1f %10.1f %10.1f %12.0f\n", c.label, "block", n,
               quantile(lat, n, 0.5), quantile(lat, n, 0.99), sum / (double)n, wall / (double)n,
               (double)n / (wall * 1e-6));
        if (errors) {
            printf("  !! %ld block calls failed: %s\n", errors, av1part_last_error());
            rc = 1;
        }
        free(lat);

        /* ---- frame mode ---- */
        size_t nb = av1part_frame_block_count(c.w, c.h);
        Av1partPrediction *out = malloc(nb * sizeof *out);
        int reps = c.nframes * frame_reps;
        double *ft = malloc((size_t)reps * sizeof *ft);
        long hist[AV1PART_NUM_PARTITIONS] = {0};
        double top = 0;
        int ferr = 0;
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
            int f = r < 0 ? 0 : r % c.nframes;
            Av1partFrame fr;
            memset(&fr, 0, sizeof fr);
            fr.y = c.y[f]; fr.u = c.u[f]; fr.v = c.v[f];
            fr.prev_y = f > 0 ? c.y[f - 1] : NULL;
            fr.y_stride = c.w; fr.prev_y_stride = c.w;
            fr.u_stride = c.w / 2; fr.v_stride = c.w / 2;
            fr.width = c.w; fr.height = c.h;
            fr.bytes_per_sample = 2;
            fr.bit_depth = c.bd;
            fr.base_qindex = qindex;
            fr.frame_type = f == 0 ? AV1PART_FRAME_TYPE_KEY : AV1PART_FRAME_TYPE_INTER;
            double a = now_us();
            st = av1part_predict_frame(ctx, &fr, out, nb);
            double b = now_us();
            if (st != AV1PART_STATUS_OK) {
                ferr++;
                continue;
            }
            if (r < 0) continue;
            ft[r] = b - a;
            if (r < c.nframes) /* partition statistics once per frame */
                for (size_t i = 0; i < nb; i++) {
                    hist[out[i].partition]++;
                    top += out[i].probabilities[out[i].partition];
                }
        }
        double fsum = 0;
        for (int r = 0; r < reps; r++) fsum += ft[r];
        qsort(ft, (size_t)reps, sizeof *ft, cmp_d);
        printf("%-52.52s %-5s %8d %10.1f %10.1f %10.1f %10.1f %12.0f\n", "", "frame", reps,
               quantile(ft, (size_t)reps, 0.5) / (double)nb, quantile(ft, (size_t)reps, 0.99) / (double)nb,
               fsum / reps / (double)nb, fsum / reps / (double)nb, (double)nb * reps / (fsum * 1e-6));
        printf("%-52s        frame: %zu blocks, median %.2f ms, p99 %.2f ms per frame\n", "", nb,
               quantile(ft, (size_t)reps, 0.5) / 1000.0, quantile(ft, (size_t)reps, 0.99) / 1000.0);
        printf("%-52s        partitions (frame mode, %d frames):", "", c.nframes);
        for (int p = 0; p < AV1PART_NUM_PARTITIONS; p++)
            if (hist[p]) printf(" %s %ld", av1part_partition_name(p), hist[p]);
        printf("; mean top probability %.3f\n", top / ((double)nb * c.nframes));
        if (ferr) {
            printf("  !! %d frame calls failed: %s\n", ferr, av1part_last_error());
            rc = 1;
        }
        fflush(stdout);
        free(ft);
        free(out);
        clip_free(&c);
    }
    printf("\nblock rows: median/p99/mean are per-call latencies of av1part_predict_block; us/block and\n"
           "blocks/s are wall time over all calls%s. frame rows: per-block figures are the frame\n"
           "call's time divided by its block count (median/p99 over frames).\n",
           callers > 1 ? " (aggregate over all calling threads)" : "");
    av1part_context_free(&ctx);
    return rc;
}
