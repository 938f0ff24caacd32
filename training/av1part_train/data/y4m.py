"""Y4M (YUV4MPEG2) reading and writing for the dataset tool.

Only 4:2:0 is accepted (C420, C420jpeg, C420paldv, C420mpeg2, C420p10, C420p12, or no C
tag, which means 4:2:0). Any problem raises :class:`DataError` naming the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .errors import DataError

_CHROMA_420 = {"420", "420jpeg", "420paldv", "420mpeg2", "420p10", "420p12", "420p16"}


@dataclass
class Y4M:
    path: str
    width: int
    height: int
    bit_depth: int
    fps: str
    frame_offsets: list[int] = field(repr=False)  # byte offset of each frame's Y plane
    header: str = field(repr=False, default="")

    @property
    def frames(self) -> int:
        return len(self.frame_offsets)

    @property
    def dtype(self):
        return np.uint8 if self.bit_depth == 8 else np.dtype("<u2")

    @property
    def frame_samples(self) -> int:
        return self.width * self.height * 3 // 2

    def _mm(self):
        if not hasattr(self, "_mmap"):
            self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._mmap

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Y [H,W], U [H/2,W/2], V [H/2,W/2]) of frame i, as uint16 arrays (copies)."""
        if not 0 <= i < self.frames:
            raise DataError(f"{self.path}: frame {i} out of range (the file has {self.frames} frames)")
        bps = 1 if self.bit_depth == 8 else 2
        off = self.frame_offsets[i]
        raw = self._mm()[off: off + self.frame_samples * bps]
        s = np.frombuffer(raw.tobytes(), dtype=self.dtype).astype(np.uint16)
        w, h = self.width, self.height
        y = s[: w * h].reshape(h, w)
        u = s[w * h: w * h + (w // 2) * (h // 2)].reshape(h // 2, w // 2)
        v = s[w * h + (w // 2) * (h // 2):].reshape(h // 2, w // 2)
        if self.bit_depth > 8 and (int(y.max(initial=0)) >> self.bit_depth or int(u.max(initial=0)) >> self.bit_depth
                                   or int(v.max(initial=0)) >> self.bit_depth):
            raise DataError(f"{self.path}: frame {i} has samples above {self.bit_depth}-bit range")
        return y, u, v


def _parse_header(path: str, line: bytes) -> dict:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a Y4M file (header is not ASCII)") from None
    tokens = text.split()
    if not tokens or tokens[0] != "YUV4MPEG2":
        raise DataError(f"{path}: not a Y4M file (no YUV4MPEG2 signature)")
    h = {"C": "420", "F": "30:1", "text": text}
    for t in tokens[1:]:
        h[t[0]] = t[1:]
    return h


def open_y4m(path: str) -> Y4M:
    """Parses and validates a Y4M file: header, chroma format, size, every frame marker."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot open: {e.strerror}") from None
    with f:
        first = f.readline(4096)
        if not first.endswith(b"\n"):
            raise DataError(f"{path}: not a Y4M file (no header line)")
        h = _parse_header(path, first)
        try:
            width, height = int(h["W"]), int(h["H"])
        except (KeyError, ValueError):
            raise DataError(f"{path}: Y4M header lacks a valid W/H") from None
        chroma = h["C"]
        if chroma not in _CHROMA_420:
            kind = {"422": "4:2:2", "444": "4:4:4", "mono": "monochrome", "411": "4:1:1"}.get(
                chroma.split("p")[0], chroma)
            raise DataError(f"{path}: chroma format {kind} (C{chroma}) is not supported; "
                            "only 4:2:0 is (convert with ffmpeg -pix_fmt yuv420p)")
        bit_depth = int(chroma[4:]) if chroma.startswith("420p") else 8
        for t in h["text"].split():
            if t.startswith("XYSCSS="):
                xs = t[len("XYSCSS="):]
                if not xs.startswith("420"):
                    raise DataError(f"{path}: chroma format {xs} is not supported; only 4:2:0 is")
                if xs.startswith("420P") and xs[4:].isdigit():
                    bit_depth = max(bit_depth, int(xs[4:]))
        if bit_depth not in (8, 10, 12):
            raise DataError(f"{path}: bit depth {bit_depth} is not supported (8, 10 or 12)")
        if width <= 0 or height <= 0:
            raise DataError(f"{path}: bad frame size {width}x{height}")
        if width % 2 or height % 2:
            raise DataError(f"{path}: odd frame size {width}x{height}; 4:2:0 blocks need even "
                            "width and height")
        if h.get("I", "p") not in ("p", "?"):
            raise DataError(f"{path}: interlaced Y4M (I{h['I']}) is not supported")
        bps = 1 if bit_depth == 8 else 2
        frame_bytes = width * height * 3 // 2 * bps
        offsets = []
        pos = len(first)
        while pos < size:
            f.seek(pos)
            marker = f.readline(1024)
            if not marker.startswith(b"FRAME") or not marker.endswith(b"\n"):
                raise DataError(f"{path}: bad frame marker at byte {pos} (frame {len(offsets)}); "
                                "corrupt Y4M or a header that does not match the data")
            start = pos + len(marker)
            if start + frame_bytes > size:
                raise DataError(f"{path}: frame {len(offsets)} is truncated ({size - start} of "
                                f"{frame_bytes} bytes); the file size does not match a whole "
                                "number of frames")
            offsets.append(start)
            pos = start + frame_bytes
        if not offsets:
            raise DataError(f"{path}: Y4M file has no frames")
    return Y4M(path=path, width=width, height=height, bit_depth=bit_depth, fps=h["F"],
               frame_offsets=offsets, header=h["text"].strip())


def write_y4m(path: str, frames, width: int, height: int, bit_depth: int, fps: str = "30:1") -> None:
    """Writes frames (iterable of (Y, U, V) integer arrays) to path via path.tmp + rename."""
    c = "420jpeg" if bit_depth == 8 else f"420p{bit_depth}"
    dtype = np.uint8 if bit_depth == 8 else np.dtype("<u2")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps} Ip A1:1 C{c}\n".encode())
        for y, u, v in frames:
            f.write(b"FRAME\n")
            for p in (y, u, v):
                f.write(np.ascontiguousarray(p, dtype=dtype).tobytes())
    os.replace(tmp, path)
