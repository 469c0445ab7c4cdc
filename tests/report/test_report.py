"""The HTML report: one row per result, every variance row, embedded images, escaped documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.views.report import _result_row, build_report, main, markdown_to_html
from memory.variance import variance_table


@pytest.fixture(scope="module")
def page(finished_run, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = build_report(finished_run.dir, tmp_path_factory.mktemp("report") / "report.html")
    return out.read_text(encoding="utf-8")


def test_report_table_has_one_row_per_result(page: str, finished_run) -> None:
    rows = re.findall(r'<tr class="result( failed)?" id="iter-(\d+)"', page)
    assert [int(it) for _, it in rows] == [r.iteration for r in finished_run.results]
    assert [int(it) for failed, it in rows if failed] == [14]


def test_report_has_every_variance_row(page: str, finished_run) -> None:
    ids = re.findall(r'<tr class="variance"><td>(C\d+)</td>', page)
    assert ids == [row.config_id for row in variance_table(finished_run.results)]


def test_report_embeds_a_tree_per_block_and_a_trajectory_plot_per_batch(page: str) -> None:
    assert len(re.findall(r"<figcaption>Block \d+</figcaption>", page)) == 2
    assert len(re.findall(r"<figcaption>Batch \d+ \(iterations", page)) == 4


def test_report_is_self_contained(page: str) -> None:
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page and "<link" not in page and "http://" not in page


def test_report_header_shows_backend_and_cost(page: str) -> None:
    assert "<th>LLM backend</th><td>offline</td>" in page
    assert "$3.75 of $20.00 budget" in page


def test_report_renders_analysis_entries(page: str) -> None:
    assert "Iter 16: converged" in page and "Node: id=16, parent=10" in page


def test_report_escapes_html_in_memory(synth, tmp_path: Path) -> None:
    synth.write(synth.events())
    synth.files.memory.write_text("# Notes\n<script>alert(1)</script> and <b>x</b>\n", encoding="utf-8")
    text = build_report(synth.dir, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<b>x</b>" not in text


def test_cli_writes_report_html_into_the_run_dir_by_default(synth) -> None:
    synth.write(synth.events()[:3])
    assert main([str(synth.dir)]) == 0
    assert (synth.dir / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_cli_prints_one_line_error_for_a_missing_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run directory" in err


def test_markdown_headings_lists_and_tables() -> None:
    rendered = markdown_to_html("## Title\n- a\n  - b\n- c\n\n| x | y |\n|---|---|\n| 1 | 2 |\n", heading_shift=1)
    out = rendered.replace("\n", "")  # markdown-it puts a newline after each block tag
    assert "<h3>Title</h3>" in out
    assert "<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>" in out
    assert "<thead><tr><th>x</th><th>y</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr>" in out


def test_markdown_code_is_escaped_and_not_formatted() -> None:
    out = markdown_to_html("```\n**a** <i>\n```\nuse `lr_W <x>` and **bold** and lr_W_start\n")
    assert "<pre><code>**a** &lt;i&gt;\n</code></pre>" in out
    assert "<code>lr_W &lt;x&gt;</code>" in out and "<strong>bold</strong>" in out and "lr_W_start" in out


def test_markdown_keeps_line_breaks_inside_a_paragraph() -> None:
    assert markdown_to_html("Node: id=3\nMutation: x -> y") == "<p>Node: id=3<br />\nMutation: x -&gt; y</p>\n"


def test_markdown_escapes_raw_html_and_drops_script_links() -> None:
    out = markdown_to_html('<script>alert(1)</script>\n<img src=x onerror="alert(2)">\n[x](javascript:alert(3))\n')
    assert "<script" not in out and "<img" not in out and "href" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in out


def test_report_marks_a_diverged_rollout_instead_of_its_score(synth) -> None:
    r = synth._result(1)
    assert r.metrics is not None
    diverged = r.model_copy(
        update={"metrics": r.metrics.model_copy(update={"test_R2": -1.0, "rollout_diverged": True})}
    )
    row = _result_row(diverged, "C1")
    assert '<td class="num diverged"' in row and "-1.000 diverged</td>" in row
    assert "diverged" not in _result_row(r, "C1")
