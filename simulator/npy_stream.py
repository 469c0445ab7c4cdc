"""Write a (T, N) float32 .npy file chunk by chunk with plain file writes (no RAM growth with T)."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import numpy as np


class NpyStreamWriter:
    """Sequentially appends rows to a .npy file whose full shape is declared up front."""

    def __init__(self, path: Path, shape: tuple[int, int], dtype: type = np.float32) -> None:
        self.path, self.shape, self.dtype = Path(path), shape, np.dtype(dtype)
        self._rows = 0
        self._fh = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        np.lib.format.write_array_header_1_0(
            self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        )

    def write(self, rows: np.ndarray) -> None:
        """Append rows (k, N); raises if more rows than declared."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.ndim != 2 or rows.shape[1] != self.shape[1] or self._rows + len(rows) > self.shape[0]:
            raise ValueError(f"{self.path}: rows {rows.shape} do not fit the declared shape {self.shape}")
        self._fh.write(rows.tobytes())
        self._rows += len(rows)

    def close(self) -> None:
        """Flush, fsync and check that exactly the declared number of rows was written."""
        if self._fh.closed:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        if self._rows != self.shape[0]:
            raise ValueError(f"{self.path}: wrote {self._rows} rows, declared {self.shape[0]}")

    def __enter__(self) -> NpyStreamWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if et is None:
            self.close()
        else:
            self._fh.close()
