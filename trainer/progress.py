"""Progress over training iterations: a tqdm bar on a terminal, a plain line every ~10% otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts completed iterations out of ``total``; ``bar=None`` picks tqdm when stderr is a TTY."""

    def __init__(self, total: int, desc: str = "train", bar: bool | None = None, stream: TextIO | None = None) -> None:
        self.total = max(1, int(total))
        self.desc = desc
        self.stream = stream or sys.stderr
        self.done = 0
        self._next_pct = 10
        self._t0 = time.perf_counter()
        use_bar = self.stream.isatty() if bar is None else bar
        self._bar = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix: float) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            return
        pct = 100 * self.done // self.total
        if pct >= self._next_pct:
            elapsed = time.perf_counter() - self._t0
            extra = " ".join(f"{k}={v:.4g}" for k, v in postfix.items())
            print(f"{self.desc}: {self.done}/{self.total} ({pct}%) {elapsed:.0f}s {extra}".rstrip(), file=self.stream)
            self.stream.flush()
            self._next_pct = (pct // 10 + 1) * 10

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
