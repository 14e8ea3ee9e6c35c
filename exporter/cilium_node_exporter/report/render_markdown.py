"""The report as Markdown for a wiki page: the same figures and words as the HTML, tables instead of charts.

Every value comes from Prometheus (node names, reasons, labels): the page escapes ``&``, ``<`` and ``>``
everywhere, so nothing a label holds passes as raw HTML into the wiki that renders it.
"""

from __future__ import annotations

from typing import Any

from .text import budget, count, hour_span, hours, mib, mib_per_day, number, pct, span, state, summary, when


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return [*out, ""]


def render_markdown(r: dict[str, Any]) -> str:
    lines = [f"# Cilium SLO review: {r['period']['label']}", "",
             f"{when(r['period']['start'])} to {when(r['period']['end'])} UTC ({r['period']['hours']} hours), "
             f"generated {when(r['generated_at'])} UTC from {r['prometheus']['url']}.", ""]
    for c in r["clusters"]:
        if len(r["clusters"]) > 1 or c["name"]:
            lines += [f"## Cluster {c['name'] or '(no cluster label)'}", ""]
        notes = c["coverage"]["notes"] + r["notes"]
        lines += ["**Data coverage:** " + ("every node reported every hour, every SLI was measured." if not notes
                                           else "read these before the figures."), ""]
        lines += [f"- {n}" for n in notes] + [""]
        lines += _table(["SLO", "objective", "achieved", "budget spent", "budget left", "measured", "not measured"],
                        [[s["title"] + (" (approximation)" if s["approximation"] else ""), pct(s["objective"], 2),
                          pct(s["achieved"]) + {"bad": " (missed)", "partial": " (partial data)"}.get(
                              state(s, c["verdict"]), ""), budget(s["budget_spent"]),
                          budget(s["budget_left"]), hours(s["measured_hours"]), hours(s["not_measured_hours"])]
                         for s in c["slos"]])
        lines += [f"- {s['title']}, rolling {s['rolling']['window']} (as the dashboards): "
                  f"{pct(s['rolling']['achieved'])}, budget spent {budget(s['rolling']['budget_spent'])}. "
                  f"{s['rolling']['why']}" for s in c["slos"] if s.get("rolling")] + [""]
        if c.get("previous"):
            p = c["previous"]
            rows = [[s["title"], f"{pct(s['achieved'])} ({budget(s['budget_spent'])} spent)",
                     "partial data" if p["verdict"] == "partial" else
                     f"{pct(p['slos'][s['key']]['achieved'])} ({budget(p['slos'][s['key']]['budget_spent'])} spent)"
                     if s["key"] in p["slos"] else "-"] for s in c["slos"]]
            rows.append(["pages / tickets", f"{c['alerts']['pages']} / {c['alerts']['tickets']}",
                         f"{p['pages']} / {p['tickets']}"])
            lines += [f"Compared with {p['label']}:", "", *_table(["", "this period", p["label"]], rows)]
        if c.get("groups"):
            label = c["groups"][0]["label"]
            lines += [f"Split by {label}:", "", *_table(
                [label, "nodes", *[s["title"] for s in c["slos"]]],
                [[g["value"], str(g["nodes"]), *[f"{pct(g['slos'][s['key']]['achieved'])} "
                                                 f"({budget(g['slos'][s['key']]['budget_spent'])})"
                                                 if s["key"] in g["slos"] else "-" for s in c["slos"]]]
                 for g in c["groups"]])]
        lines += [f"- {line}" for line in summary(r, c)] + [""]
        for s in c["slos"]:
            lines += [f"### {s['title']}: worst nodes", "", f"Ranked among {s['eligible_nodes']} of {s['nodes']} "
                      f"nodes: {s['ranking_rule']}.", ""]
            unit = "errors" if s["kind"] == "events" else "bad time"
            fmt = count if s["kind"] == "events" else hours
            rows = [["all nodes (pooled)", pct(s["achieved"]), budget(s["budget_spent"]), fmt(s["bad"]),
                     hours(s["measured_hours"])]]
            rows += [[w["node"], pct(w["achieved"]), budget(w["budget_spent"]), fmt(w["bad"]),
                      hours(w["measured_hours"])] for w in s["worst"]]
            lines += _table(["node", "achieved", "budget spent", unit, "measured"], rows)
        lines += ["### Incidents that spent the budget", ""]
        lines += _table(["SLO", "hours (UTC)", "nodes", "cause", "alerts raised", "budget cost", "dashboard"],
                        [[i["slo"], span(i["start"], i["end"]), ", ".join(i["nodes"]), i["cause"],
                          ", ".join(i["alerts"]) or "none", budget(i["budget_cost"]), i["link"]]
                         for i in c["incidents"]]) if c["incidents"] else ["None burned faster than twice the "
                                                                           "even-spend rate.", ""]
        for m in c["memory"]:
            if not m["present"]:
                continue
            name = "cilium-agent" if m["component"] == "agent" else "cilium-envoy"
            lines += [f"### Memory: {name}", "", f"{m['oom_kills']} OOM kill(s), {m['restarts']} restart(s); median "
                      f"growth {mib_per_day(m['median_growth_bytes_per_day'])}; envelope {mib(m['envelope_lower'])} "
                      f"to {mib(m['envelope_upper'])}.", ""]
            if m["nodes_above"]:
                lines += _table(["node", "time above", "first (hour, UTC)", "max working set", "OOM kills", "restarts"],
                                [[n["node"], hours(n["hours_above"]), hour_span(n["first_above"]), mib(n["max_bytes"]),
                                  str(n["oom_kills"]), str(n["restarts"])] for n in m["nodes_above"]])
            if m["top_growth"]:
                lines += _table(["node", "growth since last start", "days to the bound"],
                                [[n["node"], mib_per_day(n["growth_bytes_per_day"]), number(n["days_to_envelope"])]
                                 for n in m["top_growth"][:5]])
        d = c["drops"]
        lines += ["### Drops and denials", "", f"Policy denials {count(d['policy_denied'])}, L7 denials "
                  f"{count(d['l7_denied'])}.", ""]
        lines += _table(["reason", "class", "source", "drops", "nodes"],
                        [[x["reason"], x["klass"], x["source"], count(x["count"]), str(x["nodes"])]
                         for x in d["top_reasons"]])
        h = c["hubble"]
        lines += ["### Hubble coverage and blind nodes", "", f"Flows seen {count(h['flows_seen'])}, lost events "
                  f"{count(sum(h['lost_by_source'].values()))} ({pct(h['lost_ratio'], 4)}).", ""]
        if h["blind_nodes"]:
            lines += _table(["node", "not measured", "why"],
                            [[b["node"], hours(b["not_measured_hours"]),
                              ", ".join(f"{k} {hours(v)}" for k, v in b["reasons"].items())] for b in h["blind_nodes"]])
        a = c["alerts"]
        lines += ["### Pages and tickets", "", f"{a['pages']} page(s), {a['tickets']} ticket(s).", ""]
        if a["by_alert"]:
            lines += _table(["alert", "severity", "times fired", "firing in all", "median", "longest", "nodes"],
                            [[x["alertname"], f"{x['severity']} ({x['kind']})", str(x["episodes"]),
                              hours(x["firing_hours"]), f"{number(x['median_minutes'], 0)} min",
                              f"{number(x['longest_minutes'], 0)} min", str(x["nodes"])] for x in a["by_alert"]])
        v = c["versions"]
        lines += ["### Cilium versions", "", "Each cohort's figures cover the node-hours that ran it; exposure is its "
                  "share of all node-hours. A version that arrived after an incident did not fix it.", ""]
        lines += _table(["version", "nodes", "node-hours", "exposure", "seen", "drop SLI (packet-exact)",
                         "budget spent", "memory in envelope", "median / p90 working set", "OOM kills", "restarts"],
                        [[x["version"], str(x["nodes"]), number(x["node_hours"], 0), pct(x["exposure"], 1),
                          f"{when(x['first_seen'])} .. {when(x['last_seen'])}", pct(x["drop_achieved"]),
                          budget(x["drop_budget_spent"]), pct(x["memory_achieved"], 2),
                          f"{mib(x['median_working_set'])} / {mib(x['p90_working_set'])}", str(x["oom_kills"]),
                          str(x["restarts"])] for x in v["cohorts"]])
        cov = c["coverage"]
        lines += ["### Data coverage", "", f"First data {when(cov['first_data'])}, last {when(cov['last_data'])}; "
                  f"{cov['nodes']} node(s); retention {cov['retention'] or 'unknown'}.", ""]
    lines += ["### Series", ""]
    lines += _table(["figure", "from", "fell back from"],
                    [[u["what"], u["used"], u["recorded"] if u["recorded"] and u["used"] != "recorded" else ""]
                     for u in r["series"]])
    return escape_html("\n".join(lines)) + "\n"


def escape_html(text: str) -> str:
    """No raw HTML: the three characters that start markup or an entity, as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
