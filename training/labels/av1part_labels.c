/* av1part-labels: exact 16x16 partition labels from an AV1 bitstream.
 *
 *   av1part-labels [--all-decoded] [-o OUT] STREAM.(ivf|obu)
 *   av1part-labels --map MAPFILE          (derive from a text block-size map; tests)
 *
 * Decodes STREAM with libaom's inspection decoder (CONFIG_INSPECTION=1, one thread) and
 * derives, for every decoded frame, every 16x16 partition node from the decoder's
 * block-size map (derive.c). Frames are written in display order:
 *   - a frame decoded with show_frame=1 gets the next display index;
 *   - a hidden frame (show_frame=0) is kept until a show_existing_frame shows it, then it
 *     gets the next display index (existing=1); hidden frames never shown are dropped;
 *   - a show_existing_frame of a frame already shown (a repeat) takes a display index but
 *     carries no nodes (its pixels are an earlier picture).
 * With --all-decoded every decoded frame is written in decode order instead (display index
 * -1 for frames not yet shown when decoded); used to compare against the decoder's trace.
 *
 * Output (text): '#' lines describe the stream and each frame, other lines are nodes:
 *   # av1part-labels 1 stream=<path> width=W height=H bit_depth=B
 *   # frame display=D decode=K type=T qindex=Q order_hint=O existing=E width=W height=H nodes=N
 *   D K x y partition frame_type base_qindex edge existing
 *   # end decoded=K displayed=D nodes=N hidden_never_shown=H      (last line)
 * frame_type: 0 key, 1 inter (AV1 INTER and S frames), 2 intra-only.
 * Exit status: 0 ok, 1 usage, 2 bad/corrupt/unsupported input (message names the file).
 * The output file is written to OUT.tmp and renamed on success only. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aom/aom_decoder.h"
#include "aom/aomdx.h"
#include "av1/decoder/decoder.h"
#include "derive.h"

static const char *g_stream = "";
static const char *g_tmp_out = NULL;

static void fail(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "av1part-labels: %s: ", g_stream);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (g_tmp_out) remove(g_tmp_out);
  exit(2);
}

/* ---------------------------------------------------------------- stream reading -- */
typedef struct {
  FILE *f;
  int ivf;
  long file_size;
  uint8_t *buf;
  size_t cap;
  long tu_index;
} reader;

static void ensure_cap(reader *rd, size_t n) {
  if (n <= rd->cap) return;
  rd->cap = n * 2;
  rd->buf = (uint8_t *)realloc(rd->buf, rd->cap);
  if (!rd->buf) fail("out of memory");
}

static int read_leb128(FILE *f, uint64_t *v, uint8_t *raw, int *nraw) {
  *v = 0;
  *nraw = 0;
  for (int i = 0; i < 8; ++i) {
    int b = fgetc(f);
    if (b == EOF) return i == 0 ? 0 : -1;
    raw[(*nraw)++] = (uint8_t)b;
    *v |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) return 1;
  }
  return -1;
}

/* Reads the next temporal unit into rd->buf; returns its size, 0 at the end of stream. */
static size_t next_tu(reader *rd) {
  if (rd->ivf) {
    uint8_t h[12];
    size_t n = fread(h, 1, 12, rd->f);
    if (n == 0) return 0;
    if (n != 12) fail("truncated IVF frame header after temporal unit %ld", rd->tu_index);
    uint32_t sz = h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24;
    if (sz == 0 || sz > (256u << 20)) fail("bad IVF frame size %u at temporal unit %ld", sz, rd->tu_index);
    ensure_cap(rd, sz);
    if (fread(rd->buf, 1, sz, rd->f) != sz)
      fail("truncated IVF frame: temporal unit %ld declares %u bytes past the end of the file",
           rd->tu_index, sz);
    rd->tu_index++;
    return sz;
  }
  /* Low-overhead OBU stream (AV1 spec section 5): every OBU has a size field; a temporal
   * unit starts with a temporal delimiter OBU. */
  size_t len = 0;
  for (;;) {
    long pos = ftell(rd->f);
    int hdr = fgetc(rd->f);
    if (hdr == EOF) break;
    int type = (hdr >> 3) & 15, ext = (hdr >> 2) & 1, has_size = (hdr >> 1) & 1;
    if (hdr & 0x80) fail("forbidden bit set in OBU header at byte %ld (not an AV1 OBU stream?)", pos);
    if (!has_size) fail("OBU without size field at byte %ld (Annex B streams are not supported)", pos);
    if (type == 2 && len > 0) { fseek(rd->f, pos, SEEK_SET); break; }
    uint8_t raw[10];
    int nraw = 0;
    raw[nraw++] = (uint8_t)hdr;
    if (ext) {
      int e = fgetc(rd->f);
      if (e == EOF) fail("truncated OBU header at byte %ld", pos);
      raw[nraw++] = (uint8_t)e;
    }
    uint64_t osz;
    int nl;
    if (read_leb128(rd->f, &osz, raw + nraw, &nl) != 1) fail("truncated OBU size at byte %ld", pos);
    nraw += nl;
    if (osz > (256u << 20) || (long)(pos + nraw + osz) > rd->file_size)
      fail("truncated OBU at byte %ld: size %llu past the end of the file", pos, (unsigned long long)osz);
    ensure_cap(rd, len + nraw + osz);
    memcpy(rd->buf + len, raw, nraw);
    len += nraw;
    if (fread(rd->buf + len, 1, osz, rd->f) != osz) fail("truncated OBU at byte %ld", pos);
    len += osz;
  }
  if (len) rd->tu_index++;
  return len;
}

/* ---------------------------------------------------------------- frame records -- */
typedef struct {
  int decode_idx, frame_type, qindex, order_hint, width, height, shown;
  int n, cap;
  av1part_node *nodes;
} frame_rec;

#define MAX_SLOTS 64
static struct { const void *buf; frame_rec *rec; } g_slots[MAX_SLOTS];

static FILE *g_out;
static int g_all_decoded = 0;
static int g_display = 0, g_decoded = 0, g_seq_w = -1, g_seq_h = -1, g_bd = 0;
static long g_nodes_written = 0;
static int g_hidden_dropped = 0; /* decoded frames never shown */
static AV1Decoder *g_pbi = NULL;
static unsigned char *g_bw = NULL, *g_bh = NULL;
static size_t g_map_cap = 0;

static void free_rec(frame_rec *r) {
  if (r) { free(r->nodes); free(r); }
}

static void add_node(void *ctx, const av1part_node *n) {
  frame_rec *r = (frame_rec *)ctx;
  if (r->n == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 1024;
    r->nodes = (av1part_node *)realloc(r->nodes, sizeof(*r->nodes) * r->cap);
    if (!r->nodes) fail("out of memory");
  }
  r->nodes[r->n++] = *n;
}

static void write_header_once(void) {
  static int done = 0;
  if (done) return;
  done = 1;
  fprintf(g_out, "# av1part-labels 1 stream=%s width=%d height=%d bit_depth=%d\n", g_stream,
          g_seq_w, g_seq_h, g_bd);
}

static void write_frame(const frame_rec *r, int display, int existing) {
  write_header_once();
  fprintf(g_out,
          "# frame display=%d decode=%d type=%d qindex=%d order_hint=%d existing=%d "
          "width=%d height=%d nodes=%d\n",
          display, r ? r->decode_idx : -1, r ? r->frame_type : -1, r ? r->qindex : -1,
          r ? r->order_hint : -1, existing, r ? r->width : -1, r ? r->height : -1, r ? r->n : 0);
  if (!r) return;
  for (int i = 0; i < r->n; ++i) {
    const av1part_node *n = &r->nodes[i];
    fprintf(g_out, "%d %d %d %d %d %d %d %d %d\n", display, r->decode_idx, n->x, n->y,
            n->partition, r->frame_type, r->qindex, n->edge, existing);
  }
  g_nodes_written += r->n;
}

static void store_slot(const void *buf, frame_rec *rec) {
  int free_i = -1;
  for (int i = 0; i < MAX_SLOTS; ++i) {
    if (g_slots[i].buf == buf) {
      if (g_slots[i].rec && !g_slots[i].rec->shown) g_hidden_dropped++;
      free_rec(g_slots[i].rec);
      g_slots[i].rec = rec;
      return;
    }
    if (!g_slots[i].buf && free_i < 0) free_i = i;
  }
  if (free_i < 0) fail("internal: too many frame buffers");
  g_slots[free_i].buf = buf;
  g_slots[free_i].rec = rec;
}

static frame_rec *find_slot(const void *buf) {
  for (int i = 0; i < MAX_SLOTS; ++i)
    if (g_slots[i].buf == buf) return g_slots[i].rec;
  return NULL;
}

/* Inspection callback: runs after each frame with tile data is decoded. */
static void on_frame(void *decoder, void *ctx) {
  (void)ctx;
  AV1Decoder *pbi = (AV1Decoder *)decoder;
  AV1_COMMON *cm = &pbi->common;
  const CommonModeInfoParams *mp = &cm->mi_params;
  g_pbi = pbi;
  if (cm->width != cm->superres_upscaled_width)
    fail("frame %d uses superres (coded width %d of %d): partition labels would be on a "
         "downscaled grid; not supported", g_decoded, cm->width, cm->superres_upscaled_width);
  if (g_seq_w < 0) {
    g_seq_w = cm->superres_upscaled_width;
    g_seq_h = cm->superres_upscaled_height;
    g_bd = cm->seq_params->bit_depth;
  }
  if (cm->seq_params->subsampling_x != 1 || cm->seq_params->subsampling_y != 1 ||
      cm->seq_params->monochrome)
    fail("stream is not 4:2:0 (subsampling %d,%d monochrome %d)", cm->seq_params->subsampling_x,
         cm->seq_params->subsampling_y, cm->seq_params->monochrome);

  size_t n = (size_t)mp->mi_rows * mp->mi_cols;
  if (n > g_map_cap) {
    g_map_cap = n;
    g_bw = (unsigned char *)realloc(g_bw, n);
    g_bh = (unsigned char *)realloc(g_bh, n);
    if (!g_bw || !g_bh) fail("out of memory");
  }
  for (int r = 0; r < mp->mi_rows; ++r) {
    for (int c = 0; c < mp->mi_cols; ++c) {
      const MB_MODE_INFO *mi = mp->mi_grid_base[r * mp->mi_stride + c];
      if (!mi) fail("frame %d: no mode info at mi (%d,%d)", g_decoded, r, c);
      g_bw[r * mp->mi_cols + c] = (unsigned char)block_size_wide[mi->bsize];
      g_bh[r * mp->mi_cols + c] = (unsigned char)block_size_high[mi->bsize];
    }
  }
  frame_rec *rec = (frame_rec *)calloc(1, sizeof(*rec));
  if (!rec) fail("out of memory");
  rec->decode_idx = g_decoded++;
  const int ft = cm->current_frame.frame_type;
  rec->frame_type = ft == KEY_FRAME ? 0 : ft == INTRA_ONLY_FRAME ? 2 : 1;
  rec->qindex = cm->quant_params.base_qindex;
  rec->order_hint = (int)cm->current_frame.order_hint;
  rec->width = cm->superres_upscaled_width;
  rec->height = cm->superres_upscaled_height;
  av1part_bsize_map m = { g_bw, g_bh, mp->mi_cols, mp->mi_rows, mp->mi_cols, rec->width,
                          rec->height };
  int bx = 0, by = 0;
  if (av1part_derive_nodes(&m, add_node, rec, &bx, &by) != AV1PART_DERIVE_OK)
    fail("decoded frame %d: block-size map inconsistent at 16x16 node (%d,%d)", rec->decode_idx,
         bx, by);

  if (g_all_decoded) {
    write_frame(rec, cm->show_frame ? g_display : -1, 0);
    if (cm->show_frame) g_display++;
    free_rec(rec);
    return;
  }
  if (cm->show_frame) {
    rec->shown = 1;
    write_frame(rec, g_display++, 0);
  }
  if (cm->show_frame && !cm->showable_frame) {
    free_rec(rec); /* can never be shown again */
    store_slot(cm->cur_frame, NULL);
  } else {
    store_slot(cm->cur_frame, rec);
  }
}

static void on_show_existing(void) {
  if (!g_pbi) fail("show_existing_frame before any decoded frame");
  /* after a show_existing_frame, the shown buffer is the decoder's output frame */
  if (g_pbi->num_output_frames < 1) fail("show_existing_frame without an output frame");
  const void *buf = g_pbi->output_frames[0];
  frame_rec *rec = find_slot(buf);
  if (g_all_decoded) { g_display++; return; }
  if (rec && !rec->shown) {
    rec->shown = 1;
    write_frame(rec, g_display++, 1);
  } else {
    write_frame(NULL, g_display++, 1); /* a repeat: no labels */
  }
}

/* ---------------------------------------------------------------- map mode (tests) -- */
static void print_node(void *ctx, const av1part_node *n) {
  (void)ctx;
  printf("%d %d %d %d\n", n->x, n->y, n->partition, n->edge);
}

static int map_mode(const char *path) {
  g_stream = path;
  FILE *f = fopen(path, "r");
  if (!f) fail("cannot open: %s", strerror(errno));
  int rows, cols, width, height;
  if (fscanf(f, "%d %d %d %d", &rows, &cols, &width, &height) != 4 || rows <= 0 || cols <= 0)
    fail("map: expected 'mi_rows mi_cols width height'");
  unsigned char *bw = malloc((size_t)rows * cols), *bh = malloc((size_t)rows * cols);
  for (int i = 0; i < rows * cols; ++i) {
    int w, h;
    if (fscanf(f, " %dx%d", &w, &h) != 2) fail("map: bad block size token %d", i);
    bw[i] = (unsigned char)w;
    bh[i] = (unsigned char)h;
  }
  fclose(f);
  av1part_bsize_map m = { bw, bh, cols, rows, cols, width, height };
  int bx, by;
  if (av1part_derive_nodes(&m, print_node, NULL, &bx, &by) != AV1PART_DERIVE_OK) {
    printf("inconsistent %d %d\n", bx, by);
    return 3;
  }
  return 0;
}

/* ---------------------------------------------------------------- main -- */
int main(int argc, char **argv) {
  const char *out_path = NULL, *in_path = NULL;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--all-decoded")) g_all_decoded = 1;
    else if (!strcmp(argv[i], "-o") && i + 1 < argc) out_path = argv[++i];
    else if (!strcmp(argv[i], "--map") && i + 1 < argc) return map_mode(argv[++i]);
    else if (!strcmp(argv[i], "--version")) { printf("av1part-labels 1 (%s)\n", aom_codec_version_str()); return 0; }
    else if (argv[i][0] == '-' && argv[i][1]) { fprintf(stderr, "av1part-labels: unknown option %s\n", argv[i]); return 1; }
    else in_path = argv[i];
  }
  if (!in_path) {
    fprintf(stderr, "usage: av1part-labels [--all-decoded] [-o OUT] STREAM.(ivf|obu)\n"
                    "       av1part-labels --map MAPFILE\n");
    return 1;
  }
  g_stream = in_path;
  reader rd = { 0 };
  rd.f = fopen(in_path, "rb");
  if (!rd.f) fail("cannot open: %s", strerror(errno));
  fseek(rd.f, 0, SEEK_END);
  rd.file_size = ftell(rd.f);
  fseek(rd.f, 0, SEEK_SET);
  uint8_t hdr[32];
  size_t nh = fread(hdr, 1, 32, rd.f);
  if (nh >= 4 && !memcmp(hdr, "DKIF", 4)) {
    if (nh != 32) fail("truncated IVF file header");
    if (memcmp(hdr + 8, "AV01", 4)) fail("IVF fourcc is '%.4s', not AV01", (const char *)hdr + 8);
    int hl = hdr[6] | hdr[7] << 8;
    fseek(rd.f, hl, SEEK_SET);
    rd.ivf = 1;
  } else {
    if (nh == 0) fail("empty file");
    fseek(rd.f, 0, SEEK_SET);
    if (((hdr[0] >> 3) & 15) != 2) fail("neither an IVF file nor an OBU stream starting with a temporal delimiter");
  }

  char *tmp = NULL;
  if (out_path) {
    tmp = malloc(strlen(out_path) + 8);
    sprintf(tmp, "%s.tmp", out_path);
    g_out = fopen(tmp, "w");
    if (!g_out) fail("cannot write %s: %s", tmp, strerror(errno));
    g_tmp_out = tmp;
  } else {
    g_out = stdout;
  }

  aom_codec_ctx_t codec;
  aom_codec_dec_cfg_t cfg = { 0 };
  cfg.threads = 1;
  cfg.allow_lowbitdepth = 0;
  if (aom_codec_dec_init(&codec, aom_codec_av1_dx(), &cfg, 0)) fail("cannot initialise the decoder");
  aom_inspect_init ii = { on_frame, NULL };
  if (aom_codec_control(&codec, AV1_SET_INSPECTION_CALLBACK, &ii))
    fail("decoder lacks CONFIG_INSPECTION");

  size_t sz;
  while ((sz = next_tu(&rd)) > 0) {
    const uint8_t *p = rd.buf, *end = rd.buf + sz;
    while (p < end) {
      Av1DecodeReturn adr;
      memset(&adr, 0, sizeof(adr));
      if (aom_codec_decode(&codec, p, (size_t)(end - p), &adr) != AOM_CODEC_OK) {
        const char *d = aom_codec_error_detail(&codec);
        fail("corrupt or unsupported bitstream in temporal unit %ld: %s%s%s", rd.tu_index - 1,
             aom_codec_error(&codec), d ? ": " : "", d ? d : "");
      }
      if (adr.show_existing) on_show_existing();
      if (adr.buf <= p) break; /* no progress: trailing non-frame OBUs */
      p = adr.buf;
    }
  }
  if (g_decoded == 0) fail("no decoded frames");
  write_header_once();
  int hidden = g_hidden_dropped;
  for (int i = 0; i < MAX_SLOTS; ++i)
    if (g_slots[i].rec && !g_slots[i].rec->shown) hidden++;
  fprintf(g_out, "# end decoded=%d displayed=%d nodes=%ld hidden_never_shown=%d\n", g_decoded,
          g_display, g_nodes_written, g_all_decoded ? 0 : hidden);
  aom_codec_destroy(&codec);
  for (int i = 0; i < MAX_SLOTS; ++i) free_rec(g_slots[i].rec);
  if (out_path) {
    if (fclose(g_out) != 0) fail("cannot write %s", tmp);
    if (rename(tmp, out_path) != 0) fail("cannot rename %s: %s", tmp, strerror(errno));
    g_tmp_out = NULL;
  }
  fprintf(stderr, "av1part-labels: %s: %d decoded, %d displayed, %ld nodes\n", in_path, g_decoded,
          g_display, g_nodes_written);
  return 0;
}
