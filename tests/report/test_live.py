"""The live view: plain lines only on change and at most every interval; in-place redraw on a TTY."""

from __future__ import annotations

import io
from pathlib import Path

from agent.views.live import LiveSlot, LiveView, batch_eta_s
from agent.views.status import SlotProgress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _view(run, tty: bool) -> tuple[LiveView, io.StringIO, Clock]:
    buf, clock = io.StringIO(), Clock()
    view = LiveView(run.files, 4, buf, interval_s=30.0, clock=clock, tty=tty)
    plans = [(r.iteration, r.slot, run.files.slot_dir(r.iteration, r.slot)) for r in run.results if r.batch == 3]
    view.start_batch(3, plans)
    return view, buf, clock


def test_plain_view_prints_only_when_something_changed(synth) -> None:
    view, buf, clock = _view(synth, tty=False)
    view.tick()
    clock.t = 40
    view.tick()  # nothing changed: no new line
    assert buf.getvalue().count("\n") == 1
    assert "s0 queued | s1 queued | s2 queued | s3 queued | ETA ?" in buf.getvalue()


def test_plain_view_waits_the_interval_before_the_next_line(synth) -> None:
    view, buf, clock = _view(synth, tty=False)
    view.tick()
    synth.write_running(9, 0, 100, 1000, 10)
    clock.t = 5
    view.tick()  # changed, but too soon
    assert buf.getvalue().count("\n") == 1
    clock.t = 31
    view.tick()
    last = buf.getvalue().splitlines()[-1]
    assert last.startswith("[live] batch 3/4 (iterations 9-12): s0 train 10% | s1 queued")
    assert "ETA" in last and "ETA ?" not in last


def test_plain_view_closes_the_batch_with_each_slot_result(synth) -> None:
    view, buf, clock = _view(synth, tty=False)
    for r in (r for r in synth.results if r.batch == 3):
        synth.write_slot(r)
        view.slot_finished(r)
    clock.t = 125
    view.end_batch()
    last = buf.getvalue().splitlines()[-1]
    assert last.startswith("[live] batch 3/4 trained in 2m05s: s0 done conn_R2=0.910")
    assert last.count("done conn_R2=") == 4


def test_tty_view_redraws_the_same_block_in_place(synth) -> None:
    view, buf, _ = _view(synth, tty=True)
    view.tick()
    view.tick()
    out = buf.getvalue()
    assert out.count("\x1b[5F") == 1  # second draw moved up over the 5 lines of the first
    assert out.count("\x1b[2K") == 10


def test_batch_eta_adds_a_slot_length_per_wave_of_queued_slots() -> None:
    def running(done: int) -> LiveSlot:
        p = SlotProgress(stage="train", done=done, total=100, percent=done, elapsed_s=float(done))
        return LiveSlot(iteration=1, slot=0, out_dir=Path("."), state="running", progress=p)

    queued = LiveSlot(iteration=2, slot=1, out_dir=Path("."))
    assert batch_eta_s([running(50), running(20)]) == 80.0
    assert batch_eta_s([running(50), queued]) == 50.0 + 100.0
    assert batch_eta_s([queued]) is None
