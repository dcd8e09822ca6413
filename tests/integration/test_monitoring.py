"""Issue 15's monitoring package, kept honest: packaging/prometheus (alert rules, their unit
tests, the example scrape config) and packaging/grafana (the dashboard) are checked with
promtool, and against the metric names wsgate serves at GET /metrics.

- The rules pass `promtool check rules` and `promtool test rules`; every alert the package
  promises is there with a severity and a runbook section that docs/operations.md has.
- Every PromQL expression of the dashboard (panel targets, and the metric queries inside
  its label_values() variables) is parsed by promtool, written as a recording rule; every
  expression of the dashboard and the rules names only the series in METRICS below, with
  their labels and label values; and, fed one series of each listed family in a promtool
  unit test, every dashboard expression returns data.
- The real wsgate, after a little traffic (HTTP, WebSocket, TLS, a failed TLS handshake),
  serves a scrape that `promtool check metrics` accepts without errors or lint problems, and
  that holds every family of METRICS with its type and labels.

promtool comes from Debian's prometheus package (packaging/install-deps.sh); without it
these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Set, Tuple

import pytest

import harness
import tls_certs
import wsproto
from harness import admin_request as admin
from harness import gateway_config, route

PACKAGING = harness.SOURCE_DIR / "packaging"
ALERTS = PACKAGING / "prometheus" / "wsgate-alerts.yml"
ALERT_TESTS = PACKAGING / "prometheus" / "wsgate-alerts.test.yml"
SCRAPE = PACKAGING / "prometheus" / "scrape.yml"
DASHBOARD = PACKAGING / "grafana" / "wsgate-dashboard.json"
OPERATIONS = harness.SOURCE_DIR / "docs" / "operations.md"


class Family(NamedTuple):
    type: str
    labels: Tuple[str, ...] = ()


# The series wsgate's /metrics serves (issue 15; docs/operations.md, Metrics). The dashboard and
# the alert rules may use these and nothing else; the live scrape must hold every one.
METRICS: Dict[str, Family] = {
    "process_cpu_seconds_total": Family("counter"),
    "process_resident_memory_bytes": Family("gauge"),
    "process_virtual_memory_bytes": Family("gauge"),
    "process_open_fds": Family("gauge"),
    "process_max_fds": Family("gauge"),
    "process_start_time_seconds": Family("gauge"),
    "wsgate_build_info": Family("gauge", ("version",)),
    "wsgate_config_reloads_total": Family("counter", ("result",)),
    "wsgate_config_generation": Family("gauge"),
    "wsgate_sessions": Family("gauge"),
    "wsgate_connections_accepted_total": Family("counter", ("listener",)),
    "wsgate_connections_active": Family("gauge", ("listener",)),
    "wsgate_connections_refused_total": Family("counter", ("reason",)),
    "wsgate_tls_handshakes_total": Family("counter", ("listener",)),
    "wsgate_tls_handshake_failures_total": Family("counter", ("listener", "reason")),
    "wsgate_http_requests_total": Family("counter", ("code",)),
    "wsgate_handshake_duration_seconds": Family("histogram"),
    "wsgate_backend_connect_duration_seconds": Family("histogram"),
    "wsgate_backend_response_duration_seconds": Family("histogram"),
    "wsgate_websocket_sessions_active": Family("gauge"),
    "wsgate_websocket_sessions_total": Family("counter"),
    "wsgate_websocket_messages_total": Family("counter", ("direction",)),
    "wsgate_websocket_payload_bytes_total": Family("counter", ("direction",)),
    "wsgate_websocket_closes_total": Family("counter", ("code", "by")),
    "wsgate_draining_sessions": Family("gauge"),
    "wsgate_drained_sessions_total": Family("counter"),
    "wsgate_backend_up": Family("gauge", ("pool", "backend")),
    "wsgate_backend_available": Family("gauge", ("pool", "backend")),
    "wsgate_backend_draining": Family("gauge", ("pool", "backend")),
    "wsgate_backend_active": Family("gauge", ("pool", "backend")),
    "wsgate_backend_responses_total": Family("counter", ("pool", "backend", "code")),
    "wsgate_backend_websocket_sessions_total": Family("counter", ("pool", "backend")),
    "wsgate_backend_connect_failures_total": Family("counter", ("pool", "backend")),
    "wsgate_backend_retries_total": Family("counter", ("pool", "backend")),
    "wsgate_backend_ejections_total": Family("counter", ("pool", "backend")),
    "wsgate_backend_dropped_sessions_total": Family("counter", ("pool", "backend")),
    "wsgate_queue_length": Family("gauge"),
    "wsgate_queue_waits_total": Family("counter"),
    "wsgate_queue_timeouts_total": Family("counter"),
    "wsgate_lua_errors_total": Family("counter", ("hook",)),
    "wsgate_lua_limit_hits_total": Family("counter", ("limit",)),
    "wsgate_access_log_dropped_total": Family("counter"),
    "wsgate_proxy_protocol_headers_total": Family("counter", ("listener", "version")),
    "wsgate_proxy_protocol_rejected_total": Family("counter", ("listener", "reason")),
}

# Labels whose values are a closed set, per family (None: every family with that label).
CLOSED_VALUES: Dict[Tuple[str, str], Set[str]] = {
    ("wsgate_http_requests_total", "code"): {"1xx", "2xx", "3xx", "4xx", "5xx", "none"},
    ("wsgate_backend_responses_total", "code"): {"1xx", "2xx", "3xx", "4xx", "5xx"},
    ("wsgate_config_reloads_total", "result"): {"ok", "failed"},
    ("wsgate_websocket_messages_total", "direction"): {"client_to_backend", "backend_to_client"},
    ("wsgate_websocket_payload_bytes_total", "direction"): {"client_to_backend",
                                                             "backend_to_client"},
    ("wsgate_websocket_closes_total", "by"): {"client", "backend", "wsgate", "none"},
    ("wsgate_lua_errors_total", "hook"): {"state", "on_request", "on_open", "on_message",
                                          "on_close"},
    ("wsgate_lua_limit_hits_total", "limit"): {"instructions", "memory"},
    ("wsgate_proxy_protocol_headers_total", "version"): {"1", "2"},
    ("wsgate_proxy_protocol_rejected_total", "reason"): {"untrusted", "missing", "malformed",
                                                          "truncated", "oversized", "timeout"},
}

# Families the live scrape may hold with no sample yet: their label values come from events
# the test does not cause (a refusal at max_connections or at the open-files limit).
MAY_HAVE_NO_SAMPLE = {"wsgate_connections_refused_total"}

# Labels Prometheus adds to every scraped series, and the histogram bucket label.
TARGET_LABELS = {"job", "instance"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# The alerts the package promises, and their severities.
ALERTS_PROMISED = {
    "WsgateBackendDown": "warning",
    "WsgatePoolDown": "critical",
    "WsgateHighErrorRatio": "critical",
    "WsgateDrainStuck": "warning",
    "WsgateBackendDroppingSessions": "warning",
    "WsgateConfigReloadFailed": "warning",
    "WsgateAccessLogDropping": "warning",
    "WsgateNearFdLimit": "warning",
}

# Grafana's own variables, given values that PromQL accepts.
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def series_names() -> Dict[str, str]:
    """Every series name a query may select -> its family (histograms by their suffixes)."""
    names = {}
    for name, family in METRICS.items():
        if family.type == "histogram":
            names.update({name + suffix: name for suffix in HISTOGRAM_SUFFIXES})
        else:
            names[name] = name
    return names


# --- promtool -----------------------------------------------------------------------------------


def promtool(*args: str, stdin: str = None, cwd: Path = None) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run packaging/install-deps.sh (it installs "
                    "Debian's prometheus package, which has promtool)", pytrace=False)
    return subprocess.run([path, *args], input=stdin, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def promtool_ok(*args: str, **kwargs) -> str:
    run = promtool(*args, **kwargs)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"promtool {' '.join(args)} exited {run.returncode}:\n{output}"
    return output


def assert_parse(exprs: List[Tuple[str, str]], tmp_path: Path) -> None:
    """Each (where, PromQL) as a recording rule of a file `promtool check rules` reads, which
    parses every expression with Prometheus' own parser."""
    rules, where = [], {}
    for i, (place, expr) in enumerate(exprs):
        record = f"wsgate_check:expr_{i}"
        where[record] = place
        rules.append({"record": record, "expr": expr})
    path = tmp_path / "parse-rules.yml"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "parse", "rules": rules}]}, indent=1))
    run = promtool("check", "rules", str(path))
    assert run.returncode == 0, (run.stdout + run.stderr + "\nrecord names:\n"
                                 + "\n".join(f"{k}: {v}" for k, v in where.items()))


# --- PromQL, read without a parser ----------------------------------------------------------
# promtool parses every expression (test_dashboard_expressions_parse, and check rules); these
# helpers only pick the names out of expressions that parse.

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "atan2", "inf", "nan"}
STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
GROUPING = r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"


def selectors(expr: str) -> Iterator[Tuple[str, List[Tuple[str, str, str]]]]:
    """(metric name, [(label, op, value)]) of every vector selector in `expr`."""
    strings: List[str] = []

    def keep(m):  # a string becomes "\x00" and one private-use character: no digit, no name
        strings.append(m.group())
        return f'"\x00{chr(0xE000 + len(strings) - 1)}"'

    s = re.sub(STRING, keep, expr)
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    grouped = re.sub(GROUPING, " ", s)
    grouped = re.sub(r"\boffset\s+-?\w+", " ", grouped)
    grouped = re.sub(r"(?<![\w:.])(\d[\w.]*|\.\d[\w.]*)", " ", grouped)  # numbers, durations
    for m in re.finditer(rf"({NAME})?\s*(\{{[^{{}}]*\}})?", grouped):
        name, braces = m.group(1), m.group(2)
        if not name and not braces:
            continue
        rest = grouped[m.end():].lstrip()
        if name and not braces and (rest.startswith("(") or name.lower() in KEYWORDS):
            continue  # a function or a keyword
        matchers = [(label, op, unquote(strings[ord(i) - 0xE000])) for label, op, i in
                    re.findall(rf'({NAME})\s*(=~|!~|!=|=)\s*"\x00(.)"', braces or "")]
        yield name or "", matchers


def unquote(literal: str) -> str:
    """A PromQL string literal's value (escapes as in JSON, which the files here keep to)."""
    if literal[0] == '"':
        return json.loads(literal)
    return literal[1:-1]


def grouping_labels(expr: str) -> Set[str]:
    """Label names in by/without/on/ignoring/group_left/group_right lists."""
    bare = re.sub(STRING, '""', expr)
    return {label.strip() for _, labels in re.findall(GROUPING, bare)
            for label in labels.split(",") if label.strip()}


def expression_problems(expr: str, where: str) -> List[str]:
    """What in `expr` is not in METRICS: unknown names, labels, closed label values."""
    names = series_names()
    problems = []
    if "__name__" in expr:
        return [f"{where}: selects by __name__, which this check cannot follow: {expr}"]
    found = list(selectors(expr))
    if not found:
        problems.append(f"{where}: names no metric: {expr}")
    labels_in_reach = set(TARGET_LABELS)
    for name, matchers in found:
        if name not in names:
            problems.append(f"{where}: {name or '{...}'} is not a wsgate metric: {expr}")
            continue
        family = names[name]
        own = set(METRICS[family].labels) | ({"le"} if name.endswith("_bucket") else set())
        labels_in_reach |= own
        for label, op, value in matchers:
            if label not in own | TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {label}: {expr}")
            closed = CLOSED_VALUES.get((family, label))
            if closed and op == "=" and value not in closed:
                problems.append(f"{where}: {family}{{{label}}} is never {value!r}: {expr}")
    for label in grouping_labels(expr) - labels_in_reach:
        problems.append(f"{where}: groups by {label}, a label none of its metrics has: {expr}")
    return problems


# --- the rules file, read without a YAML library ------------------------------------------------
# The rules are checked whole by promtool; this picks out each alert's expr, severity and
# runbook, and the count is held against promtool's.


class Rule(NamedTuple):
    alert: str
    expr: str
    severity: str
    runbook: str


def read_rules(text: str) -> List[Rule]:
    rules = []
    blocks = re.split(r"^\s*- alert:", text, flags=re.M)[1:]
    for block in blocks:
        lines = block.splitlines()
        alert = lines[0].strip()
        expr = ""
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)expr:\s*(.*)$", line)
            if not m:
                continue
            indent, value = len(m.group(1)), m.group(2).strip()
            if value in ("|", "|-", ">", ">-"):
                body = []
                for more in lines[i + 1:]:
                    if more.strip() and len(more) - len(more.lstrip()) <= indent:
                        break
                    body.append(more.strip())
                value = "\n".join(body).strip()
            expr = value
            break
        severity = re.search(r"^\s*severity:\s*(\S+)", block, re.M)
        runbook = re.search(r'^\s*runbook:\s*"?([^"\n]+)"?', block, re.M)
        rules.append(Rule(alert, expr, severity.group(1) if severity else "",
                          runbook.group(1) if runbook else ""))
    return rules


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# --- alert rules ----------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check_rules():
    output = promtool_ok("check", "rules", str(ALERTS))
    m = re.search(r"SUCCESS: (\d+) rules found", output)
    assert m, output
    assert int(m.group(1)) == len(read_rules(ALERTS.read_text())), (
        "promtool and this test's reader count the rules differently:\n" + output)


def test_alert_rules_pass_their_promtool_unit_tests(tmp_path):
    # From another directory: rule_files resolve from the test file's folder.
    promtool_ok("test", "rules", str(ALERT_TESTS), cwd=tmp_path)


def test_every_promised_alert_is_there_with_its_severity_and_a_runbook_section():
    rules = read_rules(ALERTS.read_text())
    assert {r.alert: r.severity for r in rules} == ALERTS_PROMISED
    anchors = {github_anchor(h) for h in re.findall(r"^#+\s+(.*)$", OPERATIONS.read_text(),
                                                    re.M)}
    for rule in rules:
        page, _, anchor = rule.runbook.partition("#")
        assert page == "docs/operations.md" and anchor in anchors, (
            f"{rule.alert}: runbook {rule.runbook!r} is not a section of docs/operations.md")


def test_alert_rules_and_their_tests_use_only_wsgate_metrics(tmp_path):
    problems = []
    rules = read_rules(ALERTS.read_text())
    # What this test's reader took for each expr parses whole (nothing cut off).
    assert_parse([(rule.alert, rule.expr) for rule in rules], tmp_path)
    for rule in rules:
        problems += expression_problems(rule.expr, rule.alert)
    fed = re.findall(r"^\s*- series:\s*'([^']*)'", ALERT_TESTS.read_text(), re.M)
    assert fed
    for series in fed:
        problems += expression_problems(series, f"{ALERT_TESTS.name} input")
    assert not problems, "\n".join(problems)


def test_every_alert_has_a_unit_test_that_sees_it_fire_and_one_that_sees_it_quiet():
    text = ALERT_TESTS.read_text()
    for alert in ALERTS_PROMISED:
        # `alertname: X` then exp_alerts with entries, and one with []; YAML anchors
        # (`&name X`, `*name`) count for the name they stand for.
        tested = re.findall(rf"alertname:\s*(?:&\w+\s+)?{alert}\s*\n\s*exp_alerts:\s*(\S+)",
                            text)
        assert "[]" in tested, f"{alert}: no case where it must stay quiet"
        assert any(t != "[]" for t in tested), f"{alert}: no case where it must fire"


def test_scrape_config_passes_promtool_check_config_with_and_without_the_token(tmp_path):
    text = SCRAPE.read_text()
    (tmp_path / "wsgate-alerts.yml").write_text(ALERTS.read_text())
    plain = tmp_path / "scrape.yml"
    plain.write_text(text)
    promtool_ok("check", "config", str(plain))
    # The commented authorization block, uncommented, with a token file that exists.
    token = tmp_path / "wsgate-admin.token"
    token.write_text("0123456789abcdef0123456789abcdef\n")
    uncommented, n = re.subn(r"^(\s*)# (authorization:|  type: Bearer|  credentials_file: )",
                             r"\1\2", text, flags=re.M)
    assert n == 3, "scrape.yml's commented authorization block changed shape"
    uncommented = uncommented.replace("/etc/prometheus/wsgate-admin.token", str(token))
    with_token = tmp_path / "scrape-token.yml"
    with_token.write_text(uncommented)
    output = promtool_ok("check", "config", str(with_token))
    assert "SUCCESS" in output


# --- the dashboard --------------------------------------------------------------------------


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row's panels


def dashboard_expressions(dashboard: dict) -> List[Tuple[str, str]]:
    """(where, PromQL as written) of every panel target and every variable's metric query."""
    found = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            assert target.get("expr"), f"panel {panel['title']!r}: a target without expr"
            found.append((f"panel {panel['id']} {panel['title']!r} {target['refId']}",
                          target["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.S)
        assert m, f"variable {var['name']}: not label_values(METRIC, LABEL): {query}"
        found.append((f"variable {var['name']}", m.group(1)))
    return found


def concrete(expr: str, variables: Set[str]) -> str:
    """`expr` with Grafana's variables replaced: builtins by durations, ours by `.*` (they
    only stand in regex matchers)."""
    for name, value in GRAFANA_BUILTINS.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    used = set(re.findall(r"\$\{?(\w+)", expr))
    assert used <= variables, f"undefined variables {used - variables} in {expr}"
    return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", ".*", expr)


def variable_names(dashboard: dict) -> Set[str]:
    return {v["name"] for v in dashboard["templating"]["list"]}


def test_dashboard_has_the_variables_rows_and_datasource_it_promises():
    dashboard = load_dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 40
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "pool"):
        assert variables[name]["type"] == "query", name
        query = variables[name]["query"]
        query = query["query"] if isinstance(query, dict) else query
        assert re.fullmatch(rf"label_values\(.*, {name}\)", query), query
    assert [p["title"] for p in dashboard["panels"] if p["type"] == "row"] == [
        "Overview", "Latency", "WebSocket", "Backends", "Queue and Lua", "Process"]
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    # Each histogram gets p50, p95 and p99 over rate(..._bucket[5m]).
    exprs = " ".join(e for _, e in dashboard_expressions(dashboard))
    for name, family in METRICS.items():
        if family.type == "histogram":
            for q in ("0.5", "0.95", "0.99"):
                assert re.search(rf"histogram_quantile\({q}, sum by \(le\) \(rate\({name}_bucket"
                                 r"\{[^}]*\}\[5m\]\)\)\)", exprs), (name, q)


def test_dashboard_expressions_parse(tmp_path):
    dashboard = load_dashboard()
    variables = variable_names(dashboard)
    assert_parse([(place, concrete(expr, variables))
                  for place, expr in dashboard_expressions(dashboard)], tmp_path)


def test_dashboard_expressions_use_only_wsgate_metrics():
    dashboard = load_dashboard()
    variables = variable_names(dashboard)
    problems = []
    for place, expr in dashboard_expressions(dashboard):
        problems += expression_problems(concrete(expr, variables), place)
    assert not problems, "\n".join(problems)


def synthetic_series() -> List[dict]:
    """One promtool input series per label combination of every family in METRICS, counters
    growing, gauges at 1, histograms with four buckets: what two scrapes of a busy wsgate
    hold, with only the listed names."""
    sample_value = {"version": "1.0.0", "listener": "public", "reason": "handshake",
                    "pool": "app", "backend": "a1", "code": "1000"}
    out = []
    for name, family in METRICS.items():
        combos = [{}]
        for label in family.labels:
            values = CLOSED_VALUES.get((name, label)) or {sample_value[label]}
            combos = [{**c, label: v} for c in combos for v in sorted(values)]
        for labels in combos:
            base = {"job": "wsgate", "instance": "gw1:9900", **labels}

            def selector(metric, extra=None):
                pairs = {**base, **(extra or {})}
                return metric + "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"

            if family.type == "histogram":
                for le, per_min in (("0.005", 2), ("0.1", 6), ("1", 9), ("+Inf", 10)):
                    out.append({"series": selector(name + "_bucket", {"le": le}),
                                "values": f"0+{per_min}x20"})
                out.append({"series": selector(name + "_sum"), "values": "0+3x20"})
                out.append({"series": selector(name + "_count"), "values": "0+10x20"})
            elif family.type == "counter":
                out.append({"series": selector(name), "values": "0+60x20"})
            else:
                out.append({"series": selector(name), "values": "1x20"})
    return out


def test_every_dashboard_expression_returns_data_from_the_listed_series(tmp_path):
    """Fed only METRICS' series, each expression returns something (absent() of it is empty):
    a selector with a label or value wsgate never serves would come back empty."""
    dashboard = load_dashboard()
    variables = variable_names(dashboard)
    cases = [{"expr": f"absent({concrete(expr, variables)})", "eval_time": "10m",
              "exp_samples": []} for _, expr in dashboard_expressions(dashboard)]
    places = [place for place, _ in dashboard_expressions(dashboard)]
    path = tmp_path / "dashboard.test.yml"
    path.write_text(json.dumps({"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": synthetic_series(), "promql_expr_test": cases}]},
        indent=1))
    run = promtool("test", "rules", str(path))
    assert run.returncode == 0, (run.stdout + run.stderr + "\nexpressions in order:\n"
                                 + "\n".join(places))


# --- the real wsgate's /metrics ---------------------------------------------------------------


class Sample(NamedTuple):
    name: str
    labels: Dict[str, str]
    value: str


def parse_exposition(text: str) -> Tuple[Dict[str, str], List[Sample]]:
    """(family -> type from # TYPE, samples) of a Prometheus text exposition."""
    types, samples = {}, []
    for line in text.splitlines():
        m = re.match(r"^# TYPE (\S+) (\S+)$", line)
        if m:
            types[m.group(1)] = m.group(2)
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(rf"^({NAME})(?:\{{(.*)\}})? (\S+)(?: \S+)?$", line)
        assert m, f"unparsed exposition line: {line!r}"
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples.append(Sample(m.group(1), labels, m.group(3)))
    return types, samples


def family_of(sample: str, types: Dict[str, str]) -> str:
    if sample in types:
        return sample
    for suffix in HISTOGRAM_SUFFIXES:
        if sample.endswith(suffix) and types.get(sample[:-len(suffix)]) == "histogram":
            return sample[:-len(suffix)]
    return sample


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return tls_certs.session_pki(tmp_path_factory)


def scrape_after_traffic(start_wsgate, echo_backend, connect, pki) -> str:
    """wsgate with a plain and a TLS listener, pool app, admin on; an HTTP request, a local
    403, a WebSocket session with one message each way closed by the client, an HTTPS request
    and a failed TLS handshake (plain HTTP on the TLS port), a request behind a PROXY header
    on a proxy_protocol listener; then GET /metrics."""
    listeners = [{"name": "public", "listen": f"{harness.LOOPBACK}:0"},
                 {"name": "secure", "listen": f"{harness.LOOPBACK}:0",
                  "tls": {"certificates": [pki.localhost.listener_entry()]}},
                 {"name": "balanced", "listen": f"{harness.LOOPBACK}:0", "proxy_protocol": True,
                  "proxy_protocol_from": [f"{harness.LOOPBACK}/32"]}]
    cfg = gateway_config([route(respond=(403, "no\n"), path_prefix="/deny"),
                          route("app", path_prefix="/")],
                         {"app": harness.pool(echo_backend("echo1"))}, listeners=listeners)
    cfg["admin"] = {"listen": f"{harness.LOOPBACK}:0"}
    gate = start_wsgate(cfg)
    port = harness.admin_port(gate)

    assert connect(gate.ports["public"]).request("GET", "/a").status == 200
    assert connect(gate.ports["public"]).request("GET", "/deny").status == 403
    ws = connect(gate.ports["public"])
    assert ws.upgrade("/chat").status == 101
    ws.send_frame(wsproto.OP_TEXT, b"hello")
    assert ws.recv_message() == (wsproto.OP_TEXT, b"hello")
    ws.send_close()
    assert [f.opcode for f in ws.frames_until_eof()] == [wsproto.OP_CLOSE]
    secure = harness.TlsConn.open(gate.ports["secure"],
                                  context=harness.tls_client_context(pki.ca))
    try:
        assert secure.request("GET", "/tls").status == 200
    finally:
        secure.close()
    plain_on_tls = connect(gate.ports["secure"])
    plain_on_tls.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    plain_on_tls.read_until_eof()
    balanced = connect(gate.ports["balanced"])
    balanced.send(b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n")
    assert balanced.request("GET", "/balanced").status == 200
    gate.wait_access(lambda r: r.get("close_code") == 1000)
    gate.wait_access(lambda r: r.get("path") == "/tls")

    status, body = admin(port, "GET", "/metrics")
    assert status == 200, body
    return body


def test_live_scrape_passes_promtool_check_metrics(start_wsgate, echo_backend, connect, pki):
    """No parse error and no lint problem is tolerated: none is expected of a well-named
    exposition (units in the names, _total on counters, HELP on every family)."""
    body = scrape_after_traffic(start_wsgate, echo_backend, connect, pki)
    run = promtool("check", "metrics", stdin=body)
    assert run.returncode == 0, (f"promtool check metrics exited {run.returncode} "
                                 f"(1: the scrape does not parse, 3: lint problems):\n"
                                 f"{run.stdout}{run.stderr}\n--- scrape ---\n{body}")


def test_live_scrape_serves_every_listed_metric_with_its_type_and_labels(
        start_wsgate, echo_backend, connect, pki):
    body = scrape_after_traffic(start_wsgate, echo_backend, connect, pki)
    types, samples = parse_exposition(body)
    by_family: Dict[str, List[Sample]] = {}
    for s in samples:
        by_family.setdefault(family_of(s.name, types), []).append(s)

    missing = sorted(name for name in METRICS if name not in types)
    problems = []
    for name, family in METRICS.items():
        if name not in types:
            continue
        if types[name] != family.type:
            problems.append(f"{name}: type {types[name]}, expected {family.type}")
        got = by_family.get(name, [])
        if not got and name not in MAY_HAVE_NO_SAMPLE:
            problems.append(f"{name}: no sample after the test's traffic")
        if family.type == "histogram":
            present = {s.name for s in got}
            for suffix in HISTOGRAM_SUFFIXES:
                if got and name + suffix not in present:
                    problems.append(f"{name}: no {name + suffix}")
        for s in got:
            labels = set(s.labels) - ({"le"} if s.name.endswith("_bucket") else set())
            if labels != set(family.labels):
                problems.append(f"{s.name}: labels {sorted(labels)}, expected "
                                f"{sorted(family.labels)}")
            for label, value in s.labels.items():
                closed = CLOSED_VALUES.get((name, label))
                if closed and value not in closed:
                    problems.append(f"{s.name}: {label}={value!r} is not one of {sorted(closed)}")
        if name == "wsgate_build_info" and got and any(s.value != "1" for s in got):
            problems.append("wsgate_build_info: not 1")
    report = ""
    if missing:
        report += f"missing from /metrics ({len(missing)}): {', '.join(missing)}\n"
    if problems:
        report += "\n".join(problems) + "\n"
    assert not report, report + "--- scrape ---\n" + body
