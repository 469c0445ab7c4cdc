"""The batch cycle (PROTOCOL.md section 3) over the journal: propose, train, collect, analyse, apply.

Every step is journaled before the next begins, and each step first asks the journal whether it
already happened, so ``run()`` after a crash continues where the last run stopped: finished
training is never re-run and a recorded LLM reply is never paid for again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from agent import protocol
from agent.config_policy import SlotTemplate, load_slot_template, slot_dataset, write_slot_config
from agent.events import (
    AnalysisApplied,
    AnalysisPending,
    ConfigsApplied,
    LlmResponse,
    MemoryRead,
    ReplyAccepted,
    ReviewDone,
    ReviewPause,
    RunFinished,
    SlotFinished,
    SlotSubmitted,
)
from agent.events import ReplyRejected as RejectedReply
from agent.executors.base import Executor, JobHandle, JobOutcome, SlotJob
from agent.executors.records import write_slot_record
from agent.journal import Journal
from agent.llm.base import ImageInput, LLMBackend, LLMRequest
from agent.llm.transcripts import kept_text
from agent.prompts import (
    BatchPromptInput,
    Instructions,
    RunValues,
    StartPromptInput,
    render_batch_prompt,
    render_reask_prompt,
    render_start_prompt,
)
from agent.reply import ReplyContext, ReplyRejected, parse_reply, resolve_proposals
from agent.reply_check import PlannedSlot
from agent.run_files import RunFiles, render_analysis, write_controller_files
from agent.run_state import RunState
from agent.views.live import LiveView
from agent.views.plots import plot_block_tree
from experiment.exploration import Seeds, SlotResult, block_of, block_range, digest_trajectory
from experiment.records import R2_LOG, SLOT_IMAGES, RecordError, read_metrics, read_r2_log

LIVE_TICK_S = 5.0  # how often the live view refreshes while slots train
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # a larger slot image is left out of the prompt (the API's per-image limit)
MAX_REASK_ERRORS = 40  # errors journaled and re-sent per rejection; the rest are counted in one line


class RunPaused(RuntimeError):
    """The run stopped in a resumable state (analysis pending, review pause); one line saying how to go on."""


class RunSettings(BaseModel):
    """What one controller invocation was asked to do."""

    model_config = ConfigDict(extra="forbid")

    run_dir: Path
    config_path: Path
    instructions_name: str
    n_iterations: int
    llm: str
    review: bool = False
    trainer_iterations: int | None = None  # forwarded to trainer.slot --iterations (quick runs)
    slot_command: list[str] | None = None  # replaces `python -m trainer.slot` (container wrappers, tests)


class Controller:
    """Drives one run directory; all decisions come from the journal and the LLM backend."""

    def __init__(
        self,
        settings: RunSettings,
        instructions: Instructions,
        backend: LLMBackend,
        executor: Executor,
        *,
        journal: Journal,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.s = settings
        self.instructions = instructions
        self.profile = instructions.profile
        self.backend = backend
        self.executor = executor
        self.journal = journal
        self.files = RunFiles(settings.run_dir)
        self.template: SlotTemplate = load_slot_template(self.files.base_config)
        self.claude = self.template.config.claude
        self._state = RunState(n_slots=self.claude.n_slots)  # the config's batch size for journals without one
        self._folded = 0  # journal events folded into _state so far
        self.name = self.files.name
        self.live = LiveView(self.files, self.n_batches)
        self.log = log or self.live.write

    # ------------------------------------------------------------------ derived state
    @property
    def state(self) -> RunState:
        """Where the run stands, reduced from the journal as it is now (every resume decision reads this).

        The journal only grows, so only the events appended since the last call are folded in."""
        events = self.journal.events
        self._state.fold(events[self._folded :])
        self._folded = len(events)
        return self._state

    # the run's size, as the journal recorded it (agent.run appends this invocation's start before the controller runs)
    @property
    def n_slots(self) -> int:
        return self.state.batch_size

    @property
    def n_batches(self) -> int:
        return self.state.n_batches

    @property
    def planned_iterations(self) -> int:
        """Iterations the batches hold (the last batch is full)."""
        return self.state.planned_iterations

    def batch_iterations(self, batch: int) -> list[int]:
        return self.state.batch_iterations(batch)

    def results(self) -> list[SlotResult]:
        return self.state.results

    def planned(self, batch: int) -> list[PlannedSlot]:
        plan = self.state.plan(batch)
        if plan is None:
            raise RuntimeError(f"journal: no accepted plan for batch {batch}")
        return plan

    def is_block_end(self, batch: int) -> bool:
        n = self.claude.n_iter_block
        return any(it % n == 0 for it in self.batch_iterations(batch)) or batch == self.n_batches

    # ------------------------------------------------------------------ the cycle
    def run(self) -> None:
        if 0 not in self.state.analysis_applied:
            self.files.init_memory(self.s.instructions_name)
            self.exchange(batch=0)
            self.apply_analysis(batch=0)
        for batch in range(1, self.n_batches + 1):
            if batch in self.state.analysis_applied:
                continue
            self.log(f"== batch {batch}/{self.n_batches}: iterations {self._span(batch)}")
            if batch not in self.state.configs_applied:
                self.apply_configs(batch)
            self.run_slots(batch)
            self.exchange(batch=batch)
            self.apply_analysis(batch=batch)
            self.review_pause(batch)
        if not self.state.finished:
            self.journal.append(RunFinished(n_iterations=len(self.results())))
        self.log(f"run finished: {len(self.results())} iterations in {self.s.run_dir}")

    def _span(self, batch: int) -> str:
        its = self.batch_iterations(batch)
        return f"{its[0]}-{its[-1]}"

    # ------------------------------------------------------------------ step: configs
    def apply_configs(self, batch: int) -> None:
        """Write the slot configs ``{name}_{SS}.yaml`` and the per-iteration snapshots."""
        for p in self.planned(batch):
            for path in (self.files.slot_config(p.slot), self.files.iteration_config(p.iteration, p.slot)):
                write_slot_config(self.template.text, self.name, p.slot, p.iteration, p.trainable, path)
        self.journal.append(ConfigsApplied(batch=batch))

    # ------------------------------------------------------------------ step: train
    def slot_command(self, config: Path, out: Path, data: Path) -> list[str]:
        """The slot job: ``python -m trainer.slot`` (or the configured replacement) with its paths."""
        prefix = self.s.slot_command or [sys.executable, "-m", "trainer.slot"]
        cmd = [*prefix, "--config", str(config), "--out", str(out), "--data-dir", str(data)]
        if self.s.trainer_iterations:
            cmd += ["--iterations", str(self.s.trainer_iterations)]
        return cmd

    def run_slots(self, batch: int) -> None:
        """Submit what is not submitted, re-attach to what is running, collect every outcome."""
        handles: dict[int, JobHandle] = {}
        state = self.state
        for p in self.planned(batch):
            if p.iteration in state.finished_slots:
                continue
            submitted = state.submitted.get(p.iteration)
            if submitted is not None:
                handle = submitted.handle
                if self.executor.reattach(handle):
                    self.log(f"   slot {p.slot} (iteration {p.iteration}): re-attached to job {handle.job_id}")
                    handles[p.iteration] = handle
                    continue
            handles[p.iteration] = self._submit(p)
        if not handles:
            return
        by_name = {h.name: it for it, h in handles.items()}
        plans = {p.iteration: p for p in self.planned(batch)}
        self.live.start_batch(
            batch, [(p.iteration, p.slot, self.files.slot_dir(p.iteration, p.slot)) for p in plans.values()]
        )

        def finished(handle: JobHandle, outcome: JobOutcome) -> None:
            it = by_name[handle.name]
            if it not in self.state.finished_slots:
                self.live.slot_finished(self._collect(plans[it], outcome))

        pending = list(handles.values())
        while pending:
            done = self.executor.wait(pending, timeout_s=LIVE_TICK_S, on_update=finished)
            pending = [h for h in pending if h.name not in done]
            self.live.tick()
        self.live.end_batch()

    def slot_job(self, p: PlannedSlot) -> SlotJob:
        """The job of a planned slot (the same at submission and when its result is recorded)."""
        out = self.files.slot_dir(p.iteration, p.slot)
        data = self.files.data_dir(slot_dataset(self.name, p.slot))
        config = self.files.iteration_config(p.iteration, p.slot)
        return SlotJob(name=out.name, command=self.slot_command(config, out, data), out_dir=out, cwd=Path.cwd())

    def _submit(self, p: PlannedSlot) -> JobHandle:
        job = self.slot_job(p)
        job.out_dir.mkdir(parents=True, exist_ok=True)
        handle = self.executor.submit(job)
        self.journal.append(SlotSubmitted(iteration=p.iteration, slot=p.slot, handle=handle))
        self.log(f"   slot {p.slot} (iteration {p.iteration}): submitted as {handle.backend} job {handle.job_id}")
        return handle

    def _collect(self, p: PlannedSlot, outcome: JobOutcome) -> SlotResult:
        out = self.files.slot_dir(p.iteration, p.slot)
        result = collect_slot_result(p, out, outcome, self.claude.time_limit_min)
        # recorded before the journal, so a controller killed in between records it again on resume
        write_slot_record(self.files.slot_records, self.slot_job(p), outcome)
        self.journal.append(SlotFinished(iteration=p.iteration, result=result))
        if result.status == "completed" and result.metrics is not None:
            m = result.metrics
            self.log(
                f"   slot {p.slot} (iteration {p.iteration}): conn_R2={m.connectivity_R2:.3f} tau_R2={m.tau_R2:.3f} "
                f"V_rest_R2={m.V_rest_R2:.3f} cluster={m.cluster_accuracy:.3f} ({m.training_time_min:.1f} min)"
            )
        else:
            self.log(f"   slot {p.slot} (iteration {p.iteration}): FAILED: {result.failure_reason}")
        return result

    # ------------------------------------------------------------------ step: analyse
    def reply_context(self, batch: int) -> ReplyContext:
        results = self.results()
        next_its = self.batch_iterations(batch + 1) if batch < self.n_batches else []
        n = self.claude.n_iter_block
        return ReplyContext(
            is_start=batch == 0,
            batch_results=[r for r in results if r.batch == batch],
            all_results=results,
            next_iterations=next_its,
            next_starts_block=bool(next_its) and (next_its[0] - 1) % n == 0,
            block=block_of(self.batch_iterations(batch)[0], n) if batch else 1,
            base_trainable=self.template.trainable,
            ucb_c=self.claude.ucb_c,
            n_iter_block=n,
            baseline_batches=self.claude.baseline_batches,
            time_limit_min=self.claude.time_limit_min,
            instruction_text=self.system_text,
            profile=self.profile,
        )

    @property
    def system_text(self) -> str:
        """The instruction pair rendered with this run's effective values (the ones the checks enforce)."""
        values = RunValues.of(
            self.claude,
            n_iterations=self.planned_iterations,
            n_slots=self.n_slots,
            trainer_iterations=self.s.trainer_iterations,
        )
        return self.instructions.for_run(values).system_text

    def build_prompt(self, batch: int, memory_text: str, user_input: str | None) -> tuple[str, list[ImageInput]]:
        if batch == 0:
            prompt = render_start_prompt(
                StartPromptInput(
                    run_name=self.name,
                    n_iterations=self.planned_iterations,
                    n_iter_block=self.claude.n_iter_block,
                    n_slots=self.n_slots,
                    baseline_batches=self.claude.baseline_batches,
                    base_config_name=self.files.base_config.name,
                    base_config_text=self.template.text,
                    config_files=[self.files.slot_config(s).name for s in range(self.n_slots)],
                    memory_text=memory_text,
                    user_input=user_input,
                    profile=self.profile,
                )
            )
            return prompt, []
        results = self.results()
        batch_results = sorted((r for r in results if r.batch == batch), key=lambda r: r.slot)
        attached = []  # each completed slot's main image, then the extra images the slot wrote
        for r in batch_results:
            main = self._main_image(r.iteration, r.slot) if r.status == "completed" else None
            if main is not None:
                folder = self.files.slot_dir(r.iteration, r.slot)
                extra = [k for k in self.claude.extra_images if k != main and self._image_fits(folder / SLOT_IMAGES[k])]
                attached += [(r, kind) for kind in (main, *extra)]
        images = [
            ImageInput(
                path=self.files.slot_dir(r.iteration, r.slot) / SLOT_IMAGES[kind],
                label=f"slot {r.slot} (iteration {r.iteration}) {kind}",
            )
            for r, kind in attached
        ]
        prompt = render_batch_prompt(
            BatchPromptInput(
                run_name=self.name,
                results=results,
                batch_start=self.batch_iterations(batch)[0],
                n_iterations=self.planned_iterations,
                n_iter_block=self.claude.n_iter_block,
                n_slots=self.n_slots,
                baseline_batches=self.claude.baseline_batches,
                ucb_c=self.claude.ucb_c,
                ucb_reward=self.claude.ucb_reward,
                time_limit_min=self.claude.time_limit_min,
                memory_text=memory_text,
                user_input=user_input,
                attached=[(r.slot, kind) for r, kind in attached],
                profile=self.profile,
            )
        )
        return prompt, images

    def _main_image(self, iteration: int, slot: int) -> str | None:
        """The kind of the slot's main image: ``claude.slot_image``, else activity.png; None when neither fits."""
        kinds = dict.fromkeys([self.claude.slot_image, "activity"])
        folder = self.files.slot_dir(iteration, slot)
        return next((kind for kind in kinds if self._image_fits(folder / SLOT_IMAGES[kind])), None)

    def _image_fits(self, path: Path) -> bool:
        """An image file exists and is small enough to send; an oversized one is left out, with a log line."""
        if not path.is_file():
            return False
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            self.log(f"   {path}: {size:,} bytes, over the limit of {MAX_IMAGE_BYTES:,}; left out of the prompt")
            return False
        return True

    def exchange(self, batch: int) -> None:
        """One analysis exchange: prompt, validate, re-ask with the exact errors, accept or pause."""
        state = self.state
        if batch in state.accepted:
            return
        ctx = self.reply_context(batch)
        read = state.memory_reads.get(batch)
        if read is None:
            user_input = self.files.read_user_input()
            read = self.journal.append(MemoryRead(batch=batch, text=self.files.read_memory(), user_input=user_input))
        answered, answered_images = self.build_prompt(batch, read.text, read.user_input)
        prompt, images = answered, answered_images
        purpose = "start" if batch == 0 else "batch"
        base_id = "start" if batch == 0 else f"batch-{batch:03d}"
        rejected = state.rejected.get(batch, [])
        attempt = len(rejected)
        if rejected:  # resuming inside a re-ask sequence: ask again with the last errors
            last = rejected[-1]
            previous = state.responses.get(last.call_id)
            shown = previous.reask_shown() if previous else ""
            prompt, images = render_reask_prompt(last.errors, shown, answered), answered_images
        budget = attempt + self.claude.max_reasks + 1
        while attempt < budget:
            call_id = base_id if attempt == 0 else f"{base_id}-reask-{attempt}"
            text = self._reply_text(batch, call_id, purpose if attempt == 0 else "reask", prompt, images, ctx)
            reply = parse_reply(text)
            try:
                planned = resolve_proposals(reply, ctx)  # validates; raises with every error
            except ReplyRejected as rejection:
                errors = cap_errors(rejection.errors)
                self.journal.append(RejectedReply(batch=batch, call_id=call_id, errors=errors))
                self.log(f"   analysis {call_id}: reply rejected ({len(rejection.errors)} errors): {errors[0]}")
                response = self.journal.last(LlmResponse, call_id=call_id)
                shown = response.reask_shown() if response is not None else text
                prompt, images = render_reask_prompt(errors, shown, answered), answered_images
                attempt += 1
                continue
            self.journal.append(
                ReplyAccepted(
                    source_batch=batch,
                    for_batch=batch + 1,
                    call_id=call_id,
                    entries="\n\n".join(e.text.strip("\n") for e in reply.entries),
                    memory=reply.memory,
                    planned=planned,
                )
            )
            self.log(f"   analysis {call_id}: reply accepted")
            return
        self.journal.append(AnalysisPending(batch=batch))
        raise RunPaused(
            f"{self.s.run_dir}: batch {batch}: the LLM's reply was rejected {self.claude.max_reasks + 1} times "
            f"(see journal.jsonl); fix the instructions or memory.md and run again with --resume"
        )

    def _reply_text(
        self,
        batch: int,
        call_id: str,
        purpose: str,
        prompt: str,
        images: list[ImageInput],
        ctx: ReplyContext,
    ) -> str:
        done = self.state.responses.get(call_id)
        if done is not None:
            return done.served_text()
        request = LLMRequest(
            call_id=call_id,
            purpose=purpose,  # type: ignore[arg-type]
            system=self.system_text,
            prompt=prompt,
            images=images,
            model=self.claude.model,
            max_tokens=self.claude.max_tokens,
            context={"reply_context": ctx.model_dump(mode="json")},
        )
        response = self.backend.complete(request)
        kept, digest = kept_text(response.text)  # an oversized reply: its hash, size and excerpt only
        self.journal.append(
            LlmResponse(
                batch=batch,
                call_id=call_id,
                text=kept,
                text_digest=digest,
                backend=response.backend,
                usage=response.usage,
                cost_usd=response.cost_usd,
                request_id=response.request_id,
            )
        )
        return response.text

    # ------------------------------------------------------------------ step: apply
    def apply_analysis(self, batch: int) -> None:
        """analysis.md, memory.md, ucb_scores.txt, slot configs of the next batch; block end."""
        state = self.state
        accepted = state.accepted.get(batch)
        assert accepted is not None
        results = state.results
        self.files.write_analysis(
            render_analysis(state.analysis_entries(), self.name, self.claude.n_iter_block, self.n_slots)
        )
        read = state.memory_reads.get(batch)
        user_input = read.user_input if read else None
        write_controller_files(
            self.files,
            results,
            accepted.memory,
            self.claude,
            n_iterations=self.planned_iterations,
            user_input=user_input,
            batch=batch,
            profile=self.profile,
        )
        if user_input is not None:
            self.files.archive_user_input(batch)
        if batch and self.is_block_end(batch):
            block = block_of(self.batch_iterations(batch)[0], self.claude.n_iter_block)
            self.files.end_block(block)
            plot_block_tree(results, block, self.files.block_tree_png(block), c=self.claude.ucb_c, profile=self.profile)
            first, last = block_range(block, self.claude.n_iter_block)
            done = self.batch_iterations(batch)[-1]
            how = "ended" if done >= last else f"closed at the end of the run (iterations {first}-{done} of {last})"
            self.log(f"   block {block} {how}; memory snapshot and tree plot written")
        if batch < self.n_batches:
            self.apply_configs(batch + 1)
        self.journal.append(AnalysisApplied(batch=batch))

    # ------------------------------------------------------------------ step: review
    def review_pause(self, batch: int) -> None:
        state = self.state
        if not self.s.review or batch >= self.n_batches or batch in state.reviews_done:
            return
        summary = self.files.batch_summary(self.results(), batch)
        if sys.stdin is not None and sys.stdin.isatty():
            self.log(summary)
            answer = input("Review memory.md (and write user_input.md if you like); Enter continues, q stops: ")
            if answer.strip().lower().startswith("q"):
                self.journal.append(ReviewPause(batch=batch))  # status shows the pause; the resume ends it
                raise RunPaused(f"{self.s.run_dir}: stopped for review after batch {batch}; run again with --resume")
            self.journal.append(ReviewDone(batch=batch))
            return
        self.journal.append(ReviewPause(batch=batch))  # a resume continues after it (RunResumed ends the pause)
        self.log(summary)
        raise RunPaused(
            f"{self.s.run_dir}: paused for review after batch {batch}; edit memory.md or write user_input.md, "
            "then run again with --resume"
        )


def cap_errors(errors: list[str], limit: int = MAX_REASK_ERRORS) -> list[str]:
    """At most ``limit`` errors, the rest counted in one last line."""
    if len(errors) <= limit:
        return errors
    return [*errors[:limit], f"... and {len(errors) - limit} more errors (fix the ones above first)"]


def collect_slot_result(p: PlannedSlot, out: Path, outcome: JobOutcome, time_limit_min: float) -> SlotResult:
    """A slot's result from its folder: FAILED unless the status succeeded and the metrics file is valid."""
    base: dict[str, Any] = {
        "iteration": p.iteration,
        "slot": p.slot,
        "batch": p.batch,
        "block": p.block,
        "parent": p.parent,
        "replicate_of": p.replicate_of,
        "strategy": p.strategy,
        "mutation": p.mutation,
        "trainable": p.trainable,
        "seeds": Seeds.for_slot(p.iteration, p.slot),
    }
    if outcome.state != "succeeded":
        reason = outcome.reason or (f"exit code {outcome.exit_code}" if outcome.exit_code is not None else "unknown")
        return SlotResult(**base, status="failed", failure_reason=reason)
    try:
        metrics = read_metrics(out)
    except RecordError as err:
        return SlotResult(**base, status="failed", failure_reason=str(err))
    try:
        trajectory = digest_trajectory(read_r2_log(out / R2_LOG))
    except RecordError:
        trajectory = None
    result = SlotResult(**base, status="completed", metrics=metrics, trajectory=trajectory)
    return result.model_copy(update={"over_time_limit": protocol.over_time(result, time_limit_min)})
