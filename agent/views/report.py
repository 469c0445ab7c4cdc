"""One static, self-contained HTML page of a run: ``python -m agent.views.report RUN_DIR [--out FILE]``.

The page needs no server and no network: CSS is inline, there is no JavaScript, every image is a
base64 data URI. Everything shown comes from the run directory (journal, slot folders, memory.md,
analysis.md), and every piece of text from those files is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import sys
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict

from agent.cli_args import VIEW_EXIT_CODES, OneLineParser, exit_codes_epilog
from agent.config_policy import diff_trainable, load_slot_template
from agent.tree import best_node, node_score
from agent.views.plots import plot_batch_trajectories, plot_block_tree, plot_config_spread, plot_metrics_over_iterations
from agent.views.status import RunView, RunViewError, llm_totals, load_run_view, run_phase
from experiment.atomic import atomic_write_text
from experiment.exploration import SlotResult
from experiment.records import ACTIVITY_PNG
from memory.variance import VarianceRow, config_ids, variance_table

REPORT_NAME = "report.html"
N_BEST = 5

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1500px;padding:1em 2em;
color:#222;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f2f5}tr:nth-child(even) td{background:#fafafa}
tr.failed td{background:#fde8e8}td.num{text-align:right;font-variant-numeric:tabular-nums}td.diverged{color:#b00020}
.robust{color:#11772a;font-weight:600}.fragile{color:#b3261e;font-weight:600}.undecided{color:#8a6d00}
img{max-width:100%;border:1px solid #ddd;margin:.4em 0}figure{margin:1em 0}figcaption{font-size:13px;color:#555}
pre{background:#f6f8fa;padding:.7em;overflow-x:auto;font-size:12px}code{background:#f6f8fa;padding:0 2px}
nav a{margin-right:1em}.md{border-left:3px solid #e5e5e5;padding-left:1em}.muted{color:#777}
"""


class Figure(BaseModel):
    """One embedded image: its section, caption and PNG bytes."""

    model_config = ConfigDict(extra="forbid")

    section: str
    caption: str
    png: bytes


# ---------------------------------------------------------------------------------------------- markdown


def _markdown_parser() -> MarkdownIt:
    """CommonMark plus GFM tables; raw HTML off (escaped, never passed through); single newlines kept as ``<br>``
    (log entries are line-oriented)."""
    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")


def markdown_to_html(text: str, heading_shift: int = 0) -> str:
    """memory.md / analysis.md to HTML (markdown-it-py); headings moved ``heading_shift`` levels down (max h6)."""
    md = _markdown_parser()
    tokens = md.parse(text)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + heading_shift)}"
    return md.renderer.render(tokens, md.options, {})


# ---------------------------------------------------------------------------------------------- figures


def render_figures(view: RunView, folder: Path) -> list[Figure]:
    """Draw every plot of the run into ``folder`` and return them in page order."""
    results = view.results
    figures: list[Figure] = []

    def add(section: str, caption: str, name: str, draw: Callable[[Path], object]) -> None:
        path = folder / name
        draw(path)
        figures.append(Figure(section=section, caption=caption, png=path.read_bytes()))

    c = view.claude.ucb_c
    for block in sorted({r.block for r in results}):
        add(
            "trees",
            f"Block {block}",
            f"tree_{block}.png",
            lambda p, b=block: plot_block_tree(results, b, p, c, view.profile),
        )
    for batch in sorted({r.batch for r in results}):
        its = view.batch_iterations(batch)
        add(
            "trajectories",
            f"Batch {batch} (iterations {its[0]}-{its[-1]})",
            f"traj_{batch}.png",
            lambda p, b=batch: plot_batch_trajectories(view.dir, results, b, p),
        )
    if results:
        add("spread", "conn_R2 and V_rest_R2 per config group", "spread.png", lambda p: plot_config_spread(results, p))
        add("metrics", "All metrics per iteration", "metrics.png", lambda p: plot_metrics_over_iterations(results, p))
    return figures


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, caption: str) -> str:
    cap = html.escape(caption)
    return f'<figure><img src="{data_uri(png)}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


# ---------------------------------------------------------------------------------------------- sections


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return '<td class="num"></td>'
    if abs(value) >= 1e4:  # e.g. the test_R2 of a rollout that diverged
        return f'<td class="num">{value:.{digits}g}</td>'
    return f'<td class="num">{value:.{digits}f}</td>'


def _diverged(test_r2: float) -> str:
    """The test_R2 cell of a slot whose autonomous test rollout diverged (test_R2 is floored at -1)."""
    return (
        f'<td class="num diverged" title="the test rollout reached the +-100 voltage clamp">{test_r2:.3f} diverged</td>'
    )


def _table_html(header: Iterable[str], rows: Iterable[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


RESULT_HEADER = (
    "iteration", "batch", "block", "slot", "strategy", "parent", "mutation", "config", "status",
    "conn_R2", "tau_R2", "V_rest_R2", "cluster", "test_R2", "test_pearson", "R2 peak / final / trend", "time (min)",
)  # fmt: skip


def _result_row(r: SlotResult, config_id: str) -> str:
    esc = html.escape
    cells = [
        f'<td class="num">{r.iteration}</td><td class="num">{r.batch}</td><td class="num">{r.block}</td>',
        f'<td class="num">{r.slot}</td><td>{esc(r.strategy)}</td><td>{esc(str(r.parent))}</td>',
        f"<td>{esc(r.mutation)}</td><td>{esc(config_id)}</td>",
    ]
    if r.status == "completed" and r.metrics is not None:
        m = r.metrics
        t = r.trajectory
        traj = f"{t.peak:.3f} @ {t.peak_iteration} ({t.peak_phase}) / {t.final:.3f} / {t.trend}" if t else "-"
        flag = " (over limit)" if r.over_time_limit else ""
        cells.append(
            "<td>completed</td>"
            + "".join(_num(getattr(m, k)) for k in ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy"))
            + (_diverged(m.test_R2) if m.rollout_diverged else _num(m.test_R2))
            + _num(m.test_pearson)
            + f"<td>{esc(traj)}</td><td class='num'>{m.training_time_min:.1f}{flag}</td>"
        )
        return f'<tr class="result" id="iter-{r.iteration}">{"".join(cells)}</tr>'
    reason = esc(r.failure_reason or "no reason recorded")
    cells.append(f'<td>FAILED</td><td colspan="8">{reason}</td>')
    return f'<tr class="result failed" id="iter-{r.iteration}">{"".join(cells)}</tr>'


def results_table(view: RunView) -> str:
    """The batch table: one row per finished iteration."""
    if not view.results:
        return '<p class="muted">No iteration has finished yet.</p>'
    ids = config_ids(view.results)
    return _table_html(RESULT_HEADER, (_result_row(r, ids[r.iteration]) for r in view.results))


VARIANCE_COLUMNS = (
    "Config ID", "Runs", "iterations", "conn_R2 (mean +/- std)", "CV", "R2 trend", "tau_R2 (mean +/- std)", "CV",
    "V_rest_R2 (mean +/- std)", "CV", "cluster (mean +/- std)", "CV", "Robust?",
)  # fmt: skip


def _variance_row(v: VarianceRow) -> str:
    cells = [
        v.config_id, str(v.runs), ", ".join(map(str, v.iterations)),
        f"{v.conn_mean:.3f} +/- {v.conn_std:.3f}", f"{v.conn_cv:.1f}%", f"{v.trend_ge_peak}/{v.runs}",
        f"{v.tau_mean:.3f} +/- {v.tau_std:.3f}", f"{v.tau_cv:.1f}%",
        f"{v.vrest_mean:.3f} +/- {v.vrest_std:.3f}", f"{v.vrest_cv:.1f}%",
        f"{v.cluster_mean:.3f} +/- {v.cluster_std:.3f}", f"{v.cluster_cv:.1f}%",
    ]  # fmt: skip
    tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
    return f'<tr class="variance">{tds}<td class="{v.verdict}">{v.verdict}</td></tr>'


def variance_section(view: RunView) -> str:
    rows = variance_table(view.results) if view.results else []
    if not rows:
        return '<p class="muted">No runs yet.</p>'
    return _table_html(VARIANCE_COLUMNS, map(_variance_row, rows))


def best_section(view: RunView) -> str:
    """Top nodes by the tree's score (conn_R2, or the profile's reward) with their config group's statistics and
    their changes from the base config."""
    done = sorted(
        (r for r in view.results if r.status == "completed" and r.metrics is not None),
        key=lambda r: (-node_score(r, view.profile), r.iteration),
    )[:N_BEST]
    if not done:
        return '<p class="muted">No completed iteration yet.</p>'
    ids = config_ids(view.results)
    groups = {v.config_id: v for v in variance_table(view.results)}
    base = _base_trainable(view)
    rows = []
    for r in done:
        g = groups[ids[r.iteration]]
        changes = "; ".join(ch.text() for ch in diff_trainable(base, r.trainable)) if base else "?"
        m = r.metrics
        assert m is not None
        rows.append(
            f"<tr><td class='num'>{r.iteration}</td><td>{html.escape(g.config_id)}</td>{_num(m.connectivity_R2)}"
            f"{_num(m.V_rest_R2)}{_num(m.tau_R2)}{_num(m.cluster_accuracy)}"
            f"<td>{g.runs} runs: {g.conn_mean:.3f} +/- {g.conn_std:.3f}</td><td class='{g.verdict}'>{g.verdict}</td>"
            f"<td>{html.escape(changes or 'base config (no changes)')}</td></tr>"
        )
    header = ("node", "config", "conn_R2", "V_rest_R2", "tau_R2", "cluster", "config group conn_R2", "verdict",
              "changes from the base config")  # fmt: skip
    out = _table_html(header, rows)
    best = best_node(view.results, view.profile)
    png = view.files.slot_dir(best.iteration, best.slot) / ACTIVITY_PNG if best else None
    if best is not None and png is not None and png.is_file():
        out += _img(png.read_bytes(), f"Activity of the best node {best.iteration}")
    return out


def _base_trainable(view: RunView) -> dict | None:
    try:
        return load_slot_template(view.files.base_config).trainable
    except (ValueError, OSError):
        return None


POLICIES = {
    "anthropic": "LLM (Anthropic API)",
    "claude-cli": "LLM (claude CLI)",
    "replay": "replayed LLM transcripts",
    "offline": "offline rule-based policy",
    "optuna": "Optuna policy (TPE; study in optuna_study.jsonl)",
}


def run_policy(view: RunView) -> str:
    """Which policy proposed the configs: the --llm choice of each start or resume in the journal."""
    return ", then ".join(POLICIES.get(name, name) for name in dict.fromkeys(view.state.llms)) or "?"


def header_section(view: RunView) -> str:
    totals = llm_totals(view)
    budget = view.claude.budget_usd
    best = best_node(view.results, view.profile)
    metric = view.profile.primary_metric if view.profile is not None else "connectivity_R2"
    facts = [
        ("run directory", str(view.dir)),
        ("phase", run_phase(view)),
        ("iterations done", f"{len(view.results)} / {view.n_iterations} ({view.n_batches} batches of "
                            f"{view.state.batch_size}, blocks of {view.claude.n_iter_block})"),
        ("failed iterations", str(sum(r.status == "failed" for r in view.results))),
        ("policy", run_policy(view)),
        ("LLM backend", ", ".join(totals.backends) or str(view.info.get("llm", "?"))),
        ("LLM calls / tokens", f"{totals.calls} calls, {totals.input_tokens} in / {totals.output_tokens} out"),
        ("LLM cost", f"${totals.cost_usd:.2f}" + (f" of ${budget:.2f} budget" if budget is not None else "")),
        ("best node", f"{best.iteration}: {metric}={getattr(best.metrics, metric):.4f}" if best else "none yet"),
        ("instructions", str(view.info.get("instructions", "?"))),
        ("generated", datetime.now(UTC).isoformat(timespec="seconds")),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    return f"<h1>flyvis-agent run: {html.escape(view.name)}</h1><table class='facts'>{rows}</table>"


def _document(view: RunView, name: str) -> str:
    path = view.dir / name
    if not path.is_file():
        return f'<p class="muted">{html.escape(name)} does not exist yet.</p>'
    return f'<div class="md">{markdown_to_html(path.read_text(encoding="utf-8", errors="replace"), 2)}</div>'


SECTIONS = (
    ("batches", "Batch table"), ("best", "Best configs"), ("variance", "Variance table"),
    ("trees", "Exploration trees"), ("trajectories", "R2 trajectories per batch"), ("spread", "Config spread"),
    ("metrics", "Metrics over iterations"), ("memory", "Memory (memory.md)"), ("analysis", "Analysis log (analysis.md)"),
)  # fmt: skip


def render_report(view: RunView, figures: list[Figure]) -> str:
    """The whole HTML page as a string."""
    body: dict[str, str] = {
        "batches": results_table(view),
        "best": best_section(view),
        "variance": variance_section(view),
        "memory": _document(view, "memory.md"),
        "analysis": _document(view, "analysis.md"),
    }
    for key in ("trees", "trajectories", "spread", "metrics"):
        imgs = [_img(f.png, f.caption) for f in figures if f.section == key]
        body[key] = "".join(imgs) or '<p class="muted">Nothing to plot yet.</p>'
    nav = "".join(f'<a href="#{k}">{html.escape(t)}</a>' for k, t in SECTIONS)
    sections = "".join(f'<section id="{k}"><h2>{html.escape(t)}</h2>{body[k]}</section>' for k, t in SECTIONS)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(view.name)}: flyvis-agent report</title><style>{CSS}</style></head>"
        f"<body>{header_section(view)}<nav>{nav}</nav>{sections}</body></html>\n"
    )


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Read the run, draw its figures, write the page atomically; returns the page's path."""
    view = load_run_view(run_dir)
    target = Path(out) if out is not None else view.dir / REPORT_NAME
    with tempfile.TemporaryDirectory(prefix="flyvis-report-") as tmp:
        figures = render_figures(view, Path(tmp))
    atomic_write_text(target, render_report(view, figures))
    return target


def main(argv: list[str] | None = None, prog: str = "python -m agent.views.report") -> int:
    parser = OneLineParser(
        prog=prog, description="Static HTML report of a run.", epilog=exit_codes_epilog(VIEW_EXIT_CODES)
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help=f"output file (default RUN_DIR/{REPORT_NAME})")
    args = parser.parse_args(argv)
    try:
        path = build_report(args.run_dir, args.out)
    except RunViewError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or args.out}: cannot write the report: {err.strerror}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
