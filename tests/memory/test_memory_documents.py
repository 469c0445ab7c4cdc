"""memory.md sections, human edits, malformed files; block snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.tree import render_ucb_scores, ucb_ranking
from helpers.golden import assert_golden
from helpers.results import scenario
from memory.documents import (
    CONTROLLER_SECTIONS,
    LLM_SECTIONS,
    MemoryDocument,
    MemoryDocumentError,
    format_user_input_ack,
    initial_memory,
    snapshot_memory,
)
from memory.variance import render_variance_table, variance_table


def _controller_update(doc: MemoryDocument, ack: str | None = None) -> MemoryDocument:
    res = scenario()
    ucb = render_ucb_scores(ucb_ranking(res, 2, 1.414), 2, 13, 20, 1.414)
    return doc.set_controller_sections(
        render_variance_table(variance_table(res)), f"```\n{ucb}```", "Iterations done: 20/48", ack
    )


def test_initial_memory_has_every_required_section_and_round_trips():
    doc = initial_memory("demo", "instruction_flyvis_62_1_gs_alternate.md")
    text = doc.render()
    for name in (*LLM_SECTIONS, *CONTROLLER_SECTIONS[1:]):
        assert f"\n### {name}\n" in text
    assert MemoryDocument.parse(text).render() == text


def test_memory_after_a_batch_matches_golden():
    doc = initial_memory("demo", "instruction_flyvis_62_1_gs_alternate.md")
    doc.replace_llm_sections({"Current Block": "Hypothesis: more alternations keep W stable.\nIterations: 13-24"})
    _controller_update(doc, format_user_input_ack("Try n_alternations 8 next.", 21))
    assert_golden("memory_after_batch.md", doc.render())


def test_replace_llm_sections_keeps_other_sections_verbatim():
    doc = initial_memory("r", "i.md")
    before = doc.section("Open Questions")
    doc.replace_llm_sections({"Knowledge Base": "| n_alternations | 6 | +0.02 | +0.1 | 13, 18 |"})
    assert doc.section("Knowledge Base") == "| n_alternations | 6 | +0.02 | +0.1 | 13, 18 |"
    assert doc.section("Open Questions") == before


@pytest.mark.parametrize("name", ["Variance Estimates", "Notes"])
def test_replace_llm_sections_rejects_non_llm_names(name):
    with pytest.raises(MemoryDocumentError, match=f"section '{name}'"):
        initial_memory("r", "i.md").replace_llm_sections({name: "x"})


def test_replace_llm_sections_rejects_heading_lines_in_a_body():
    with pytest.raises(MemoryDocumentError, match="heading"):
        initial_memory("r", "i.md").replace_llm_sections({"Current Block": "text\n## Iter 5: converged\n"})


def test_a_copied_group_heading_of_the_document_is_dropped_not_rejected():
    """A real model copied memory.md's layout: '## Blocks' between Open Questions and Previous Block Summary."""
    doc = initial_memory("r", "i.md").replace_llm_sections({"Open Questions": "- why?\n\n## Blocks\n"})
    assert doc.section("Open Questions") == "- why?"
    assert doc.render().count("## Blocks\n") == 1
    with pytest.raises(MemoryDocumentError, match="heading"):
        initial_memory("r", "i.md").replace_llm_sections(
            {"Open Questions": "## Controller (rewritten after every batch)"}
        )


def test_human_edit_of_llm_section_survives_the_next_controller_update(tmp_path):
    path = tmp_path / "memory.md"
    initial_memory("r", "i.md").save(path)
    text = path.read_text().replace(
        "(none yet)\n\n### Open Questions", "HUMAN: never raise alternate_lr_W\n\n### Open Questions"
    )
    path.write_text(text)
    doc = _controller_update(MemoryDocument.load(path))
    doc.save(path)
    assert doc.section("Falsified Hypotheses") == "HUMAN: never raise alternate_lr_W"
    assert "HUMAN: never raise alternate_lr_W" in path.read_text()


def test_deleted_section_is_recreated_empty_in_its_group():
    text = initial_memory("r", "i.md").render()
    start = text.index("### Established Principles")
    end = text.index("### Falsified Hypotheses")
    doc = MemoryDocument.parse(text[:start] + text[end:])
    titles = [s.title for s in doc.sections]
    assert titles.index("Established Principles") == titles.index("Knowledge Base") + 1
    assert doc.section("Established Principles").startswith("(none yet")


def test_unknown_sections_and_preamble_are_kept_verbatim():
    text = (
        initial_memory("r", "i.md")
        .render()
        .replace("## Blocks\n", "### My notes\n\nkeep this *exactly*  \n\n## Blocks\n")
    )
    doc = _controller_update(MemoryDocument.parse(text))
    out = doc.render()
    assert "### My notes\n\nkeep this *exactly*  \n\n## Blocks\n" in out
    assert out.startswith("# Working memory: r\n")
    assert [s.title for s in doc.extra_sections()] == ["My notes"]


def test_file_without_any_heading_becomes_preamble_plus_all_sections():
    doc = MemoryDocument.parse("just some notes a human typed\n")
    assert doc.preamble == "just some notes a human typed\n"
    assert all(doc.section(n) is not None for n in (*LLM_SECTIONS, "Variance Estimates", "UCB Ranking", "Run Status"))


def test_heading_inside_code_fence_is_not_a_section():
    text = (
        initial_memory("r", "i.md")
        .render()
        .replace("(none yet)\n\n### Open", "```\n### not a heading\n```\n\n### Open", 1)
    )
    doc = MemoryDocument.parse(text)
    assert "### not a heading" in doc.section("Falsified Hypotheses")
    assert doc.render() == text


def test_heading_case_and_spacing_are_matched_to_known_sections():
    text = initial_memory("r", "i.md").render().replace("### Open Questions", "###   open questions ")
    doc = MemoryDocument.parse(text)
    assert [s.title for s in doc.sections].count("Open Questions") == 1


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(LLM_SECTIONS), st.text(alphabet="ab |-*\n", max_size=40), max_size=6))
def test_parse_render_round_trip_after_any_llm_update(updates):
    doc = initial_memory("r", "i.md").replace_llm_sections(updates)
    text = doc.render()
    assert MemoryDocument.parse(text).render() == text


def test_user_input_section_is_written_only_when_given():
    doc = _controller_update(initial_memory("r", "i.md"))
    assert doc.section("User Input") is None
    _controller_update(doc, "ack text")
    assert doc.section("User Input") == "ack text"
    titles = [s.title for s in doc.sections]
    assert titles.index("User Input") < titles.index("Variance Estimates")


def test_snapshot_copies_memory_and_keeps_an_existing_snapshot(tmp_path):
    (tmp_path / "memory.md").write_text("v1")
    target = snapshot_memory(tmp_path, 1)
    (tmp_path / "memory.md").write_text("v2")
    assert snapshot_memory(tmp_path, 1) == target
    assert target.name == "memory_block_1.md" and target.read_text() == "v1"


def test_replace_llm_sections_rejects_an_unclosed_code_fence():
    with pytest.raises(MemoryDocumentError, match="not closed"):
        initial_memory("r", "i.md").replace_llm_sections({"Open Questions": "```\nno end"})


def test_run_status_names_progress_best_failures_and_slow_nodes():
    from memory.documents import render_run_status

    results = scenario()
    by_iter = {r.iteration: r for r in results}
    text = render_run_status(results, 48, 12, best=by_iter[13], over_limit=[by_iter[14]], time_limit_min=60)
    assert text.splitlines() == [
        "Iterations done: 20/48 (last iteration 20).",
        "Current block: 2 (iterations 13-24).",
        "Best node: 13 (connectivity_R2=0.9510).",
        "Failed nodes: 15 (CUDA out of memory (last log line)).",
        "Over the time limit (60 min): 14 (75.5 min).",
    ]
