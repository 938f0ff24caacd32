/* See derive.h. */
#include "derive.h"

#define IN_FRAME(m, r, c) ((r) < (m)->mi_rows && (c) < (m)->mi_cols)
#define BW(m, r, c) ((m)->bw[(r) * (m)->stride + (c)])
#define BH(m, r, c) ((m)->bh[(r) * (m)->stride + (c)])

/* The leaf rectangles (in mi, relative to the node) of each non-split partition of 16x16. */
typedef struct { int r, c, h, w; } rect;
typedef struct { int n; rect rc[4]; } layout;
static const layout kLayouts[10] = {
  /* NONE   */ { 1, { { 0, 0, 4, 4 } } },
  /* HORZ   */ { 2, { { 0, 0, 2, 4 }, { 2, 0, 2, 4 } } },
  /* VERT   */ { 2, { { 0, 0, 4, 2 }, { 0, 2, 4, 2 } } },
  /* SPLIT  */ { 0, { { 0 } } },
  /* HORZ_A */ { 3, { { 0, 0, 2, 2 }, { 0, 2, 2, 2 }, { 2, 0, 2, 4 } } },
  /* HORZ_B */ { 3, { { 0, 0, 2, 4 }, { 2, 0, 2, 2 }, { 2, 2, 2, 2 } } },
  /* VERT_A */ { 3, { { 0, 0, 2, 2 }, { 2, 0, 2, 2 }, { 0, 2, 4, 2 } } },
  /* VERT_B */ { 3, { { 0, 0, 4, 2 }, { 0, 2, 2, 2 }, { 2, 2, 2, 2 } } },
  /* HORZ_4 */ { 4, { { 0, 0, 1, 4 }, { 1, 0, 1, 4 }, { 2, 0, 1, 4 }, { 3, 0, 1, 4 } } },
  /* VERT_4 */ { 4, { { 0, 0, 4, 1 }, { 0, 1, 4, 1 }, { 0, 2, 4, 1 }, { 0, 3, 4, 1 } } },
};

/* Does the in-frame part of the node at (r0, c0) match partition p exactly? */
static int layout_matches(const av1part_bsize_map *m, int r0, int c0, int p) {
  if (p == AV1PART_SPLIT) { /* four 8x8 quadrants, each coded as 8x8 or smaller */
    for (int r = r0; r < r0 + 4; ++r)
      for (int c = c0; c < c0 + 4; ++c)
        if (IN_FRAME(m, r, c) && (BW(m, r, c) > 8 || BH(m, r, c) > 8)) return 0;
    return 1;
  }
  const layout *l = &kLayouts[p];
  for (int i = 0; i < l->n; ++i) {
    const rect *q = &l->rc[i];
    for (int r = r0 + q->r; r < r0 + q->r + q->h; ++r)
      for (int c = c0 + q->c; c < c0 + q->c + q->w; ++c)
        if (IN_FRAME(m, r, c) && (BW(m, r, c) != 4 * q->w || BH(m, r, c) != 4 * q->h))
          return 0;
  }
  return 1;
}

static int node_exists(const av1part_bsize_map *m, int r0, int c0) {
  const int ar = r0 & ~7, ac = c0 & ~7; /* aligned 32x32 */
  for (int r = ar; r < ar + 8; ++r)
    for (int c = ac; c < ac + 8; ++c)
      if (IN_FRAME(m, r, c) && (BW(m, r, c) > 16 || BH(m, r, c) > 16)) return 0;
  return 1;
}

/* The partition of the node at (r0, c0), from its top-left block and two probes. */
static int node_partition(const av1part_bsize_map *m, int r0, int c0) {
  const int w = BW(m, r0, c0), h = BH(m, r0, c0);
  const int has_bottom = IN_FRAME(m, r0 + 2, c0), has_right = IN_FRAME(m, r0, c0 + 2);
  if (w == 16 && h == 16) return AV1PART_NONE;
  if (w == 16 && h == 4) return AV1PART_HORZ_4;
  if (w == 4 && h == 16) return AV1PART_VERT_4;
  if (w == 16 && h == 8) {
    if (!has_bottom) return AV1PART_HORZ;
    return (BW(m, r0 + 2, c0) == 16 && BH(m, r0 + 2, c0) == 8) ? AV1PART_HORZ : AV1PART_HORZ_B;
  }
  if (w == 8 && h == 16) {
    if (!has_right) return AV1PART_VERT;
    return (BW(m, r0, c0 + 2) == 8 && BH(m, r0, c0 + 2) == 16) ? AV1PART_VERT : AV1PART_VERT_B;
  }
  /* top-left quadrant is 8x8 or smaller */
  if (has_right && BW(m, r0, c0 + 2) == 8 && BH(m, r0, c0 + 2) == 16) return AV1PART_VERT_A;
  if (has_bottom && BW(m, r0 + 2, c0) == 16 && BH(m, r0 + 2, c0) == 8) return AV1PART_HORZ_A;
  return AV1PART_SPLIT;
}

int av1part_derive_nodes(const av1part_bsize_map *m,
                         void (*emit)(void *ctx, const av1part_node *n), void *ctx,
                         int *bad_x, int *bad_y) {
  for (int r0 = 0; r0 < m->mi_rows; r0 += 4) {
    for (int c0 = 0; c0 < m->mi_cols; c0 += 4) {
      if (!node_exists(m, r0, c0)) continue;
      const int p = node_partition(m, r0, c0);
      if (!layout_matches(m, r0, c0, p)) {
        if (bad_x) *bad_x = 4 * c0;
        if (bad_y) *bad_y = 4 * r0;
        return AV1PART_DERIVE_INCONSISTENT;
      }
      av1part_node n;
      n.x = 4 * c0;
      n.y = 4 * r0;
      n.partition = p;
      n.edge = (n.x + 16 > m->width || n.y + 16 > m->height) ? 1 : 0;
      emit(ctx, &n);
    }
  }
  return AV1PART_DERIVE_OK;
}
