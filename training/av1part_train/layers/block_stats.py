"""Block statistics computed inside the graph: what an encoder's own pruning
looks at, given to a stage head beside the pooled CNN features.

Why: a class-balanced logistic regression on about 30 such numbers
(``baseline.py``) beat every BlockNet we trained at Stage 1 (macro F1 0.709
against 0.650-0.675 on unseen clips) and matched the best at Stage 2. The
decision follows log-variances against qindex over orders of magnitude; the
block tensor is linear in the samples, which a few ReLU layers on a 4x4 cell
grid approximate poorly. Computed in the ONNX graph from the block tensor,
they need no plugin change and no new input.

What (``BlockStats.names``), all from the block tensor's values
(``tensor.py``: ``(s / max - mean) / std``) brought back to 8-bit units, so
that they do not depend on the bit depth or the normalisation:

* ``mean``: the luma mean in [0, 1];
* ``lvar_<region>``: ``log(1 + var)`` of luma over 17 regions: the block,
  its 4 quadrants, its top/bottom/left/right halves, its 4 horizontal and
  4 vertical 16x4 strips (every AV1 partition at 16x16 is a union of these);
* ``lgx``, ``lgy``: ``log(1 + mean |gradient|)`` along x and y, from the
  differences of neighbours inside each 4x4 cell (those the cell-major tensor holds
  without a shuffle);
* with chroma: ``lvar_u``, ``lvar_v`` over the block;
* with ``prev_y``: ``lmad`` (``log(1 + mean |y - prev_y|)``) over the block
  and its quadrants, and ``lvar_diff`` (``log(1 + var(y - prev_y))``).

Linear combinations (split gains) are left to the head's first layer.

How: from the cell-major view ``[N, 16, C * 16]`` (``tensor.to_layout``), the
one a BlockNet stem's patchify builds and a ``cells`` bundle takes as input,
so a fused graph computes the view once for both. Region means are MatMuls
by constant ``[256, R]`` averaging matrices; variances are ``E[z^2] -
E[z]^2`` of the values centred on the block mean (float32 in normalised
units, clamped at 0). The graph is Reshape, Gather,
Mul, Sub, Abs, MatMul, Relu, Add, Concat and one Log: ``compact`` keeps the
part before the first nonlinearity verbatim, like a stem, and collapses the
rest.
"""
from __future__ import annotations

import torch
import torch.nn as nn

CELLS = 16
REGIONS = (["block", "q0", "q1", "q2", "q3", "top", "bottom", "left", "right"]
           + [f"hstrip{i}" for i in range(4)] + [f"vstrip{i}" for i in range(4)])


def region_matrix() -> torch.Tensor:
    """[256, 17]: column k averages region ``REGIONS[k]`` of a plane in cell-major
    order (index ``16 * cell + 4 * i + j`` for pixel ``(4 * (cell // 4) + i, 4 * (cell % 4) + j)``)."""
    m = torch.zeros(256, len(REGIONS), dtype=torch.float64)
    for cell in range(CELLS):
        for i in range(4):
            for j in range(4):
                r, c = 4 * (cell // 4) + i, 4 * (cell % 4) + j
                member = {"block": True, "q0": r < 8 and c < 8, "q1": r < 8 and c >= 8,
                          "q2": r >= 8 and c < 8, "q3": r >= 8 and c >= 8, "top": r < 8, "bottom": r >= 8,
                          "left": c < 8, "right": c >= 8}
                for k, name in enumerate(REGIONS):
                    inside = member[name] if name in member else (
                        r // 4 == int(name[-1]) if name.startswith("hstrip") else c // 4 == int(name[-1]))
                    if inside:
                        m[16 * cell + 4 * i + j, k] = 1.0
    return (m / m.sum(dim=0, keepdim=True)).float()


_REGIONS = region_matrix()


class BlockStats(nn.Module):
    """Cell-major block tensor ``[N, 16, C * 16]`` -> ``[N, num_features]`` statistics.

    ``channels``, ``mean``, ``std``: the bundle's input spec (which channel is
    which, and how it was normalised)."""

    def __init__(self, channels, mean, std):
        super().__init__()
        channels = list(channels)
        if "y" not in channels:
            raise ValueError("block statistics need the y channel")
        self.channels = channels
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.iy = channels.index("y")
        self.chroma = [channels.index(c) for c in ("u", "v") if c in channels]
        self.iprev = channels.index("prev_y") if "prev_y" in channels else None
        self.register_buffer("regions", _REGIONS.clone(), persistent=False)
        self.register_buffer("block_mean", _REGIONS[:, :1].clone(), persistent=False)
        self.register_buffer("quads_mean", _REGIONS[:, :5].clone(), persistent=False)
        # gradients from differences of the flat cell-major luma [N, 256]: y[k+1] - y[k]
        # (x-neighbours when k is not a cell row's last pixel) and y[k+4] - y[k]
        # (y-neighbours when k is not in a cell's last row); the other differences get
        # weight 0. Two 2-D slices: ONNX Runtime copies their rows with memcpy, where
        # the slices of a [N, 16, 4, 4] view were strided copies (7 % of a run).
        k = torch.arange(256)
        gx_w = ((k[:255] % 4) != 3).float()
        gy_w = (((k[:252] % 16) // 4) != 3).float()
        self.register_buffer("gx_mean", (gx_w / gx_w.sum()).reshape(255, 1), persistent=False)
        self.register_buffer("gy_mean", (gy_w / gy_w.sum()).reshape(252, 1), persistent=False)
        names = ["mean"] + [f"lvar_{r}" for r in REGIONS] + ["lgx", "lgy"]
        names += [f"lvar_{c}" for c in ("u", "v") if c in channels]
        if self.iprev is not None:
            names += ["lmad_block"] + [f"lmad_q{i}" for i in range(4)] + ["lvar_diff"]
        self.names = names

    @property
    def num_features(self) -> int:
        return len(self.names)

    def _scale(self, ch: int) -> float:
        """Normalised units -> 8-bit units."""
        return 255.0 * self.std[ch]

    def _scaled_var(self, z: torch.Tensor, avg: torch.Tensor, scale: float) -> torch.Tensor:
        # centred on the block mean first: E[z^2] - E[z]^2 of raw values cancels in float32
        # (a flat block's log-variance came out 0.01 instead of 0). A flat region inside a
        # textured block still leaves up to ~0.005: far below a single 8-bit level's 0.08.
        z = z - z @ self.block_mean
        m1 = z @ avg
        return (scale * scale) * torch.relu(z * z @ avg - m1 * m1)

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        c = len(self.channels)
        planes = cells.reshape(-1, CELLS, c, 16)
        y = planes[:, :, self.iy].reshape(-1, 256)
        sy = self._scale(self.iy)
        mean = torch.relu((y @ self.block_mean) * self.std[self.iy] + self.mean[self.iy])
        # every other feature is log(1 + a) of a non-negative a: the a's are concatenated
        # and go through one Log, so that a compacted graph has two sources for the heads
        # (mean, the Log) instead of one MatMul per statistic and stage
        args = [self._scaled_var(y, self.regions, sy)]
        gx = torch.abs(y[:, 1:] - y[:, :255]) @ self.gx_mean
        gy = torch.abs(y[:, 4:] - y[:, :252]) @ self.gy_mean
        args.append(sy * torch.cat([gx, gy], dim=1))
        for ch in self.chroma:
            args.append(self._scaled_var(planes[:, :, ch].reshape(-1, 256), self.block_mean, self._scale(ch)))
        if self.iprev is not None:
            p = planes[:, :, self.iprev].reshape(-1, 256)
            # y - prev_y in [0, 1] units (the two channels may be normalised differently)
            d = (y * self.std[self.iy] - p * self.std[self.iprev]) + (self.mean[self.iy] - self.mean[self.iprev])
            args.append(255.0 * (torch.abs(d) @ self.quads_mean))
            args.append(self._scaled_var(d, self.block_mean, 255.0))
        return torch.cat([mean, torch.log(1.0 + torch.cat(args, dim=1))], dim=1)

    def macs(self, cells: torch.Tensor) -> tuple[int, int]:
        """MatMuls by the averaging matrices (the elementwise work is about as much again)."""
        n = 2 * 256 * len(REGIONS) + 255 + 252
        n += len(self.chroma) * 2 * 256
        if self.iprev is not None:
            n += 256 * 5 + 2 * 256
        return n, n


def patchify(x: torch.Tensor, c: int) -> torch.Tensor:
    """Planar ``[N, C, 16, 16]`` -> cell-major ``[N, 16, C * 16]`` (``tensor.to_layout``).
    ``c`` is a Python int, so that an exported graph has constant shapes (no Shape/Gather)."""
    return x.reshape(-1, c, 4, 4, 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(-1, CELLS, c * 16)
