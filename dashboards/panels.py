"""Thin helpers over grafana-foundation-sdk builders: the conventions every panel and variable follows.

Every panel and query variable uses the `datasource` variable; every target gets an explicit refId;
every panel gets a unit and a description (callers must pass both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import bargauge as bgb
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.builders import stat as statb
from grafana_foundation_sdk.builders import statetimeline as stlb
from grafana_foundation_sdk.builders import table as tableb
from grafana_foundation_sdk.builders import timeseries as tsb
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from cilium_node_exporter.mixin.config import Values, helm_token
from dashboards.queries import selector_job

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "cilium-node-exporter"

FLEET_UID = "cilium-node-fleet"
DETAIL_UID = "cilium-node-detail"
SLO_UID = "cilium-node-slo"
TITLES = {FLEET_UID: "Cilium / Node Fleet", DETAIL_UID: "Cilium / Node Detail", SLO_UID: "Cilium / SLO Review"}

# A click on a node (table cell or series) opens the node detail with the same datasource, job and time
# range, and the row's (series') own cluster: node names repeat across clusters.
_DETAIL_QUERY = "${datasource:queryparam}&${job:queryparam}&${__url_time_range}"


def node_link_from_row(v: Values) -> str:
    """Node detail of a table row (the row's node and cluster fields)."""
    node, cluster = v["nodeLabel"], v["clusterLabel"]
    return (f"/d/{DETAIL_UID}/cilium-node-detail?var-node=${{__data.fields.{node}}}"
            f"&var-cluster=${{__data.fields.{cluster}}}&{_DETAIL_QUERY}")


def node_link_from_series(v: Values) -> str:
    """Node detail of a time series (its node and cluster labels)."""
    node, cluster = v["nodeLabel"], v["clusterLabel"]
    return (f"/d/{DETAIL_UID}/cilium-node-detail?var-node=${{__field.labels.{node}}}"
            f"&var-cluster=${{__field.labels.{cluster}}}&{_DETAIL_QUERY}")


# --- variables ---------------------------------------------------------------------------------
def datasource_variable() -> db.DatasourceVariable:
    return (db.DatasourceVariable("datasource").label("Data source").type("prometheus")
            .description("Prometheus that scrapes cilium-node-exporter."))


def job_variable(v: Values) -> db.QueryVariable:
    """Selects the job of the configured selector (``job="..."``) by default; the chart fills the token the same
    way (templates/dashboards.yaml)."""
    job = helm_token("selectorJob") if v.helm else selector_job(v.config["selector"])
    return (db.QueryVariable("job").label("Job").datasource(DATASOURCE)
            .description("Scrape job of the exporter (label_values of cilium_node_exporter_build_info).")
            .query("label_values(cilium_node_exporter_build_info, job)")
            .multi(True).include_all(True).all_value(".+")
            .current(dm.VariableOption(selected=True, text=[job], value=[job]))
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))


def cluster_variable(v: Values) -> db.QueryVariable:
    """All (`.*`) by default: matches series without any cluster label (single-cluster setups)."""
    return (db.QueryVariable("cluster").label("Cluster").datasource(DATASOURCE)
            .description("Cluster label, when the scrape adds one; All also matches series without it.")
            .query(f'label_values(cilium_node_exporter_build_info{{job=~"$job"}}, {v["clusterLabel"]})')
            .include_all(True).all_value(".*").allow_custom_value(True)
            .current(dm.VariableOption(selected=True, text="All", value="$__all"))
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))


def node_variable(v: Values, multi: bool) -> db.QueryVariable:
    """Multi-valued with All on the fleet and SLO dashboards, a single node on the node detail."""
    query = (f'label_values(cilium_node_exporter_build_info{{job=~"$job", {v["clusterLabel"]}=~"$cluster"}}, '
             f'{v["nodeLabel"]})')
    var = (db.QueryVariable("node").label("Node").datasource(DATASOURCE)
           .description("Kubernetes node (target label set by the scrape config).")
           .query(query)
           .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.NATURAL_ASC))
    if multi:
        var = (var.multi(True).include_all(True).all_value(".*")
               .current(dm.VariableOption(selected=True, text="All", value="$__all")))
    return var


# --- links -------------------------------------------------------------------------------------
def dashboard_links(own_uid: str) -> list[db.DashboardLink]:
    """Links to the two other dashboards, keeping time range and variables."""
    return [
        db.DashboardLink(TITLES[uid]).type(dm.DashboardLinkType.LINK).url(f"/d/{uid}")
        .tooltip(f"Open {TITLES[uid]}").icon("dashboard").keep_time(True).include_vars(True)
        .target_blank(False).as_dropdown(False)
        for uid in TITLES if uid != own_uid
    ]


def node_detail_link(url: str, title: str = "Node detail") -> db.DashboardLink:
    return db.DashboardLink(title).url(url).target_blank(False)


def not_measured(text: str = "not measured") -> list[dm.ValueMapping]:
    """Show ``text`` where a query has no value: the node is not measured, which is not 0."""
    return [dm.SpecialValueMap(options=dm.DashboardSpecialValueMapOptions(
        match=dm.SpecialValueMatch.NULL_AND_NAN, result=dm.ValueMappingResult(text=text, color="text", index=0)))]


# --- queries -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Q:
    """One PromQL target: expression, legend, instant (tables, stats) or range."""

    expr: str
    legend: str = ""
    instant: bool = False
    interval: str = ""  # minimum step of a range query (a 5m rate needs no 30 s resolution)


def _targets(queries: list[Q], table: bool = False) -> list[pb.Dataquery]:
    out = []
    for i, q in enumerate(queries):
        t = pb.Dataquery().expr(q.expr).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
        if q.legend:
            t = t.legend_format(q.legend)
        t = t.instant() if q.instant else t.range()
        if q.interval:
            t = t.interval(q.interval)
        if table:
            t = t.format(pm.PromQueryFormat.TABLE)
        out.append(t)
    return out


def number(v: Values, key: str) -> float:
    """A numeric setting where the JSON holds a number; in Helm mode its token, a string the chart replaces with
    the bare number (templates/dashboards.yaml)."""
    return v[key] if v.helm else v.config[key]  # type: ignore[return-value]


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in steps]))


GREEN_ONLY = thresholds((None, "green"))


# --- panels ------------------------------------------------------------------------------------
def timeseries(title: str, description: str, unit: str, queries: list[Q], *, width: int = 12, height: int = 8,
               stacked: bool = False, steps: db.ThresholdsConfig | None = None, threshold_lines: bool = False,
               min_val: float | None = 0, links: list[db.DashboardLink] | None = None,
               legend_table: bool = False, no_value: str | None = None) -> tsb.Panel:
    p = (tsb.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
         .targets(_targets(queries)).span(width).height(height).fill_opacity(10 if not stacked else 30)
         .line_width(1).show_points(cm.VisibilityMode.NEVER).thresholds(steps or GREEN_ONLY)
         .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE if legend_table
                                                    else cm.LegendDisplayMode.LIST)
                 .placement(cm.LegendPlacement.BOTTOM).show_legend(True)
                 .calcs(["lastNotNull", "max"] if legend_table else []))
         .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)))
    if min_val is not None:
        p = p.min(min_val)
    if stacked:
        p = p.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if threshold_lines:
        p = p.thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
    if links:
        p = p.data_links(links)
    if no_value is not None:
        p = p.no_value(no_value)
    return p


def stat(title: str, description: str, unit: str, queries: list[Q], *, width: int = 4, height: int = 4,
         steps: db.ThresholdsConfig | None = None, decimals: float | None = None,
         text_mode: cm.BigValueTextMode = cm.BigValueTextMode.AUTO, no_value: str | None = None,
         mappings: list[dm.ValueMapping] | None = None) -> statb.Panel:
    p = (statb.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
         .targets(_targets(queries)).span(width).height(height).thresholds(steps or GREEN_ONLY)
         .color_mode(cm.BigValueColorMode.BACKGROUND if steps else cm.BigValueColorMode.NONE)
         .graph_mode(cm.BigValueGraphMode.NONE).text_mode(text_mode)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if decimals is not None:
        p = p.decimals(decimals)
    if no_value is not None:
        p = p.no_value(no_value)
    if mappings:
        p = p.mappings(mappings)
    return p


def bar_gauge(title: str, description: str, unit: str, queries: list[Q], *, width: int = 8, height: int = 8,
              steps: db.ThresholdsConfig | None = None, decimals: float | None = None) -> bgb.Panel:
    """Instant values side by side (one bar per query or series), coloured by ``steps``."""
    p = (bgb.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
         .targets(_targets(queries)).span(width).height(height).thresholds(steps or GREEN_ONLY)
         .orientation(cm.VizOrientation.HORIZONTAL).display_mode(cm.BarGaugeDisplayMode.BASIC)
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if decimals is not None:
        p = p.decimals(decimals)
    return p


def state_timeline(title: str, description: str, queries: list[Q], *, width: int = 12,
                   height: int = 6) -> stlb.Panel:
    """0/1 health series shown as down/up."""
    mapping = dm.ValueMap(options={"0": dm.ValueMappingResult(text="down", color="red", index=0),
                                   "1": dm.ValueMappingResult(text="up", color="green", index=1)})
    return (stlb.Panel().title(title).description(description).unit("bool_on_off").datasource(DATASOURCE)
            .targets(_targets(queries)).span(width).height(height).mappings([mapping])
            .thresholds(thresholds((None, "red"), (1, "green"))).show_value(cm.VisibilityMode.NEVER)
            .merge_values(True).line_width(0).fill_opacity(80))


@dataclass(frozen=True)
class Column:
    """A table column computed by one instant query, aggregated `by (cluster, node)`."""

    name: str
    expr: str
    unit: str
    steps: db.ThresholdsConfig | None = None
    decimals: int | None = None
    extra: list[dm.DynamicConfigValue] = field(default_factory=list)
    not_measured: str = ""  # text for a node without a value in this column ("" = leave empty)


def _merged_table(title: str, description: str, columns: list[Column], index: dict[str, int], *, sort_by: str,
                  desc: bool, width: int, height: int) -> tableb.Panel:
    """A table of instant queries merged on their labels, ``index`` columns first, sorted by ``sort_by``."""
    queries = [Q(c.expr, instant=True) for c in columns]
    renames = {f"Value #{chr(ord('A') + i)}": c.name for i, c in enumerate(columns)}
    return (tableb.Panel().title(title).description(description).unit("none").datasource(DATASOURCE)
            .targets(_targets(queries, table=True)).span(width).height(height).thresholds(GREEN_ONLY)
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(dm.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True}, "renameByName": renames,
                                            "indexByName": index}))
            .sort_by([cb.TableSortByFieldState().display_name(sort_by).desc(desc)]))


def node_table(v: Values, title: str, description: str, columns: list[Column], *, sort_by: str,
               desc: bool = True, width: int = 24, height: int = 10) -> tableb.Panel:
    """One row per node: instant queries merged on (cluster, node), worst first, rows link to node detail."""
    p = _merged_table(title, description, columns, {v["nodeLabel"]: 0, v["clusterLabel"]: 1}, sort_by=sort_by,
                      desc=desc, width=width, height=height)
    p.data_links([node_detail_link(node_link_from_row(v), f"Node detail for ${{__data.fields.{v['nodeLabel']}}}")])
    return _column_overrides(p, columns)


def group_table(title: str, description: str, key: str, columns: list[Column], *, sort_by: str,
                desc: bool = False, width: int = 24, height: int = 8) -> tableb.Panel:
    """One row per value of ``key`` (e.g. the Cilium version): instant queries merged on it."""
    p = _merged_table(title, description, columns, {key: 0}, sort_by=sort_by, desc=desc, width=width,
                      height=height)
    return _column_overrides(p, columns)


def _column_overrides(p: tableb.Panel, columns: list[Column]) -> tableb.Panel:
    for c in columns:
        props = [dm.DynamicConfigValue(id_val="unit", value=c.unit)]
        if c.decimals is not None:
            props.append(dm.DynamicConfigValue(id_val="decimals", value=c.decimals))
        if c.steps is not None:
            props.append(dm.DynamicConfigValue(id_val="thresholds", value=c.steps.build()))
            props.append(dm.DynamicConfigValue(id_val="custom.cellOptions",
                                               value={"type": "color-background", "mode": "basic"}))
        if c.not_measured:
            props.append(dm.DynamicConfigValue(id_val="mappings", value=not_measured(c.not_measured)))
        p = p.override_by_name(c.name, props + c.extra)
    return p


def row(title: str) -> db.Row:
    return db.Row(title)
