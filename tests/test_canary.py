"""Canary verdicts (issue 19): ``slo/canary.py`` through ``GET /api/v1/canary``, the ``/canary`` page and
``sloscope canary`` (against the running server with ``--url``, and on the stopped server's data
directory), checked against figures computed here from what was sent: Fisher's exact p-values from
the hypergeometric distribution, quantiles by rank, the Mann-Whitney effect size by counting pairs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from alerts.attribution import dominant_version
from tests.conftest import InProcess, Subprocess, in_process, start_subprocess, wait_until

ROOT = Path(__file__).resolve().parents[1]
MS = 10**6
# Ten minutes ago: inside the API's default range (the last hour), whatever the clock says.
START = time.time_ns() - 10 * 60 * 10**9
Span = trace_pb2.Span
SPEC = """\
slos:
  - name: shop-fast
    service: shop
    objective: 99
    window: 1d
    sli: {spans: {bad: {error: true, latency_ms: 40}}}
"""


@dataclass
class Version:
    """What one version of shop answered: durations (ms) and which requests failed."""

    durations: list[int] = field(default_factory=list)
    errors: list[bool] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.durations)

    def slo_bad(self) -> int:
        return sum(e or d > 40 for d, e in zip(self.durations, self.errors, strict=True))


def _version(n: int, error_every: int, scale: int, offset: int = 0) -> Version:
    durations = [(10 + (i + offset) % 50) * scale for i in range(n)]
    return Version(durations, [i % error_every == 0 for i in range(n)])


SENT = {
    "1.0": _version(1000, 100, 1),  # 10 errors; 10-59 ms
    "2.0": _version(600, 10, 2),  # 60 errors; twice as slow
    "1.1": _version(800, 100, 1, offset=7),  # as good as 1.0
    "tiny": _version(30, 100, 1),
}


def _attrs(values: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in values.items()]


def export() -> bytes:
    request = ExportTraceServiceRequest()
    ids = 0
    for version, sent in SENT.items():
        for service in ("shop", "other"):
            rs = request.resource_spans.add()
            rs.resource.attributes.extend(_attrs({"service.name": service, "service.version": version}))
            scope = rs.scope_spans.add()
            for i, (ms, failed) in enumerate(zip(sent.durations, sent.errors, strict=True)):
                ids += 1
                start = START + i * MS
                status = trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR) if failed else None
                root = ids.to_bytes(8, "big")
                scope.spans.append(
                    Span(
                        trace_id=ids.to_bytes(16, "big"),
                        span_id=root,
                        name="GET /cart",
                        kind=Span.SPAN_KIND_SERVER,
                        start_time_unix_nano=start,
                        end_time_unix_nano=start + ms * MS,
                        status=status,
                    )
                )
                ids += 1
                # A failing, slow CLIENT child: not a request, so it counts nowhere.
                scope.spans.append(
                    Span(
                        trace_id=(ids - 1).to_bytes(16, "big"),
                        span_id=ids.to_bytes(8, "big"),
                        parent_span_id=root,
                        name="SELECT",
                        kind=Span.SPAN_KIND_CLIENT,
                        start_time_unix_nano=start,
                        end_time_unix_nano=start + 900 * MS,
                        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR),
                    )
                )
    return request.SerializeToString()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    root = tmp_path_factory.mktemp("canary")
    (root / "slos.yaml").write_text(SPEC)
    with in_process(root / "data", slos=str(root / "slos.yaml")) as running:
        answer = httpx.post(
            running.otlp + "/v1/traces", content=export(), headers={"Content-Type": "application/x-protobuf"}
        )
        assert answer.status_code == 200, answer.text
        running.drain()
        yield running


# -- independent arithmetic ---------------------------------------------------------------------


def fisher_greater(bad_c: int, n_c: int, bad_b: int, n_b: int) -> float:
    """P(X >= bad_c) for X hypergeometric: n_c draws from n_c + n_b items of which bad_c + bad_b bad."""
    bad, total = bad_c + bad_b, n_c + n_b
    tail = sum(math.comb(bad, k) * math.comb(total - bad, n_c - k) for k in range(bad_c, min(bad, n_c) + 1))
    return tail / math.comb(total, n_c)


def quantile_ms(durations: list[int], q: float) -> float:
    """ClickHouse's quantileExact: the value of rank floor(q * n) in sorted order."""
    return float(sorted(durations)[math.floor(q * len(durations))])


def rank_biserial(candidate: list[int], baseline: list[int]) -> float:
    c, b = np.array(candidate)[:, None], np.array(baseline)[None, :]
    pairs = (c > b).sum() + 0.5 * (c == b).sum()
    return 2 * pairs / (len(candidate) * len(baseline)) - 1


def canary(server: InProcess | Subprocess, **params: str | list[str]) -> httpx.Response:
    return httpx.get(server.api + "/api/v1/canary", params={"service": "shop", **params}, timeout=60)


def metrics_of(answer: dict) -> dict[str, dict]:
    return {m["metric"]: m for m in answer["metrics"]}


# -- the API ------------------------------------------------------------------------------------


def test_a_worse_candidate_fails_every_metric_with_the_hand_computed_figures(server: InProcess) -> None:
    answer = canary(server, baseline="1.0", candidate="2.0", slo="shop-fast")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["verdict"] == "fail"
    assert (body["service"], body["baseline"], body["candidate"]) == ("shop", "1.0", "2.0")
    by = metrics_of(body)
    assert list(by) == ["error_ratio", "latency_p50", "latency_p95", "latency_p99", "slo:shop-fast"]
    base, cand = SENT["1.0"], SENT["2.0"]

    errors = by["error_ratio"]
    assert (errors["baseline_requests"], errors["candidate_requests"]) == (1000, 600)
    assert errors["baseline"] == pytest.approx(10 / 1000) and errors["candidate"] == pytest.approx(60 / 600)
    assert errors["effect_size"] == pytest.approx(60 / 600 - 10 / 1000)
    assert errors["p_value"] == pytest.approx(fisher_greater(60, 600, 10, 1000), rel=1e-6)
    assert (errors["test"], errors["verdict"]) == ("fisher_exact", "fail")

    for metric, q in (("latency_p50", 0.5), ("latency_p95", 0.95), ("latency_p99", 0.99)):
        m = by[metric]
        assert m["baseline"] == quantile_ms(base.durations, q), metric
        assert m["candidate"] == quantile_ms(cand.durations, q), metric
        assert m["verdict"] == "fail" and m["p_value"] < 0.01, metric
    p50 = by["latency_p50"]
    assert p50["test"] == "mann_whitney_u"
    assert p50["effect_size"] == pytest.approx(rank_biserial(cand.durations, base.durations))
    p95 = by["latency_p95"]
    threshold = quantile_ms(base.durations, 0.95)
    over_c = sum(d > threshold for d in cand.durations)
    over_b = sum(d > threshold for d in base.durations)
    assert p95["p_value"] == pytest.approx(fisher_greater(over_c, 600, over_b, 1000), rel=1e-6)
    assert p95["effect_size"] == pytest.approx(over_c / 600 - over_b / 1000)

    slo = by["slo:shop-fast"]
    assert slo["baseline"] == pytest.approx(base.slo_bad() / 1000)
    assert slo["candidate"] == pytest.approx(cand.slo_bad() / 600)
    # Objective 99: a budget of 1% of requests.
    assert slo["baseline_burn_rate"] == pytest.approx(base.slo_bad() / 1000 / 0.01)
    assert slo["candidate_burn_rate"] == pytest.approx(cand.slo_bad() / 600 / 0.01)
    assert slo["verdict"] == "fail"


def test_an_equal_candidate_passes(server: InProcess) -> None:
    body = canary(server, baseline="1.0", candidate="1.1", slo="shop-fast").json()
    by = metrics_of(body)
    assert body["verdict"] == "pass", body["reason"]
    assert all(m["verdict"] == "pass" for m in by.values())
    assert by["error_ratio"]["p_value"] == pytest.approx(fisher_greater(8, 800, 10, 1000), rel=1e-6)
    assert by["latency_p50"]["p_value"] > 0.05


def test_too_little_traffic_is_not_enough_data_never_a_pass(server: InProcess) -> None:
    body = canary(server, baseline="1.0", candidate="tiny").json()
    assert body["verdict"] == "not_enough_data"
    assert "candidate has 30 requests, need 100" in body["reason"]
    assert all(m["p_value"] is None for m in body["metrics"])
    # The threshold is the caller's: 30 requests are enough when 20 are asked for.
    assert (
        canary(server, baseline="1.0", candidate="tiny", min_requests="20").json()["verdict"]
        != "not_enough_data"
    )
    unknown = canary(server, baseline="1.0", candidate="9.9").json()
    assert unknown["verdict"] == "not_enough_data" and "candidate has 0 requests" in unknown["reason"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"baseline": "1.0"}, "candidate"),
        ({"candidate": "1.0"}, "baseline"),
        ({"baseline": "1.0", "candidate": "1.0"}, "same version"),
        ({"baseline": "1.0", "candidate": "2.0", "slo": "nope"}, "slo"),
        ({"baseline": "1.0", "candidate": "2.0", "min_requests": "0"}, "min_requests"),
        ({"baseline": "1.0", "candidate": "2.0", "start": "yesterday"}, "start"),
    ],
)
def test_bad_parameters_are_400_naming_them(server: InProcess, params: dict[str, str], named: str) -> None:
    answer = canary(server, **params)
    assert answer.status_code == 400
    assert named in answer.json()["detail"]


def test_an_slo_of_another_service_is_refused(server: InProcess) -> None:
    answer = httpx.get(
        server.api + "/api/v1/canary",
        params={"service": "other", "baseline": "1.0", "candidate": "2.0", "slo": "shop-fast"},
    )
    assert answer.status_code == 400 and "shop-fast" in answer.json()["detail"]


# -- the page -----------------------------------------------------------------------------------


def test_the_page_shows_the_verdict_and_every_metric(server: InProcess) -> None:
    page = httpx.get(
        server.api + "/canary", params={"service": "shop", "baseline": "1.0", "candidate": "2.0"}
    )
    assert page.status_code == 200
    assert 'data-verdict="fail"' in page.text
    for metric in ("error_ratio", "latency_p50", "latency_p95", "latency_p99"):
        assert f'data-metric="{metric}"' in page.text
    assert "10.000%" in page.text and "1.000%" in page.text  # the two error ratios
    form = httpx.get(server.api + "/canary", params={"service": "shop"})
    assert form.status_code == 200 and "data-verdict" not in form.text and 'value="shop-fast"' in form.text
    # The versions to choose from, busiest first, with their shares of shop's 2430 requests.
    assert "<strong>1.0</strong> 41.2%, <strong>1.1</strong> 32.9%, <strong>2.0</strong> 24.7%" in form.text
    assert '<option value="tiny">' in form.text
    same = httpx.get(
        server.api + "/canary", params={"service": "shop", "baseline": "1.0", "candidate": "1.0"}
    )
    assert same.status_code == 400 and "same version" in same.text


# -- the command --------------------------------------------------------------------------------


def run_canary(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCOPE_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "sloscope", "canary", "--service", "shop", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_the_command_exits_with_the_verdict_against_a_running_server(server: InProcess) -> None:
    fail = run_canary("--baseline", "1.0", "--candidate", "2.0", "--url", server.api, "--format", "json")
    assert fail.returncode == 1, fail.stderr
    assert json.loads(fail.stdout) == canary(
        server, baseline="1.0", candidate="2.0", start="now-1h"
    ).json() | {
        "start": json.loads(fail.stdout)["start"],
        "end": json.loads(fail.stdout)["end"],
    }
    passed = run_canary("--baseline", "1.0", "--candidate", "1.1", "--url", server.api)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "verdict: PASS" in passed.stdout and "latency_p99" in passed.stdout
    short = run_canary("--baseline", "1.0", "--candidate", "tiny", "--url", server.api)
    assert short.returncode == 2 and "need 100" in short.stdout
    refused = run_canary("--baseline", "1.0", "--candidate", "1.0", "--url", server.api)
    assert refused.returncode == 4 and "same version" in refused.stderr


def test_the_command_reads_a_stopped_servers_data_directory(tmp_path: Path) -> None:
    (tmp_path / "slos.yaml").write_text(SPEC)
    # Another process: this one holds the module's data directory, and chDB one path per process.
    running = start_subprocess(tmp_path / "data")
    try:
        answer = httpx.post(
            running.otlp + "/v1/traces", content=export(), headers={"Content-Type": "application/x-protobuf"}
        )
        assert answer.status_code == 200
        wait_until(
            lambda: (
                canary(running, baseline="1.0", candidate="2.0").json()["metrics"][0]["candidate_requests"]
                == 600
            )
        )
        # While it serves, the store is the server's: the command asks the server on its API port.
        port = urlsplit(running.api).port
        served = run_canary(
            "--baseline", "1.0", "--candidate", "2.0", "--data-dir", str(tmp_path / "data"),
            env={"SLOSCOPE_API_PORT": str(port)},
        )  # fmt: skip
        assert served.returncode == 1, served.stderr
        assert (
            f"asking the server at http://127.0.0.1:{port}" in served.stderr
            and "verdict: FAIL" in served.stdout
        )
    finally:
        assert running.stop() == 0
    done = run_canary(
        "--baseline", "1.0", "--candidate", "2.0", "--slo", "shop-fast", "--slos", str(tmp_path / "slos.yaml"),
        "--data-dir", str(tmp_path / "data"), "--from", "now-2h", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    by = metrics_of(json.loads(done.stdout))
    assert by["slo:shop-fast"]["candidate_burn_rate"] == pytest.approx(SENT["2.0"].slo_bad() / 600 / 0.01)
    unknown = run_canary(
        "--baseline", "1.0", "--candidate", "2.0", "--slo", "nope", "--slos", str(tmp_path / "slos.yaml"),
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert unknown.returncode == 4 and "--slo: no SLO named nope" in unknown.stderr


# -- the incident page's link -------------------------------------------------------------------


def test_the_version_holding_most_bad_events_is_named_with_a_baseline() -> None:
    parts = [
        {"service_version": "2.0", "bad": 30},
        {"service_version": "2.0", "bad": 5},
        {"service_version": "1.0", "bad": 10},
        {"service_version": "", "bad": 4},
    ]
    assert dominant_version(parts, 49) == ("2.0", "1.0")
    assert dominant_version(parts, 80) is None  # 35 of 80 is not most
    assert dominant_version([{"service_version": "", "bad": 9}], 9) is None  # unversioned
    assert dominant_version([{"service_version": "3", "bad": "x"}], 0) is None  # malformed, no bad events
    assert dominant_version([{"service_version": "3", "bad": 7}], 7) == ("3", "")
