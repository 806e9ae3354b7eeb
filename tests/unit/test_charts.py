"""The dashboard's server-side SVG charts."""

from __future__ import annotations

from stageflow.domain.gates import MetricSeries
from stageflow.web.charts import line_chart


def test_a_series_is_a_line_with_its_bound_dashed() -> None:
    series = MetricSeries(points=((100.0, 0.002), (160.0, 0.02), (220.0, 0.004)))
    svg = str(line_chart(series, title="error-rate in staging", start=100, end=220, high=0.01))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'role="img" aria-label="error-rate in staging: last value 0.004"' in svg
    assert svg.count('class="bound"') == 1
    path = svg.split('class="series"', maxsplit=1)[0].rsplit('d="', 1)[1]
    assert path.startswith("M44.0,") and path.count("L") == 2  # from the left edge, 3 points


def test_no_data_is_said_as_such_and_titles_are_escaped() -> None:
    svg = str(line_chart(MetricSeries(), title="<b>&", start=0, end=60))
    assert 'aria-label="&lt;b&gt;&amp;: no data"' in svg
    assert ">no data<" in svg and "no data in this window" in svg
    failed = str(
        line_chart(MetricSeries(error="Prometheus at x is unreachable"), title="t", start=0, end=1)
    )
    assert "unreachable" in failed
