"""The routing evaluation's report as Markdown (``routing.md``): headline, per file, routes, FAQ entries
that took dialog turns, candidate signals, curves. ``finetune/eval_routing.py`` builds the report
dict; this module only renders it.
"""

from __future__ import annotations

from typing import Any

from finetune.routing_metrics import fmt, headline_table


def _curve_table(rows: list[dict[str, Any]], operating: float, balanced: float | None = None) -> str:

    lines = [
        "| threshold | FAQ correct | OOS recall | OOS precision | OOS confident wrong | dialog answered |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mark = " **(operating)**" if abs(r["threshold"] - round(operating, 4)) < 1e-9 else ""
        if balanced is not None and abs(r["threshold"] - round(balanced, 4)) < 1e-9:
            mark += " (balanced rule, uncapped)"
        lines.append(
            f"| {r['threshold']:.3f}{mark} | {fmt(r['faq_answered_correctly'])} | {fmt(r['oos_handoff_recall'])} "
            f"| {fmt(r['oos_handoff_precision'])} | {fmt(r['oos_confident_wrong'])} | {fmt(r['dialog_answer_rate'])} |"
        )
    return "\n".join(lines)


def _operating_line(op: dict[str, Any]) -> str:
    def value(v: float | None) -> str:
        return "none" if v is None else f"{v:.3f}"

    return (
        f"Operating point: FAQ threshold {value(op['faq_threshold'])}, in-domain threshold "
        f"{value(op['scope_threshold'])} ({op['note']})."
    )


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: headline, per file, routes, candidate signals, curves."""
    configs = report["configurations"]
    parts = [
        "# Routing evaluation",
        "",
        f"Model: `{report['model_dir']}`; FAQ index: {report['index']['description']}; traffic: "
        + ", ".join(f"`{s}` ({n})" for s, n in report["traffic"].items())
        + ".",
        _operating_line(report["operating_point"]),
        "",
        "## Headline",
        "",
        headline_table({name: c["overall"] for name, c in configs.items()}),
        "",
        "Mean time per message: "
        + ", ".join(f"{name} {c['ms_per_message']:.1f} ms" for name, c in configs.items())
        + f". Simulation vs real `after` run: {report['simulation_mismatches']} of "
        f"{sum(report['traffic'].values())} messages routed differently.",
        "",
        "## Per traffic file",
        "",
    ]
    for source in report["traffic"]:
        parts += [
            f"### {source}",
            "",
            headline_table({n: c["per_source"][source] for n, c in configs.items()}),
            "",
        ]
    parts += ["## Routes (messages of each kind)", ""]
    for name, c in configs.items():
        parts += [f"**{name}**", "", "| route | faq | oos | dialog |", "|---|---:|---:|---:|"]
        parts += [f"| {r} | {v['faq']} | {v['oos']} | {v['dialog']} |" for r, v in c["routes"].items()]
        parts.append("")
    parts += ["FAQ entries that took the most dialog turns (answer or intent route):", ""]
    for name, c in configs.items():
        taken = ", ".join(f"`{k}` {v}" for k, v in c["dialog_turns_taken_by_faq_entries"].items()) or "none"
        parts += [f"* {name}: {taken}"]
    parts.append("")
    if report["signals"]:
        parts += [
            "## Candidate in-domain signals (dialog turns vs out-of-scope messages)",
            "",
            "| signal | AUROC | OOS rejected at 90 % turns kept | at 95 % |",
            "|---|---:|---:|---:|",
        ]
        for name, s in report["signals"].items():
            parts.append(
                f"| {name} | {s['auroc']:.3f} | {100 * s['oos_rejected_at_90']:.1f} % | {100 * s['oos_rejected_at_95']:.1f} % |"
                if s["auroc"] is not None
                else f"| {name} | – | – | – |"
            )
        parts.append("")
    op = report["operating_point"]
    for key, title in (("scope_threshold", "in-domain threshold"), ("faq_threshold", "FAQ threshold")):
        if key in report["curves"]:
            balanced = (report["scope"] or {}).get("balanced_threshold") if key == "scope_threshold" else None
            parts += [
                f"## Curve: {title} (`after`)",
                "",
                _curve_table(report["curves"][key], op[key], balanced),
                "",
            ]
    return "\n".join(parts)
