"""``cilium-node-exporter report``: the monthly SLO review as one document (HTML, Markdown or JSON).

Exit codes: 0 written; 2 bad flags or configuration; 3 Prometheus unreachable, refused the credentials or
failed a query; 4 no cilium-node-exporter data in the period; 5 written with the verdict "partial data"
(coverage below ``--min-coverage``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import model
from .collect import Collector
from .compute import Builder, Settings, day_labels
from .period import Period, PeriodError, resolve
from .prom import Client, PrometheusError
from .series import Series
from .settings import RulesConfig, SettingsError, apply_recorded, load
from .verdict import DEFAULT_MIN_COVERAGE, overall, retention_hint

EXIT_PARTIAL = 5

FORMATS = ("html", "markdown", "json")
EXTENSIONS = {"html": "html", "markdown": "md", "json": "json"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cilium-node-exporter report",
        description="Write the monthly SLO review of a Cilium fleet from Prometheus (or Thanos/Mimir): SLOs and "
                    "error budgets, worst nodes, memory against the envelope, drops, denials, Hubble coverage, "
                    "alerts, Cilium versions and data coverage.",
        epilog="Examples:\n  cilium-node-exporter report --prometheus-url http://127.0.0.1:9090\n"
               "  cilium-node-exporter report --prometheus-url https://thanos.example --month 2026-10 "
               "--cluster prod-eu1 --output oct.html\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prometheus-url", required=True, metavar="URL",
                   help="Prometheus query URL (the prefix of /api/v1: http://prometheus:9090, a Thanos Query URL, "
                        "or Mimir's https://mimir/prometheus)")
    period = p.add_argument_group("period (UTC, whole hours; default: the last sloPeriod, 28d)")
    period.add_argument("--month", metavar="YYYY-MM",
                        help="a calendar month, e.g. 2026-10 ('last': the previous month)")
    period.add_argument("--from", dest="from_", metavar="TIME", help="start: 2026-10-01, RFC 3339 or Unix seconds")
    period.add_argument("--to", metavar="TIME", help="end (default: now)")
    p.add_argument("--cluster", help="only this cluster (value of the cluster label)")
    p.add_argument("--format", choices=FORMATS, default="html", help="html (default, one self-contained file), "
                   "markdown (for a wiki page) or json (docs/report.schema.json)")
    p.add_argument("--output", "-o", metavar="FILE",
                   help="where to write ('-' = standard output; default: cilium-slo-review-<period>.<ext>)")
    p.add_argument("--rules-config", metavar="FILE",
                   help="the rule generator's --config file (selector, labels, objectives, sloPeriod): the same "
                        "SLO definitions as your rules and dashboards")
    p.add_argument("--min-node-hours", type=float, default=24.0, metavar="H",
                   help="rank a node among the worst only when measured this many hours (default 24)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="rows in each ranking (default 10)")
    p.add_argument("--no-compare", action="store_true",
                   help="leave out the comparison with the previous period (reads that period too, doubling the "
                        "queries)")
    p.add_argument("--group-by", default="", metavar="LABEL",
                   help="split every SLO by this node label: a label of the exporter's targets (a relabelled zone "
                        "or node pool), else kube-state-metrics' kube_node_labels label_<LABEL>")
    p.add_argument("--grafana-url", default="", metavar="URL",
                   help="Grafana's URL: each incident links to the SLO dashboard at its time range")
    p.add_argument("--min-coverage", type=float, default=DEFAULT_MIN_COVERAGE, metavar="RATIO",
                   help="below this share of the period's node-hours with data the verdict is 'partial data': no "
                        f"SLO reads met or missed, and the command exits {EXIT_PARTIAL} "
                        f"(default {DEFAULT_MIN_COVERAGE})")
    auth = p.add_argument_group("access")
    auth.add_argument("--bearer-token-file", default="", metavar="FILE", help="bearer token, re-read per request")
    auth.add_argument("--prometheus-ca", default="", metavar="FILE", help="CA bundle that signs the server certificate")
    auth.add_argument("--prometheus-tls-cert", default="", metavar="FILE", help="client certificate (mTLS)")
    auth.add_argument("--prometheus-tls-key", default="", metavar="FILE", help="client key (mTLS)")
    auth.add_argument("--prometheus-insecure-skip-verify", action="store_true",
                      help="do not verify the server certificate")
    auth.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                      help="extra HTTP header, e.g. 'X-Scope-OrgID: tenant1' for Mimir (repeatable)")
    auth.add_argument("--basic-auth-user", default="", metavar="USER", help="HTTP basic authentication user")
    auth.add_argument("--basic-auth-password-file", default="", metavar="FILE",
                      help="its password (a file, re-read per request)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="deadline for the whole run, every query included (default 600)")
    p.add_argument("--max-response-bytes", type=int, default=256 * 2**20, metavar="BYTES",
                   help="refuse a Prometheus answer larger than this (default 256 MiB: a 1,000-node month's "
                        "largest answer is about 40 MiB)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    return p


class Progress:
    """One progress line on stderr (rewritten in place on a terminal)."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        line = f"report: {message} ({time.monotonic() - self.started:.0f} s)"
        if self.tty:
            self.stream.write("\r\033[K" + line[:200])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _headers(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise SettingsError(f"--header {item!r}: use 'Name: value'")
        out[name.strip()] = value.strip()
    return out


def _default_output(period: Period, fmt: str) -> str:
    start, end = day_labels(period.start, 1)[0], day_labels(period.end - 1, 1)[0]
    return f"cilium-slo-review-{start}_{end}.{EXTENSIONS[fmt]}"


def clean(value: Any) -> Any:
    """NaN and infinities become None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def build_report(client: Client, config: RulesConfig, period: Period, cluster: str | None, min_node_hours: float,
                 top: int, progress: Progress, min_coverage: float = DEFAULT_MIN_COVERAGE,
                 grafana_url: str = "", compare: bool = True, group_by: str = "") -> model.Report:
    """Query, compute, and return the report model (raises PrometheusError, LookupError for no data)."""
    series = Series(config.values, cluster)
    progress(f"checking {client.shown_url} for exporter data {period.iso('start')} .. {period.iso('end')}")
    any_data = client.query(series.any_data(period.range).expr, period.end)
    if not any_data:
        oldest = client.query(series.oldest_sample().expr, period.end)
        where = f" in cluster {cluster!r}" if cluster else ""
        hint = ""
        if oldest and math.isfinite(float(oldest[0][1])):
            hint = f"; the oldest sample this Prometheus holds is from {model_time(float(oldest[0][1]))}"
            aged = retention_hint(period.start, period.end, float(oldest[0][1]),
                                  client.flags().get("storage.tsdb.retention.time", ""))
            hint += f". {aged}" if aged else ""
        raise LookupError(f"no cilium-node-exporter data{where} between {period.iso('start')} and "
                          f"{period.iso('end')} (selector {config.values['selector']}){hint}")
    previous: dict[str, model.Previous] = {}
    if compare:
        previous = _previous(client, config, series, period.previous(), min_node_hours, top, progress,
                             min_coverage)
    data = Collector(client, series, period, progress, group_by=group_by).collect()
    apply_recorded(config, data.objectives)
    v = config.values
    settings = Settings(float(v["dropSloObjective"]), float(v["memorySloObjective"]), float(v["dropSloMinTrafficRate"]),
                        float(v["memoryNearLimitRatio"]), float(v["hubbleLostEventsRatio"]), min_node_hours, top,
                        min_coverage, str(v["sloPeriod"]), grafana_url, group_by)
    builder = Builder(data, settings, config.values["clusterLabel"], config.values["nodeLabel"])
    clusters = builder.clusters()
    for cl in clusters:
        cl.previous = previous.get(cl.name)
    notes = [f"Recorded series {u.recorded} not found: {u.what} computed from raw exporter series (is the rule pack "
             "loaded in this Prometheus?)." for u in data.used if u.recorded and u.used == "raw"]
    n_days = max(1, math.ceil(period.hours / 24))
    stats = client.stats
    return model.Report(
        model.SCHEMA, time.time(),
        {"url": client.shown_url, "version": data.buildinfo.get("version", ""),
         "retention": clusters[0].coverage.retention if clusters else ""},
        {"start": period.start, "end": period.end, "label": period.label, "hours": period.hours,
         "start_iso": period.iso("start"), "end_iso": period.iso("end")},
        {"objectives_from": {k: config.origin[k] for k in ("dropSloObjective", "memorySloObjective")},
         "dropSloObjective": settings.drop_objective, "memorySloObjective": settings.memory_objective,
         "dropSloMinTrafficRate": settings.min_traffic_rate, "memoryNearLimitRatio": settings.memory_near_limit_ratio,
         "hubbleLostEventsRatio": settings.lost_events_ratio, "sloPeriod": v["sloPeriod"],
         "minNodeHours": min_node_hours, "selector": v["selector"], "clusterLabel": v["clusterLabel"],
         "nodeLabel": v["nodeLabel"], "cluster": cluster, "groupBy": group_by},
        day_labels(period.start, n_days), clusters,
        [model.SeriesUsed(u.key, u.what, u.used, u.recorded, u.expr) for u in data.used], notes,
        {"queries": stats.queries, "series": stats.series, "points": stats.points,
         "seconds_waiting": round(stats.seconds, 2)}, overall([c.verdict for c in clusters], min_coverage))


def _previous(client: Client, config: RulesConfig, series: Series, period: Period, min_node_hours: float, top: int,
              progress: Progress, min_coverage: float) -> dict[str, model.Previous]:
    """The headline figures of ``period`` per cluster (empty without data), computed and let go before the
    period under review is read (memory holds one period at a time)."""
    if not client.query(series.any_data(period.range).expr, period.end):
        return {}
    progress(f"the previous period: {period.label}")
    data = Collector(client, series, period, lambda msg: progress(f"previous period: {msg}"),
                     headline_only=True).collect()
    v = config.values
    settings = Settings(float(v["dropSloObjective"]), float(v["memorySloObjective"]), float(v["dropSloMinTrafficRate"]),
                        float(v["memoryNearLimitRatio"]), float(v["hubbleLostEventsRatio"]), min_node_hours, top,
                        min_coverage)
    out = {}
    for c in Builder(data, settings, v["clusterLabel"], v["nodeLabel"]).clusters():
        drops = next((s for s in c.slos if s.key == "drop-ratio"), None)
        worst = [w.node for w in (drops.worst if drops else [])][:3]
        out[c.name] = model.Previous(period.label, float(period.start), float(period.end),
                                     {s.key: {"achieved": s.achieved, "budget_spent": s.budget_spent} for s in c.slos},
                                     c.alerts.pages, c.alerts.tickets, worst, c.verdict.status)
    return out


def model_time(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def render(report: model.Report, fmt: str) -> str:
    data = clean(report.to_dict())
    if fmt == "json":
        return json.dumps(data, indent=1, allow_nan=False) + "\n"
    if fmt == "markdown":
        from .render_markdown import render_markdown

        return render_markdown(data)
    from .render_html import render_html

    return render_html(data)


WATCHDOG_GRACE = 5.0


def _expired(timeout: float) -> None:
    """The run outlived --timeout by the grace: say so and leave (nothing was written yet)."""
    sys.stderr.write(f"\ncilium-node-exporter report: error: the report did not finish within --timeout {timeout:g} s "
                     "(Prometheus answered too slowly)\n")
    sys.stderr.flush()
    os._exit(3)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress(sys.stderr, args.quiet)
    try:
        config = load(args.rules_config)
        period = resolve(args.month, args.from_, args.to, config.values["sloPeriod"])
        if args.top < 1 or args.min_node_hours < 0:
            raise SettingsError("--top must be at least 1 and --min-node-hours not negative")
        if args.group_by:
            Series(config.values).groups(args.group_by, "1h")  # a label name, or exit 2 now
        if args.grafana_url and not args.grafana_url.startswith(("http://", "https://")):
            raise SettingsError("--grafana-url must start with http:// or https://")
        if not 0 <= args.min_coverage <= 1:
            raise SettingsError("--min-coverage is a ratio between 0 and 1")
        client = Client(args.prometheus_url, args.bearer_token_file, args.prometheus_ca, args.prometheus_tls_cert,
                        args.prometheus_tls_key, args.prometheus_insecure_skip_verify, _headers(args.header),
                        args.timeout, max_response_bytes=args.max_response_bytes,
                        basic_auth_user=args.basic_auth_user, basic_auth_password_file=args.basic_auth_password_file)
        if args.timeout <= 0 or args.max_response_bytes < 1024:
            raise SettingsError("--timeout must be positive and --max-response-bytes at least 1024")
    except (SettingsError, PeriodError, ValueError) as exc:
        print(f"cilium-node-exporter report: error: {exc}", file=sys.stderr)
        return 2
    except PrometheusError as exc:
        print(f"cilium-node-exporter report: error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    # the last resort of the deadline: a server that drips its headers a byte at a time holds one read
    watchdog = threading.Timer(args.timeout + WATCHDOG_GRACE, _expired, (args.timeout,))
    watchdog.daemon = True
    watchdog.start()
    try:
        report = build_report(client, config, period, args.cluster, args.min_node_hours, args.top, progress,
                              args.min_coverage, args.grafana_url, not args.no_compare, args.group_by)
        progress("rendering")
        text = render(report, args.format)
    except PrometheusError as exc:
        progress.done()
        print(f"cilium-node-exporter report: error: {client.scrub(str(exc))}", file=sys.stderr)
        return 3
    except LookupError as exc:
        progress.done()
        print(f"cilium-node-exporter report: error: {client.scrub(str(exc))}", file=sys.stderr)
        return 4
    except Exception as exc:  # no traceback: it could hold a credential
        progress.done()
        print(f"cilium-node-exporter report: internal error: {type(exc).__name__}: {client.scrub(str(exc))[:500]}",
              file=sys.stderr)
        return 1
    finally:
        watchdog.cancel()
        client.close()
    progress.done()
    output = args.output or _default_output(period, args.format)
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
    nodes = sum(c.nodes for c in report.clusters)
    if not args.quiet:
        print(f"report: {period.label}: {nodes} node(s) in {len(report.clusters)} cluster(s), "
              f"{report.query_stats['queries']} queries, {time.monotonic() - started:.1f} s"
              + ("" if output == "-" else f"; wrote {output}"), file=sys.stderr)
    if report.verdict.status == "partial":
        print(f"cilium-node-exporter report: partial data: {report.verdict.coverage * 100:.1f} % of the period's "
              f"node-hours have data (--min-coverage {args.min_coverage:g}): "
              + "; ".join(report.verdict.reasons), file=sys.stderr)
        return EXIT_PARTIAL
    return 0
