"""``cilium-node-exporter report``: the monthly SLO review from Prometheus data (needs the ``report`` extra).

Modules, in the direction of imports: ``series`` (every series name and PromQL expression), ``period``,
``settings`` (the rule generator's configuration), ``prom`` (HTTP API client), ``collect`` (queries ->
hourly arrays), ``compute`` (arrays -> :mod:`model`), then ``charts`` and the ``render_*`` modules.
"""
