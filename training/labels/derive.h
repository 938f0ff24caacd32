/* av1part label derivation: 16x16 partition nodes from a block-size map.
 *
 * The map is the decoder's mode-info grid in 4x4 units ("mi"): for every in-frame mi,
 * the width and height in pixels of the coded block covering it.
 *
 * A 16x16 node exists where the partition tree reached a 16x16 square, i.e. its aligned
 * 32x32 ancestor was SPLIT (which needs every larger ancestor split too). Equivalently:
 * no in-frame block inside the aligned 32x32 is wider or taller than 16. (32x32
 * HORZ_A/B, VERT_A/B contain 16x16 leaves but also a 32x16/16x32 block; 32x32 HORZ_4 and
 * VERT_4 give 32x8/8x32; any non-split larger ancestor leaves blocks >= 32 in the region.)
 *
 * The node's partition follows from the blocks inside it (libaom PARTITION_TYPE numbers).
 * Every derived partition is checked against the full layout it implies; a map that does
 * not match any partition is reported as inconsistent (AV1PART_DERIVE_INCONSISTENT). */
#ifndef AV1PART_DERIVE_H_
#define AV1PART_DERIVE_H_

enum {
  AV1PART_NONE = 0, AV1PART_HORZ = 1, AV1PART_VERT = 2, AV1PART_SPLIT = 3,
  AV1PART_HORZ_A = 4, AV1PART_HORZ_B = 5, AV1PART_VERT_A = 6, AV1PART_VERT_B = 7,
  AV1PART_HORZ_4 = 8, AV1PART_VERT_4 = 9
};

#define AV1PART_DERIVE_OK 0
#define AV1PART_DERIVE_INCONSISTENT (-1)

typedef struct {
  int x, y;      /* luma pixels of the node's top-left corner */
  int partition; /* 0..9 */
  int edge;      /* 1 if the 16x16 node reaches past the frame edge */
} av1part_node;

/* Block dimensions in pixels at mi (r, c), 0 <= r < mi_rows, 0 <= c < mi_cols. */
typedef struct {
  const unsigned char *bw, *bh; /* row-major, `stride` entries per row */
  int stride, mi_rows, mi_cols;
  int width, height; /* frame size in pixels (for the edge flag) */
} av1part_bsize_map;

/* Calls `emit` for every 16x16 node in raster order (by 16x16 rows, then columns).
 * Returns AV1PART_DERIVE_OK, or AV1PART_DERIVE_INCONSISTENT with *bad_x, *bad_y set. */
int av1part_derive_nodes(const av1part_bsize_map *m,
                         void (*emit)(void *ctx, const av1part_node *n), void *ctx,
                         int *bad_x, int *bad_y);

#endif
