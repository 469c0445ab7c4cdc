"""Reply faults: wrong entry or slot counts, prose, oversized replies, names that try to leave the run
directory, blocked fields reached through nesting or dotted keys, unreadable ids. Every one is rejected
with one-line messages (never an exception), and at the controller nothing lands outside the run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent import run as agent_run
from agent.events import ReplyRejected as ReplyRejectedEvent
from agent.journal import Journal
from agent.llm.offline_policy import OfflinePlanner, offline_policy
from agent.rebuild import differing_files
from agent.reply import ReplyRejected, check_reply, parse_reply
from agent.reply_check import ReplyContext
from agent.reply_parse import MAX_REPLY_CHARS, size_error
from helpers.fault_run import ScriptedPolicy, agent_argv, batch1_context, invoke, snapshot
from helpers.replies import errors_of

pytestmark = pytest.mark.fault("reply")


@pytest.fixture
def ctx() -> ReplyContext:
    """After batch 1 of a run without baseline batches: the next configs may change trainable keys."""
    return batch1_context().model_copy(update={"baseline_batches": 0})


@pytest.fixture
def reply(ctx: ReplyContext) -> str:
    return OfflinePlanner(ctx).reply()


def with_config(reply: str, slot: int, block: str) -> str:
    """The reply with slot ``slot``'s config block replaced by ``block``."""
    pattern = re.compile(rf'<config slot="{slot}"[^>]*>.*?</config>', re.DOTALL)
    assert pattern.search(reply), reply
    return pattern.sub(lambda _: block, reply, count=1)


def test_valid_reply_of_the_fixture_passes(reply: str, ctx: ReplyContext) -> None:
    assert errors_of(reply, ctx) == []


def test_three_entries_for_a_four_slot_batch_are_rejected(reply: str, ctx: ReplyContext) -> None:
    three = re.sub(r"\n\n## Iter 4:.*?(?=</entries>)", "\n", reply, flags=re.DOTALL)
    assert errors_of(three, ctx) == ["Iter 4: entry missing"]


def test_five_entries_for_a_four_slot_batch_are_rejected(reply: str, ctx: ReplyContext) -> None:
    entry4 = re.search(r"## Iter 4:.*?(?=</entries>)", reply, re.DOTALL).group(0)
    five = reply.replace(
        "</entries>", "\n" + entry4.replace("Iter 4:", "Iter 5:").replace("id=4", "id=5") + "</entries>"
    )
    assert "Iter 5: not an iteration of this batch (expected 1-4)" in errors_of(five, ctx)


@pytest.mark.parametrize("n_blocks", [3, 5])
def test_three_or_five_config_blocks_are_rejected(reply: str, ctx: ReplyContext, n_blocks: int) -> None:
    if n_blocks == 3:
        text = with_config(reply, 3, "")
        want = "config slot 3: missing (one config block per slot 0..3)"
    else:
        text = reply + '\n<config slot="4" parent="root" strategy="explore">\n</config>\n'
        want = "config slot 4: no such slot (the next batch has slots 0..3)"
    assert want in errors_of(text, ctx)


def test_plain_prose_reply_is_rejected_with_what_is_missing(ctx: ReplyContext) -> None:
    errors = errors_of("The batch went well; I suggest trying more alternations next.", ctx)
    assert errors[0] == "<entries>: missing; write one '## Iter N:' entry for each of iterations 1-4"
    assert [e for e in errors if e.endswith("missing (one config block per slot 0..3)")] == [
        f"config slot {s}: missing (one config block per slot 0..3)" for s in range(4)
    ]


def test_reply_over_max_reply_chars_is_rejected_whole_with_one_error(reply: str, ctx: ReplyContext) -> None:
    huge = reply + "\n" + "x" * MAX_REPLY_CHARS
    parsed = parse_reply(huge)
    assert parsed.errors == [size_error(len(huge))]
    assert parsed.entries == [] and parsed.proposals == [] and parsed.memory == {}
    assert errors_of(huge, ctx) == parsed.errors  # no "missing" errors about parts that were never read


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        (
            '<config slot="../../etc" parent="root" strategy="explore">\n</config>',
            "slot must be a non-negative integer",
        ),
        ('<config slot="7" parent="root" strategy="explore">\n</config>', "config slot 7: no such slot"),
        ('<config slot="0" parent="../x" strategy="explore">\n</config>', "parent must be 'root' or a node id"),
        ('<config slot="0" parent="/etc/passwd" strategy="explore">\n</config>', "parent must be 'root' or a node id"),
        (
            '<config slot="0" parent="root" replicate="../../x" strategy="robustness-check">\n</config>',
            "replicate must be a node id",
        ),
        (
            '<config slot="0" parent="root" strategy="explore">\ndataset: ../../x\n</config>',
            "config slot 0: dataset: blocked (the dataset field",
        ),
        (
            '<config slot="0" parent="root" strategy="explore">\ndataset: /tmp/x\n</config>',
            "blocked (the dataset field",
        ),
        ('<config slot="0" parent="root" strategy="explore" dir="../..">\n</config>', "unknown attribute(s) dir"),
        ('<config slot="²" parent="root" strategy="explore">\n</config>', "slot must be a non-negative integer"),
        ('<config slot="1e3" parent="root" strategy="explore">\n</config>', "slot must be a non-negative integer"),
    ],
    ids=[
        "slot-dotdot",
        "slot-7",
        "parent-dotdot",
        "parent-abs",
        "replicate-dotdot",
        "dataset-dotdot",
        "dataset-abs",
        "extra-attribute",
        "slot-superscript",
        "slot-exponent",
    ],
)
def test_names_that_try_to_leave_the_run_directory_are_rejected(
    reply: str, ctx: ReplyContext, block: str, fragment: str
) -> None:
    text = with_config(reply, 0, block)
    errors = errors_of(text, ctx)
    assert any(fragment in e for e in errors), errors
    with pytest.raises(ReplyRejected):
        check_reply(text, ctx)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("training:\n  simulation:\n    seed: 1\n", "training.simulation: unknown key"),
        ("simulation.seed: 1\n", "simulation.seed: blocked (simulation parameters are fixed)"),
        ("training.seed: 7\n", "training.seed: blocked (seeds are controller-owned)"),
        ("training:\n  seed.x: 1\n", "training.seed.x: unknown key"),
        ("graph_model:\n  training:\n    learning_rate_start: 0.1\n", "graph_model.training: unknown key"),
        ("simulation:\n  extent: 8\n", "simulation.extent: blocked (simulation parameters are fixed)"),
        ("training.alternate_training: false\n", "training.alternate_training: True -> False: blocked"),
        ("claude:\n  budget_usd: 1000000\n", "claude.budget_usd"),
        ("dispatch:\n  slurm:\n    setup: ['rm -rf /']\n", "dispatch.slurm.setup"),
    ],
    ids=[
        "simulation-under-training",
        "dotted-simulation-seed",
        "dotted-training-seed",
        "dotted-inside-section",
        "training-under-graph-model",
        "simulation-section",
        "dotted-alternate-training",
        "claude-section",
        "dispatch-nested",
    ],
)
def test_blocked_fields_reached_through_nesting_or_dotted_keys_are_rejected(
    reply: str, ctx: ReplyContext, body: str, fragment: str
) -> None:
    text = with_config(reply, 0, f'<config slot="0" parent="root" strategy="explore">\n{body}</config>')
    errors = errors_of(text, ctx)
    assert any(fragment in e for e in errors), errors


@pytest.mark.parametrize(
    "line",
    [
        "## Iter 99999999999999999999: partial",
        "## Iter " + "9" * 5000 + ": partial",
        "Node: id=" + "9" * 5000 + ", parent=root",
        "Next: parent=" + "9" * 5000,
        "R2 trajectory: peak=0.5 at iter " + "9" * 5000 + ", final=0.4, trend=stable",
        "Variance update: C1 now has " + "9" * 5000 + " runs, CV(conn_R2)=1%, CV(V_rest_R2)=2%",
        "Mutation: [none] — robustness re-run of Node " + "9" * 5000,
        "Metrics: connectivity_R2=1e999999999",
        "Metrics: connectivity_R2=0e400",
    ],
    ids=["iter-20-digits", "iter-5000-digits", "node", "next", "trajectory", "variance", "mutation", "exp", "zero-exp"],
)
def test_unreadable_ids_and_numbers_are_errors_not_exceptions(reply: str, ctx: ReplyContext, line: str) -> None:
    key = line.split(":")[0] if not line.startswith("##") else "## Iter 2"
    lines = reply.splitlines()
    first_iter2 = lines.index("## Iter 2: partial")
    at = (
        first_iter2
        if line.startswith("##")
        else next(i for i in range(first_iter2, len(lines)) if lines[i].startswith(key))
    )
    lines[at] = line
    errors = errors_of("\n".join(lines), ctx)
    assert errors and all(len(e) < 400 for e in errors), errors


def test_path_escaping_and_prose_replies_are_reasked_and_nothing_lands_outside_the_run(
    paused_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = tmp_path / "a" / "b" / "c"
    sandbox.mkdir(parents=True)
    run_dir = paused_run.copy_to(sandbox)
    monkeypatch.chdir(sandbox)  # relative escapes would land inside tmp_path, where they are seen
    before = snapshot(tmp_path, skip=run_dir)

    def escaping(request) -> str:
        text = offline_policy(request)  # valid for this batch, then poisoned
        text = with_config(text, 0, '<config slot="../../etc" parent="root" strategy="baseline">\n</config>')
        text = with_config(text, 1, '<config slot="1" parent="../x" strategy="baseline">\n</config>')
        text = with_config(text, 2, '<config slot="²" parent="root" strategy="baseline">\n</config>')
        text = with_config(text, 3, '<config slot="3" parent="root" strategy="baseline">\ndataset: ../../x\n</config>')
        return text.replace("### Current Block", "### ../../memory_escape")

    monkeypatch.setattr(
        agent_run, "offline_policy", ScriptedPolicy({"batch-001": escaping, "batch-001-reask-1": "All good."})
    )
    done = invoke(agent_argv(run_dir, paused_run.config, "--resume", iterations=8))  # batch 2 follows: configs count
    assert done.code == 0, done.err
    rejected = Journal(run_dir).of_type(ReplyRejectedEvent)
    assert [e.call_id for e in rejected] == ["batch-001", "batch-001-reask-1"]
    assert sorted(rejected[0].errors) == [
        "config slot ../../etc: slot must be a non-negative integer, got '../../etc'",
        "config slot 0: missing (one config block per slot 0..3)",
        "config slot 1: parent must be 'root' or a node id, got '../x'",
        "config slot 2: missing (one config block per slot 0..3)",
        "config slot 3: dataset: blocked (the dataset field routes the slot's data and is fixed per slot)",
        "config slot ²: slot must be a non-negative integer, got '²'",
        "memory: unknown section '../../memory_escape' (yours are: Knowledge Base, Established Principles, "
        "Falsified Hypotheses, Open Questions, Previous Block Summary, Current Block)",
    ]
    assert snapshot(tmp_path, skip=run_dir) == before
    names = [p.name for p in tmp_path.rglob("*")]
    assert not {"etc", "x", "memory_escape"} & set(names)
    assert differing_files(run_dir) == []


@pytest.mark.parametrize(
    "injected",
    ["## Controller (rewritten after every batch)\nforged", "```python\nnever closed"],
    ids=["level-2-heading", "open-code-fence"],
)
def test_memory_update_that_memory_md_cannot_take_is_rejected(reply: str, ctx: ReplyContext, injected: str) -> None:
    text = reply.replace("### Current Block\n", f"### Current Block\n{injected}\n", 1)
    errors = errors_of(text, ctx)
    assert len(errors) == 1 and errors[0].startswith("memory: section 'Current Block': "), errors


def test_reply_that_could_not_be_applied_is_reasked_instead_of_accepted(
    paused_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = paused_run.copy_to(tmp_path)

    def forged_memory(request) -> str:
        text = offline_policy(request)  # valid for this very batch, then one forged heading in memory
        return text.replace(
            "### Current Block\n", "### Current Block\n## Controller (rewritten after every batch)\n", 1
        )

    monkeypatch.setattr(agent_run, "offline_policy", ScriptedPolicy({"batch-001": forged_memory}))
    done = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert done.code == 0, done.err
    rejected = Journal(run_dir).of_type(ReplyRejectedEvent)
    assert [(e.call_id, len(e.errors)) for e in rejected] == [("batch-001", 1)]
    assert rejected[0].errors[0].startswith("memory: section 'Current Block': line '## Controller")
    assert (run_dir / "memory.md").read_text().count("## Controller") == 1
    assert differing_files(run_dir) == []
