"""The notification policy YAML (alerts/policy.py) and the matcher syntax (alerts/silences.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from alerts.model import Alert, Matcher, ReceiverConfig, Silence
from alerts.policy import (
    DEFAULT_INHIBIT_RULES,
    PAGERDUTY_EVENTS_URL,
    InhibitRule,
    Policy,
    PolicyErrors,
    Route,
    default_policy,
    load,
    load_policy,
)
from alerts.silences import (
    MatcherError,
    alert_labels,
    format_matcher,
    is_active,
    matches,
    matches_all,
    parse_matcher,
    parse_matchers,
    silenced_by,
)
from tests.conftest import ROOT

ENV = {
    "PD_KEY": "pd-routing-key",
    "SLACK_URL": "https://hooks.slack.example/T0/B0/x",
    "HOOK_URL": "http://127.0.0.1:9/hook",
    "AM_URL": "http://127.0.0.1:9093",
    "SMTP_PASSWORD": "s3cret",
}


def write(directory: Path, text: str, name: str = "policy.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path = write(tmp_path, text)
    policy, errors = load(path, ENV if environ is None else environ)
    assert errors, "expected errors"
    assert policy is None
    prefix = f"{path}:"
    return [str(e).removeprefix(prefix) for e in errors]


FULL = """
    external_url: https://sloscope.example.com/
    x-anchors:
      page: &page 'severity = page'
    route:
      receiver: hook
      group_by: [slo, service]
      group_wait: 0s
      group_interval: 2m
      repeat_interval: 1h
      routes:
        - matchers: [*page, 'service =~ "pay.*"']
          receiver: pager
          continue: true
          group_by: ['...']
          repeat_interval: 30m
          routes:
            - matchers: 'team != web, region !~ "eu-.*"'
              receiver: chat
              group_wait: 2m
        - matchers: ['{severity="ticket"}']
          receiver: mail
          group_wait: 45s
          group_interval: 10m
    receivers:
      - name: hook
        webhook: {url_env: HOOK_URL}
      - name: am
        alertmanager: {url_env: AM_URL}
      - name: pager
        pagerduty: {routing_key_env: PD_KEY}
      - name: pager-eu
        pagerduty: {routing_key_file: pd-key.txt, url_env: HOOK_URL}
      - name: chat
        send_resolved: false
        slack: {url_env: SLACK_URL}
      - name: mail
        email:
          to: [a@example.com, b@example.com]
          from: sloscope@example.com
          smarthost: smtp.example.com:587
          username: sloscope
          password_env: SMTP_PASSWORD
          starttls: false
    inhibit_rules:
      - source_matchers: ['severity = page']
        target_matchers: ['severity =~ "ticket|info"']
        equal: [slo, region]
"""


def test_every_field(tmp_path: Path) -> None:
    write(tmp_path, "pd-eu-routing-key\n", "pd-key.txt")
    path = write(tmp_path, FULL)
    policy = load_policy(path, ENV)
    chat = Route(
        key='{}/{severity="page",service=~"pay.*"}/{team!="web",region!~"eu-.*"}',
        receiver="chat",
        matchers=(Matcher("team", "!=", "web"), Matcher("region", "!~", "eu-.*")),
        group_by=(),
        group_by_all=True,
        group_wait_s=120,
        group_interval_s=120,
        repeat_interval_s=1800,
        source=f"{path}:17",
    )
    pager = Route(
        key='{}/{severity="page",service=~"pay.*"}',
        receiver="pager",
        matchers=(Matcher("severity", "=", "page"), Matcher("service", "=~", "pay.*")),
        group_by=(),
        group_by_all=True,
        group_wait_s=0,
        group_interval_s=120,
        repeat_interval_s=1800,
        continue_matching=True,
        routes=(chat,),
        source=f"{path}:11",
    )
    mail = Route(
        key='{}/{severity="ticket"}',
        receiver="mail",
        matchers=(Matcher("severity", "=", "ticket"),),
        group_by=("slo", "service"),
        group_wait_s=45,
        group_interval_s=600,
        repeat_interval_s=3600,
        source=f"{path}:20",
    )
    root = Route(
        key="{}",
        receiver="hook",
        group_by=("slo", "service"),
        group_wait_s=0,
        group_interval_s=120,
        repeat_interval_s=3600,
        routes=(pager, mail),
        source=f"{path}:5",
    )
    assert policy == Policy(
        route=root,
        receivers=(
            ReceiverConfig("hook", "webhook", (("url", ENV["HOOK_URL"]),)),
            ReceiverConfig("am", "alertmanager", (("url", ENV["AM_URL"]),)),
            ReceiverConfig(
                "pager", "pagerduty", (("routing_key", ENV["PD_KEY"]), ("url", PAGERDUTY_EVENTS_URL))
            ),
            ReceiverConfig(
                "pager-eu", "pagerduty", (("routing_key", "pd-eu-routing-key"), ("url", ENV["HOOK_URL"]))
            ),
            ReceiverConfig("chat", "slack", (("url", ENV["SLACK_URL"]),), send_resolved=False),
            ReceiverConfig(
                "mail",
                "email",
                (
                    ("from", "sloscope@example.com"),
                    ("password", "s3cret"),
                    ("smarthost", "smtp.example.com:587"),
                    ("starttls", "false"),
                    ("to", "a@example.com,b@example.com"),
                    ("username", "sloscope"),
                ),
            ),
        ),
        inhibit_rules=(
            InhibitRule(
                (Matcher("severity", "=", "page"),),
                (Matcher("severity", "=~", "ticket|info"),),
                ("slo", "region"),
                f"{path}:45",
            ),
        ),
        external_url="https://sloscope.example.com",
        source=str(path),
    )
    assert policy.receiver("chat") is policy.receivers[4]
    assert policy.receiver("nope") is None
    assert policy.incident_url("abc") == "https://sloscope.example.com/incidents/abc"


def test_route_matching_follows_alertmanager(tmp_path: Path) -> None:
    write(tmp_path, "k", "pd-key.txt")
    policy = load_policy(write(tmp_path, FULL), {**ENV, "PD_KEY": "k"})
    root = policy.route
    pager, mail = root.routes
    chat = pager.routes[0]
    page = {"severity": "page", "service": "payments", "team": "pay", "region": "us-1"}
    # The deepest match; continue on 'pager' lets the next sibling try, which does not match.
    assert root.match(page) == [chat]
    assert root.match({**page, "region": "eu-1"}) == [pager]  # chat's !~ is anchored: eu-1 excluded
    assert root.match({**page, "service": "prepay"}) == [root]  # =~ is anchored: prepay is not pay.*
    assert root.match({"severity": "ticket"}) == [mail]
    assert root.match({"severity": "info"}) == [root]
    assert mail.group_labels({"slo": "a", "service": "s", "x": "1"}) == (("service", "s"), ("slo", "a"))
    assert mail.group_labels({"slo": "a"}) == (("slo", "a"),)  # a missing group_by label is left out
    assert pager.group_labels({"b": "2", "a": "1"}) == (("a", "1"), ("b", "2"))  # '...': all labels


def test_continue_sends_to_later_siblings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        route:
          receiver: a
          routes:
            - {matchers: [severity = page], receiver: a, continue: true}
            - {matchers: [severity = page], receiver: b}
            - {matchers: [severity = page], receiver: c}
        receivers:
          - {name: a, webhook: {url_env: HOOK_URL}}
          - {name: b, webhook: {url_env: HOOK_URL}}
          - {name: c, webhook: {url_env: HOOK_URL}}
        """,
    )
    root = load_policy(path, ENV).route
    assert [r.receiver for r in root.match({"severity": "page"})] == ["a", "b"]
    assert [r.key for r in root.routes] == [
        '{}/{severity="page"}',
        '{}/{severity="page"}#1',
        '{}/{severity="page"}#2',
    ]


def test_defaults(tmp_path: Path) -> None:
    assert load_policy(None) == default_policy()
    default = default_policy()
    assert default.receivers == () and default.route.receiver is None
    assert default.route.group_by == ("slo_instance",)
    assert (default.route.group_wait_s, default.route.group_interval_s, default.route.repeat_interval_s) == (
        30,
        300,
        14400,
    )
    assert default.inhibit_rules == DEFAULT_INHIBIT_RULES
    # One receiver and no route: everything goes to it, with the default inhibition.
    policy = load_policy(write(tmp_path, "receivers: [{name: only, slack: {url_env: SLACK_URL}}]\n"), ENV)
    assert policy.route == Route(key="{}", receiver="only", source=f"{tmp_path / 'policy.yaml'}:0")
    assert policy.inhibit_rules == DEFAULT_INHIBIT_RULES
    assert policy.receivers[0].send_resolved is True
    # inhibit_rules: [] (or empty) turns the default off.
    for text in ("inhibit_rules: []\n", "inhibit_rules:\n"):
        assert load_policy(write(tmp_path, text), ENV).inhibit_rules == ()


def test_default_inhibition_is_per_slo_instance() -> None:
    (rule,) = DEFAULT_INHIBIT_RULES
    assert rule.source_matchers == (Matcher("severity", "=", "page"),)
    assert rule.target_matchers == (Matcher("severity", "=", "ticket"),)
    assert rule.equal == ("slo_instance",)
    eu = Alert("1", "checkout", "web", "ticket", (("region", "eu"),), (("slo", "checkout"),), "firing")
    bare = Alert("2", "checkout", "web", "ticket", (), (("slo", "checkout"),), "firing")
    assert alert_labels(eu)["slo_instance"] == 'checkout{region="eu"}'
    assert alert_labels(bare)["slo_instance"] == "checkout"
    given = Alert("3", "c", "web", "page", (), (("slo_instance", "mine"),), "firing")
    assert alert_labels(given)["slo_instance"] == "mine"  # labels that carry it keep theirs


def test_secrets_from_env_and_files(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    write(tmp_path, "  key-from-file\n\n", "keys/pd")
    absolute = write(tmp_path, "http://127.0.0.1:1/abs\n", "abs-url")
    path = write(
        tmp_path,
        f"""
        route: {{receiver: pd}}
        receivers:
          - {{name: pd, pagerduty: {{routing_key_file: keys/pd, url_file: {absolute}}}}}
          - {{name: hook, webhook: {{url_env: HOOK_URL}}}}
        """,
    )
    policy = load_policy(path, {"HOOK_URL": "http://127.0.0.1:2/h"})
    assert policy.receiver("pd").setting_map == {
        "routing_key": "key-from-file",
        "url": "http://127.0.0.1:1/abs",
    }
    assert policy.receiver("hook").setting_map == {"url": "http://127.0.0.1:2/h"}
    # The environment is read when the file is loaded, not later.
    with pytest.raises(PolicyErrors) as caught:
        load_policy(path, {})
    assert (
        str(caught.value)
        == f"{path}:4: receivers[1].webhook.url_env: environment variable HOOK_URL is not set"
    )


@pytest.mark.parametrize(
    ("body", "environ", "expected"),
    [
        pytest.param(
            "receivers: [{name: h, webhook: {url: 'http://127.0.0.1/x'}}]\n",
            ENV,
            [
                "1: receivers[0].webhook.url: must not be written in clear: use url_env: VARIABLE or url_file: PATH"
            ],
            id="clear-url",
        ),
        pytest.param(
            "receivers:\n  - name: p\n    pagerduty:\n      routing_key: abc\n",
            ENV,
            [
                "4: receivers[0].pagerduty.routing_key: must not be written in clear: use routing_key_env: "
                "VARIABLE or routing_key_file: PATH"
            ],
            id="clear-routing-key",
        ),
        pytest.param(
            "receivers:\n  - name: m\n    email:\n      to: a@example.com\n      from: b@example.com\n"
            "      smarthost: smtp:25\n      username: u\n      password: hunter2\n",
            ENV,
            [
                "8: receivers[0].email.password: must not be written in clear: use password_env: VARIABLE or "
                "password_file: PATH"
            ],
            id="clear-password",
        ),
        pytest.param(
            "receivers: [{name: h, webhook: {url_env: NOPE}}]\n",
            ENV,
            ["1: receivers[0].webhook.url_env: environment variable NOPE is not set"],
            id="env-unset",
        ),
        pytest.param(
            "receivers: [{name: h, webhook: {url_env: HOOK_URL}}]\n",
            {"HOOK_URL": "  "},
            ["1: receivers[0].webhook.url_env: environment variable HOOK_URL is empty"],
            id="env-empty",
        ),
        pytest.param(
            "receivers: [{name: h, slack: {url_env: SLACK_URL}}]\n",
            {"SLACK_URL": "hooks.slack.com/x"},
            # The value is a secret: the message names the variable, never what it holds.
            ["1: receivers[0].slack.url_env: environment variable SLACK_URL does not hold an http(s) URL"],
            id="env-not-url",
        ),
        pytest.param(
            "receivers: [{name: h, webhook: {url_file: missing.txt}}]\n",
            ENV,
            ["1: receivers[0].webhook.url_file: cannot read {dir}/missing.txt: No such file or directory"],
            id="file-missing",
        ),
        pytest.param(
            "receivers: [{name: h, webhook: {url_env: HOOK_URL, url_file: x}}]\n",
            ENV,
            ["1: receivers[0].webhook.url_file: give url_env or url_file, not both"],
            id="env-and-file",
        ),
        pytest.param(
            "receivers:\n  - name: h\n    webhook: {}\n",
            ENV,
            ["3: receivers[0].webhook.url_env: is required (or url_file)"],
            id="url-missing",
        ),
        pytest.param(
            "route: {receiver: h}\nreceivers:\n  - name: h\n    webhook: {url_env: HOOK_URL}\n"
            "    slack: {url_env: SLACK_URL}\n  - name: i\n",
            ENV,
            [
                "3: receivers[0]: has webhook and slack: give exactly one kind per receiver",
                "6: receivers[1]: needs one of webhook, alertmanager, pagerduty, slack, email",
            ],
            id="kinds",
        ),
        pytest.param(
            "route: {receiver: h}\nreceivers:\n  - {name: h, webhook: {url_env: HOOK_URL}}\n"
            "  - {name: h, slack: {url_env: SLACK_URL}}\n  - {name: 'a b', slack: {url_env: SLACK_URL}}\n",
            ENV,
            [
                "4: receivers[1].name: duplicate receiver 'h' (first at line 3)",
                "5: receivers[2].name: 'a b' is not a valid name (letters, digits, '.', '_' and '-', starting "
                "and ending with a letter or digit, at most 128 characters)",
            ],
            id="receiver-names",
        ),
        pytest.param(
            "receivers:\n  - name: m\n    email:\n      to: [a@example.com, nobody]\n      from: b@example.com\n"
            "      smarthost: smtp.example.com\n      password_env: SMTP_PASSWORD\n      starttls: yes please\n",
            ENV,
            [
                "4: receivers[0].email.to[1]: 'nobody' is not an email address",
                "4: receivers[0].email.username: is required with a password",
                "6: receivers[0].email.smarthost: 'smtp.example.com' is not host:port (e.g. smtp.example.com:587)",
                "8: receivers[0].email.starttls: must be true or false, got 'yes please'",
            ],
            id="email",
        ),
        pytest.param(
            "receivers: [{name: h, webhook: {url_env: HOOK_URL, max_alerts: 3}, send_resolve: true}]\n",
            ENV,
            [
                "1: receivers[0].send_resolve: unknown key 'send_resolve' (did you mean 'send_resolved'?)",
                "1: receivers[0].webhook.max_alerts: unknown key 'max_alerts' (expected one of url, url_env, "
                "url_file, bearer_token, bearer_token_env, bearer_token_file)",
            ],
            id="receiver-unknown-keys",
        ),
        pytest.param(
            "rout: {}\nglobal: {}\n",
            ENV,
            [
                "1: rout: unknown key 'rout' (did you mean 'route'?)",
                "2: global: unknown key 'global' (expected one of route, receivers, inhibit_rules, external_url)",
            ],
            id="top-unknown-keys",
        ),
        pytest.param(
            "route:\n  receiver: h\n  group_wiat: 1m\n  routes:\n    - match: {severity: page}\n"
            "receivers: [{name: h, webhook: {url_env: HOOK_URL}}]\n",
            ENV,
            [
                "3: route.group_wiat: unknown key 'group_wiat' (did you mean 'group_wait'?)",
                "5: route.routes[0].match: unknown key 'match' (did you mean 'matchers'?)",
            ],
            id="route-unknown-keys",
        ),
        pytest.param(
            "route:\n  receiver: pagr\n  routes:\n    - {receiver: nobody}\n"
            "receivers: [{name: pager, webhook: {url_env: HOOK_URL}}]\n",
            ENV,
            [
                "2: route.receiver: unknown receiver 'pagr' (did you mean 'pager'?)",
                "4: route.routes[0].receiver: unknown receiver 'nobody' (expected one of pager)",
            ],
            id="unknown-receiver",
        ),
        pytest.param(
            "route: {receiver: x}\n",
            ENV,
            ["1: route.receiver: unknown receiver 'x' (no receivers are defined)"],
            id="receiver-without-receivers",
        ),
        pytest.param(
            "route:\n  group_by: [slo]\nreceivers: [{name: h, webhook: {url_env: HOOK_URL}}]\n",
            ENV,
            ["2: route.receiver: is required (it receives what no child route takes)"],
            id="root-receiver",
        ),
        pytest.param(
            "receivers:\n  - {name: a, webhook: {url_env: HOOK_URL}}\n  - {name: b, webhook: {url_env: HOOK_URL}}\n",
            ENV,
            ["1: route: is required when there are several receivers (route: {receiver: NAME})"],
            id="route-required",
        ),
        pytest.param(
            "route:\n  matchers: [severity = page]\n  continue: true\n",
            ENV,
            [
                "2: route.matchers: not allowed on the root route (it takes every alert)",
                "3: route.continue: not allowed on the root route (it takes every alert)",
            ],
            id="root-matchers",
        ),
        pytest.param(
            "route:\n  routes:\n    - matchers: ['severity ~ page']\n    - matchers: ['service =~ \"(pay\"']\n"
            "    - matchers: [42]\n    - matchers: ['a = \"x']\n    - {matchers: [a = b], continue: maybe}\n",
            ENV,
            [
                "3: route.routes[0].matchers[0]: 'severity ~ page': expected =, !=, =~ or !~ after label 'severity'",
                "4: route.routes[1].matchers[0]: 'service =~ \"(pay\"': '(pay' is not a valid regex "
                "(missing ), unterminated subpattern at position 0)",
                "5: route.routes[2].matchers[0]: must be text, got '42' (quote it)",
                "6: route.routes[3].matchers[0]: 'a = \"x': unterminated quoted value",
                "7: route.routes[4].continue: must be true or false, got 'maybe'",
            ],
            id="matchers",
        ),
        pytest.param(
            "route:\n  group_by: [slo, '...']\n  routes:\n    - group_by: [slo, slo, 'a b']\n",
            ENV,
            [
                "2: route.group_by[1]: '...' (all labels) must be the only entry of group_by",
                "4: route.routes[0].group_by[1]: 'slo' is listed twice",
                "4: route.routes[0].group_by[2]: 'a b' is not a label name (letters, digits, '_', '.', '-', '/')",
            ],
            id="group-by",
        ),
        pytest.param(
            "route:\n  group_wait: 90s\n  group_interval: 30s\n  routes:\n    - repeat_interval: 5\n"
            "    - {group_wait: soon, group_interval: 10m, repeat_interval: 5m}\n",
            ENV,
            [
                "2: route.group_wait: '90s' must be under a minute or a whole number of minutes",
                "3: route.group_interval: '30s' must be a whole number of minutes",
                "5: route.routes[0].repeat_interval: '5' is not a duration like 5m, 1h, 28d (a positive whole "
                "number and s/m/h/d/w)",
                "6: route.routes[1].group_wait: 'soon' is not a duration like 5m, 1h, 28d (a positive whole "
                "number and s/m/h/d/w)",
                "6: route.routes[1].repeat_interval: repeat_interval (5m) must not be shorter than "
                "group_interval (10m): repeats go out at group_interval ticks",
            ],
            id="durations",
        ),
        pytest.param(
            "inhibit_rules:\n  - source_matchers: []\n  - {target_matchers: [a = b], equal: [x, x], extra: 1}\n",
            ENV,
            [
                "2: inhibit_rules[0].target_matchers: is required",
                "2: inhibit_rules[0].source_matchers: needs at least one matcher",
                "3: inhibit_rules[1].extra: unknown key 'extra' (expected one of source_matchers, "
                "target_matchers, equal)",
                "3: inhibit_rules[1].source_matchers: is required",
                "3: inhibit_rules[1].equal[1]: 'x' is listed twice",
            ],
            id="inhibit-rules",
        ),
        pytest.param(
            "external_url: sloscope.example.com\n",
            ENV,
            ["1: external_url: must be an http(s) URL, got 'sloscope.example.com'"],
            id="external-url",
        ),
        pytest.param(
            "route:\n  receiver: [a\n",
            ENV,
            ["3: (yaml): expected ',' or ']', but got '<stream end>'"],
            id="yaml-syntax",
        ),
        pytest.param("[]\n", ENV, ["1: (document): must be a mapping, got a list"], id="not-a-mapping"),
    ],
)
def test_errors(tmp_path: Path, body: str, environ: dict[str, str], expected: list[str]) -> None:
    assert errors_of(tmp_path, body, environ) == [e.replace("{dir}", str(tmp_path)) for e in expected]


def test_file_errors(tmp_path: Path) -> None:
    assert [str(e) for e in load(tmp_path / "nope.yaml")[1]] == [
        f"{tmp_path / 'nope.yaml'}: (path): no such file"
    ]
    empty = write(tmp_path, "")
    assert [str(e) for e in load(empty)[1]] == [
        f"{empty}: (document): the file is empty (leave out the policy for the default)"
    ]
    with pytest.raises(PolicyErrors):
        load_policy(empty)


def test_example_policy_validates() -> None:
    environ = {
        "PAGERDUTY_ROUTING_KEY": "k",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.example/x",
        "TICKETS_WEBHOOK_URL": "http://127.0.0.1:9/t",
        "SMTP_PASSWORD": "pw",
    }
    policy = load_policy(ROOT / "examples" / "alerting" / "policy.yaml", environ)
    assert [r.name for r in policy.receivers] == ["oncall", "chat", "tickets", "payments-mail"]
    assert [r.receiver for r in policy.route.match({"severity": "page", "service": "pay"})] == [
        "oncall",
        "chat",
    ]
    assert [r.receiver for r in policy.route.match({"severity": "ticket", "service": "payments"})] == [
        "payments-mail"
    ]


# -- matchers ----------------------------------------------------------------------------------


def test_matcher_syntax() -> None:
    assert parse_matcher("severity = page") == Matcher("severity", "=", "page")
    assert parse_matcher('service =~ "pay.*"') == Matcher("service", "=~", "pay.*")
    assert parse_matcher("team!=web") == Matcher("team", "!=", "web")
    assert parse_matcher('http.route !~ "/health|/ready"') == Matcher("http.route", "!~", "/health|/ready")
    assert parse_matcher('a = "quote \\" back\\\\slash\\n"') == Matcher("a", "=", 'quote " back\\slash\n')
    assert parse_matcher('a = ""') == Matcher("a", "=", "")
    assert parse_matcher("a =") == Matcher("a", "=", "")
    assert parse_matchers('{severity="page", slo=~"checkout.*",}') == [
        Matcher("severity", "=", "page"),
        Matcher("slo", "=~", "checkout.*"),
    ]
    assert parse_matchers('a = "x,y", b = c') == [Matcher("a", "=", "x,y"), Matcher("b", "=", "c")]
    for matcher in (Matcher("a", "=", 'x"y\\z\n'), Matcher("b", "!=", "")):
        assert parse_matcher(format_matcher(matcher)) == matcher
    for bad, problem in [
        ("", "'' holds no matcher (write one like 'severity = page')"),
        ("= page", "'= page' is not a matcher like 'severity = page'"),
        ("{a = b", "'{a = b' opens '{' but does not close it"),
        ("a = b, c", "'a = b, c': expected =, !=, =~ or !~ after label 'c'"),
        ('a = "x\\q"', "'a = \"x\\\\q\"': unknown escape '\\q' (use \\\", \\\\ or \\n)"),
        ("a = b, c = d", "'a = b, c = d' holds 2 matchers, expected one"),
        ("a = {b}", "'a = {b}': quote a value holding '{'"),
    ]:
        with pytest.raises(MatcherError) as caught:
            parse_matcher(bad)
        assert str(caught.value).startswith(problem), (bad, str(caught.value))


def test_matching_semantics() -> None:
    labels = {"service": "payments", "team": "web"}
    assert matches(parse_matcher('service =~ "pay.*"'), labels)
    assert not matches(parse_matcher('service =~ "pay"'), labels)  # anchored: the whole value
    assert not matches(parse_matcher('service =~ "ments"'), labels)
    assert matches(parse_matcher('service !~ "pay"'), labels)
    assert matches(parse_matcher('region = ""'), labels)  # a missing label is the empty value
    assert matches(parse_matcher("region != eu"), labels)
    assert not matches(parse_matcher('region =~ ".+"'), labels)
    assert matches(parse_matcher('team =~ "web|api"'), labels)
    assert matches_all([], labels)
    assert not matches_all(parse_matchers("team = web, service = x"), labels)


def test_silence_activity() -> None:
    silence = Silence("s1", (Matcher("service", "=", "payments"),), starts_at_s=600, ends_at_s=1200)
    assert [is_active(silence, t) for t in (540, 600, 1140, 1200)] == [False, True, True, False]
    assert silenced_by({"service": "payments"}, [silence], 900) == ["s1"]
    assert silenced_by({"service": "web"}, [silence], 900) == []
    assert silenced_by({"service": "payments"}, [Silence("empty", (), 0, 10_000)], 900) == []
