"""The notification policy: which receivers get which alerts, grouped how, how often (``docs/alerting.md``).

One YAML file, Alertmanager's shape where it fits: a ``route`` tree (``receiver``, ``group_by``,
``group_wait``, ``group_interval``, ``repeat_interval``, ``matchers``, ``continue``, nested ``routes``
inheriting from their parent), ``receivers`` (each a name and exactly one of ``webhook``,
``alertmanager``, ``pagerduty``, ``slack``, ``email``), ``inhibit_rules`` and ``external_url``.
Secrets and URLs never appear in clear: they are ``url_env: VAR`` or ``url_file: PATH`` and are
resolved when the file is loaded, so a missing variable is reported at start-up, not at 3 a.m. when
the first page should go out.

Problems are reported like SLO specs, ``file:line: field.path: problem``, all of them in one run,
with the YAML node helpers of :mod:`slo.spec`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast, get_args
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from alerts.model import SLO_INSTANCE_LABEL, Matcher, ReceiverConfig, ReceiverKind
from alerts.redact import receiver_secrets
from alerts.silences import MatcherError, format_matcher, matches_all, parse_matchers
from slo.filters import FilterError, check_key
from slo.model import MINUTE_S, format_duration
from slo.spec import Fields, Reader, SpecError, SpecErrors, join, one_of

#: Alertmanager's defaults. On the evaluator's minute clock a group_wait under a minute means "in
#: the evaluation that opened the group": alerts arrive once a minute, all at once, so there is
#: nothing to wait for.
DEFAULT_GROUP_WAIT_S = 30
DEFAULT_GROUP_INTERVAL_S = 5 * MINUTE_S
DEFAULT_REPEAT_INTERVAL_S = 4 * 60 * MINUTE_S
#: One incident per SLO instance unless the policy says otherwise (Alertmanager's default, no
#: grouping labels, would put every alert of every SLO into one incident).
DEFAULT_GROUP_BY: tuple[str, ...] = (SLO_INSTANCE_LABEL,)
#: ``group_by: ['...']``: group by all labels, i.e. one incident per alert.
GROUP_BY_ALL = "..."
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

RECEIVER_KINDS: tuple[str, ...] = get_args(ReceiverKind)
ROUTE_KEYS = (
    "receiver",
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "matchers",
    "continue",
    "routes",
)
RECEIVER_KEYS = ("name", "send_resolved", *RECEIVER_KINDS)
INHIBIT_KEYS = ("source_matchers", "target_matchers", "equal")
TOP_KEYS = ("route", "receivers", "inhibit_rules", "external_url")


@dataclass(frozen=True)
class Setting:
    """One setting of a receiver kind: a secret is read from ``{name}_env`` or ``{name}_file`` only."""

    name: str
    secret: bool
    required: bool
    what: str  # "url", "email", "hostport", "text", "bool", "emails"


#: The settings of each receiver kind, as they land in ReceiverConfig.settings.
SETTINGS: dict[str, tuple[Setting, ...]] = {
    # bearer_token: documented for both kinds (docs/receivers.md) and read by their receivers.
    "webhook": (Setting("url", True, True, "url"), Setting("bearer_token", True, False, "text")),
    "alertmanager": (Setting("url", True, True, "url"), Setting("bearer_token", True, False, "text")),
    "pagerduty": (Setting("routing_key", True, True, "text"), Setting("url", True, False, "url")),
    "slack": (Setting("url", True, True, "url"),),
    "email": (
        Setting("to", False, True, "emails"),
        Setting("from", False, True, "email"),
        Setting("smarthost", False, True, "hostport"),
        Setting("username", False, False, "text"),
        Setting("password", True, False, "text"),
        Setting("starttls", False, False, "bool"),
    ),
}


# -- the policy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A node of the route tree, with everything it inherits from its parents already filled in."""

    #: Identity of the route for aggregation groups: the chain of matcher sets from the root, like
    #: Alertmanager's route key (``{}/{severity="page"}``), so reordering unrelated routes keeps open
    #: incidents; ``#i`` is appended when siblings have the same matchers.
    key: str
    #: None only in a policy without receivers: incidents are recorded, nothing is sent.
    receiver: str | None
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    group_by_all: bool = False
    group_wait_s: int = DEFAULT_GROUP_WAIT_S
    group_interval_s: int = DEFAULT_GROUP_INTERVAL_S
    repeat_interval_s: int = DEFAULT_REPEAT_INTERVAL_S
    #: Alertmanager's ``continue``: after this route matched, try its later siblings too.
    continue_matching: bool = False
    routes: tuple[Route, ...] = ()
    source: str = ""

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with ``labels`` ends at, in order (Alertmanager's ``Route.Match``):
        the deepest matching routes, trying children in order and stopping after the first match
        unless it has ``continue``; this route itself when no child matches."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_matching:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The labels of the aggregation group (incident) an alert with ``labels`` belongs to: the
        group_by labels it has (a missing one is left out, as in Alertmanager), sorted."""
        if self.group_by_all:
            return tuple(sorted(labels.items()))
        return tuple(sorted((k, labels[k]) for k in self.group_by if k in labels))

    def walk(self) -> Iterator[Route]:
        """This route and all below it, depth first."""
        yield self
        for child in self.routes:
            yield from child.walk()


@dataclass(frozen=True)
class InhibitRule:
    """A firing alert matching ``source_matchers`` mutes alerts matching ``target_matchers`` that
    have the same values of the ``equal`` labels (a label both lack counts as equal)."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()
    source: str = ""


#: Used when the file has no ``inhibit_rules`` key: a firing page mutes the ticket of the same SLO
#: instance (``slo_instance``: the SLO and its group labels, so a page of one region does not mute
#: the ticket of another). ``inhibit_rules: []`` turns it off.
DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(
        source_matchers=(Matcher("severity", "=", "page"),),
        target_matchers=(Matcher("severity", "=", "ticket"),),
        equal=(SLO_INSTANCE_LABEL,),
        source="(default)",
    ),
)


@dataclass(frozen=True)
class Policy:
    route: Route
    receivers: tuple[ReceiverConfig, ...] = ()
    inhibit_rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES
    #: Base of the links in notifications: ``{external_url}/incidents/{id}``; empty for no links.
    external_url: str = ""
    #: The file it was read from ('' for the built-in default).
    source: str = ""

    def receiver(self, name: str | None) -> ReceiverConfig | None:
        """The receiver called ``name`` (None for None or an unknown name)."""
        return next((r for r in self.receivers if r.name == name), None)

    def incident_url(self, incident_id: str) -> str:
        """The link to an incident's page, or '' without an external_url."""
        return f"{self.external_url}/incidents/{incident_id}" if self.external_url else ""

    def secrets(self) -> tuple[str, ...]:
        """Every string to keep out of logs and errors: the receivers' secrets and their parts
        (:func:`alerts.redact.receiver_secrets`)."""
        return tuple(sorted({s for r in self.receivers for s in receiver_secrets(r)}))


def default_policy() -> Policy:
    """The policy when the operator gives none: no receivers, so alerts and incidents are recorded
    (one incident per SLO instance, the default inhibition) and nothing is sent."""
    return Policy(route=Route(key="{}", receiver=None, source="(default)"))


class PolicyErrors(SpecErrors):
    """Raised by :func:`load_policy` with every problem of the file."""


# -- loading -----------------------------------------------------------------------------------


@dataclass
class _Loader:
    r: Reader
    directory: Path
    environ: Mapping[str, str]
    #: Receiver names referenced by routes: (node, path, name), checked once receivers are read.
    references: list[tuple[Node, str, str]] = field(default_factory=list)
    #: Every receiver name written, also of receivers with errors (no "unknown receiver" for them).
    declared: list[str] = field(default_factory=list)

    def read_policy(self, root: Node) -> Policy | None:
        r = self.r
        if not isinstance(root, MappingNode):
            r.mapping(root, "", TOP_KEYS)  # reports "must be a mapping"
            return None
        # Top-level keys starting with x- are ignored (room for YAML anchors), as in SLO specs.
        extensions = [
            k.value for k, _ in root.value if isinstance(k, ScalarNode) and k.value.startswith("x-")
        ]
        fields = r.mapping(root, "", (*TOP_KEYS, *extensions))
        if fields is None:
            return None
        receivers = self.read_receivers(fields.get("receivers"), "receivers")
        if "route" in fields:
            route = self.read_route(fields["route"], "route", None, "{}")
        elif len(self.declared) > 1:
            r.error(root, "route", "is required when there are several receivers (route: {receiver: NAME})")
            route = None
        else:
            route = Route(
                key="{}", receiver=self.declared[0] if self.declared else None, source=f"{r.file}:0"
            )
        for node, path, name in self.references:
            if name not in self.declared:
                hint = one_of(name, self.declared) if self.declared else "no receivers are defined"
                r.error(node, path, f"unknown receiver {name!r} ({hint})")
        if "route" in fields and route is not None and route.receiver is None and self.declared:
            r.error(
                fields.get("route"), "route.receiver", "is required (it receives what no child route takes)"
            )
        if "inhibit_rules" in fields:
            inhibit = self.read_inhibit_rules(fields["inhibit_rules"], "inhibit_rules")
        elif fields.key_nodes.get("inhibit_rules") is not None:
            inhibit = ()  # 'inhibit_rules:' with nothing after it: no rules, as written
        else:
            inhibit = DEFAULT_INHIBIT_RULES
        external_url = self.read_url(fields.get("external_url"), "external_url") or ""
        if r.errors or route is None:
            return None
        return Policy(
            route=route,
            receivers=tuple(receivers),
            inhibit_rules=inhibit,
            external_url=external_url.rstrip("/"),
            source=r.file,
        )

    # -- routes

    def read_route(self, node: Node, path: str, parent: Route | None, key: str) -> Route | None:
        r = self.r
        fields = r.mapping(node, path, ROUTE_KEYS)
        if fields is None:
            return None
        start = r.count
        if parent is None:
            for forbidden in ("matchers", "continue"):
                if forbidden in fields.key_nodes:
                    r.error(
                        fields.key_nodes[forbidden],
                        join(path, forbidden),
                        "not allowed on the root route (it takes every alert)",
                    )
        receiver = parent.receiver if parent else None
        if "receiver" in fields:
            name = r.text(fields["receiver"], join(path, "receiver"))
            if name is not None:
                self.references.append((fields["receiver"], join(path, "receiver"), name))
                receiver = name
        group_by, group_all = (parent.group_by, parent.group_by_all) if parent else (DEFAULT_GROUP_BY, False)
        if "group_by" in fields:
            read = self.read_group_by(fields["group_by"], join(path, "group_by"))
            if read is not None:
                group_by, group_all = read
        wait = self.read_group_wait(fields.get("group_wait"), join(path, "group_wait"))
        interval = r.duration(fields.get("group_interval"), join(path, "group_interval"))
        repeat = r.duration(fields.get("repeat_interval"), join(path, "repeat_interval"))
        wait = wait if wait is not None else parent.group_wait_s if parent else DEFAULT_GROUP_WAIT_S
        interval = interval or (parent.group_interval_s if parent else DEFAULT_GROUP_INTERVAL_S)
        repeat = repeat or (parent.repeat_interval_s if parent else DEFAULT_REPEAT_INTERVAL_S)
        if repeat < interval and ("repeat_interval" in fields or "group_interval" in fields):
            where = "repeat_interval" if "repeat_interval" in fields else "group_interval"
            r.error(
                fields[where],
                join(path, where),
                f"repeat_interval ({format_duration(repeat)}) must not be shorter than group_interval "
                f"({format_duration(interval)}): repeats go out at group_interval ticks",
            )
        matchers = self.read_matchers(fields.get("matchers"), join(path, "matchers")) if parent else ()
        proceed = r.boolean(fields.get("continue"), join(path, "continue")) if parent else False
        children: list[Route] = []
        items = r.sequence(fields.get("routes"), join(path, "routes")) or []
        this = Route(
            key=key,
            receiver=receiver,
            matchers=matchers or (),
            group_by=group_by,
            group_by_all=group_all,
            group_wait_s=wait,
            group_interval_s=interval,
            repeat_interval_s=repeat,
            continue_matching=bool(proceed),
            source=f"{r.file}:{node.start_mark.line + 1}",
        )
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            child_matchers = _peek_matchers(item)
            child_key = f"{key}/{{{child_matchers}}}"
            if child_key in seen:
                child_key = f"{child_key}#{i}"
            seen.setdefault(child_key, i)
            child = self.read_route(item, f"{join(path, 'routes')}[{i}]", this, child_key)
            if child is not None:
                children.append(child)
        if r.count > start or matchers is None:
            return None
        return replace(this, routes=tuple(children))

    def read_group_by(self, node: Node, path: str) -> tuple[tuple[str, ...], bool] | None:
        r = self.r
        items = r.texts(node, path)
        if items is None:
            return None
        labels: list[str] = []
        start = r.count
        for item, item_path, label in items:
            if label == GROUP_BY_ALL:
                if len(items) > 1:
                    r.error(item, item_path, "'...' (all labels) must be the only entry of group_by")
                continue
            try:
                check_key(label)
            except FilterError:
                r.error(
                    item, item_path, f"{label!r} is not a label name (letters, digits, '_', '.', '-', '/')"
                )
                continue
            if label in labels:
                r.error(item, item_path, f"{label!r} is listed twice")
            labels.append(label)
        if r.count > start:
            return None
        if any(label == GROUP_BY_ALL for _, _, label in items):
            return (), True
        return tuple(labels), False

    def read_group_wait(self, node: Node | None, path: str) -> int | None:
        if isinstance(node, ScalarNode) and node.value in ("0", "0s"):
            return 0
        seconds = self.r.duration(node, path, whole_minutes=False)
        if seconds is not None and seconds > MINUTE_S and seconds % MINUTE_S:
            self.r.error(node, path, f"{node.value!r} must be under a minute or a whole number of minutes")  # type: ignore[union-attr]
            return None
        return seconds

    def read_matchers(self, node: Node | None, path: str) -> tuple[Matcher, ...] | None:
        if node is None:
            return ()
        items = self.r.texts(node, path)
        if items is None:
            return None
        out: list[Matcher] = []
        ok = True
        for item, item_path, text in items:
            try:
                out.extend(parse_matchers(text))
            except MatcherError as exc:
                self.r.error(item, item_path, str(exc))
                ok = False
        return tuple(out) if ok else None

    # -- inhibition

    def read_inhibit_rules(self, node: Node, path: str) -> tuple[InhibitRule, ...]:
        r = self.r
        out: list[InhibitRule] = []
        for i, item in enumerate(r.sequence(node, path) or ()):
            item_path = f"{path}[{i}]"
            fields = r.mapping(item, item_path, INHIBIT_KEYS, required=("source_matchers", "target_matchers"))
            if fields is None:
                continue
            start = r.count
            sides: list[tuple[Matcher, ...]] = []
            for side in ("source_matchers", "target_matchers"):
                found = self.read_matchers(fields.get(side), join(item_path, side))
                if found == () and side in fields:
                    r.error(fields[side], join(item_path, side), "needs at least one matcher")
                sides.append(found or ())
            equal: list[str] = []
            for label_node, label_path, label in r.texts(fields.get("equal"), join(item_path, "equal")) or ():
                try:
                    check_key(label)
                except FilterError:
                    r.error(label_node, label_path, f"{label!r} is not a label name")
                    continue
                if label in equal:
                    r.error(label_node, label_path, f"{label!r} is listed twice")
                equal.append(label)
            if r.count == start:
                out.append(
                    InhibitRule(sides[0], sides[1], tuple(equal), f"{r.file}:{item.start_mark.line + 1}")
                )
        return tuple(out)

    # -- receivers

    def read_receivers(self, node: Node | None, path: str) -> list[ReceiverConfig]:
        r = self.r
        out: list[ReceiverConfig] = []
        first: dict[str, int] = {}
        for i, item in enumerate(r.sequence(node, path) or ()):
            item_path = f"{path}[{i}]"
            fields = r.mapping(item, item_path, RECEIVER_KEYS, required=("name",))
            if fields is None:
                continue
            start = r.count
            name = r.name(fields.get("name"), join(item_path, "name"))
            if name is not None:
                self.declared.append(name)
                line = fields["name"].start_mark.line + 1
                if name in first:
                    r.error(
                        fields["name"],
                        join(item_path, "name"),
                        f"duplicate receiver {name!r} (first at line {first[name]})",
                    )
                first.setdefault(name, line)
            send_resolved = r.boolean(fields.get("send_resolved"), join(item_path, "send_resolved"))
            kinds = [k for k in RECEIVER_KINDS if k in fields]
            if len(kinds) != 1:
                problem = (
                    "needs one of " + ", ".join(RECEIVER_KINDS)
                    if not kinds
                    else f"has {' and '.join(kinds)}: give exactly one kind per receiver"
                )
                r.error(item, item_path, problem)
                continue
            kind = kinds[0]
            settings = self.read_settings(fields[kind], join(item_path, kind), kind)
            if r.count > start or name is None or settings is None:
                continue
            out.append(
                ReceiverConfig(
                    name=name,
                    kind=cast(ReceiverKind, kind),
                    settings=settings,
                    send_resolved=True if send_resolved is None else send_resolved,
                )
            )
        return out

    def read_settings(self, node: Node, path: str, kind: str) -> tuple[tuple[str, str], ...] | None:
        r = self.r
        specs = SETTINGS[kind]
        known: list[str] = []
        for s in specs:
            # The clear-text key is "known" so that it gets the use-_env/_file message, not "unknown".
            known.extend((s.name, f"{s.name}_env", f"{s.name}_file") if s.secret else (s.name,))
        fields = r.mapping(node, path, known)
        if fields is None:
            return None
        start = r.count
        out: dict[str, str] = {}
        for s in specs:
            if s.secret:
                value = self.read_secret(fields, path, s)
            else:
                value = self.read_plain(fields.get(s.name), join(path, s.name), s)
                if value is None and s.required and s.name not in fields:
                    r.error(fields.node, join(path, s.name), "is required")
            if value is not None:
                out[s.name] = value
        if kind == "pagerduty" and "url" not in out and r.count == start:
            out["url"] = PAGERDUTY_EVENTS_URL
        if kind == "email" and "password" in out and "username" not in out:
            r.error(fields.node, join(path, "username"), "is required with a password")
        if r.count > start:
            return None
        return tuple(sorted(out.items()))

    def read_secret(self, fields: Fields, path: str, s: Setting) -> str | None:
        r = self.r
        if s.name in fields.key_nodes:
            r.error(
                fields.key_nodes[s.name],
                join(path, s.name),
                f"must not be written in clear: use {s.name}_env: VARIABLE or {s.name}_file: PATH",
            )
            return None
        env, file = fields.get(f"{s.name}_env"), fields.get(f"{s.name}_file")
        if env is not None and file is not None:
            r.error(file, join(path, f"{s.name}_file"), f"give {s.name}_env or {s.name}_file, not both")
            return None
        if env is None and file is None:
            if s.required:
                r.error(
                    fields.node,
                    join(path, f"{s.name}_env"),
                    f"is required (or {s.name}_file)",
                )
            return None
        if env is not None:
            where = join(path, f"{s.name}_env")
            variable = r.text(env, where)
            if variable is None:
                return None
            value = self.environ.get(variable)
            if value is None:
                r.error(env, where, f"environment variable {variable} is not set")
                return None
            origin, node = f"environment variable {variable}", env
        else:
            where = join(path, f"{s.name}_file")
            name = r.text(file, where)
            if name is None:
                return None
            target = self.directory / Path(name).expanduser()
            try:
                value = target.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                r.error(file, where, f"cannot read {target}: {getattr(exc, 'strerror', None) or exc}")
                return None
            origin, node = f"file {target}", file
        value = value.strip()  # a trailing newline from `echo ... > file` is not part of the secret
        if not value:
            r.error(node, where, f"{origin} is empty")
            return None
        if s.what == "url" and not _is_url(value):
            # The value itself is a secret: name where it came from, not what it holds.
            r.error(node, where, f"{origin} does not hold an http(s) URL")
            return None
        return value

    def read_plain(self, node: Node | None, path: str, s: Setting) -> str | None:
        r = self.r
        if node is None:
            return None
        if s.what == "bool":
            value = r.boolean(node, path)
            return None if value is None else str(value).lower()
        if s.what == "emails":
            items = r.texts(node, path)
            if items is None:
                return None
            bad = [(n, p, t) for n, p, t in items if not _is_email(t)]
            for n, p, t in bad:
                r.error(n, p, f"{t!r} is not an email address")
            return None if bad else ",".join(t.strip() for _, _, t in items)
        text = r.text(node, path)
        if text is None:
            return None
        if s.what == "email" and not _is_email(text):
            r.error(node, path, f"{text!r} is not an email address")
            return None
        if s.what == "hostport" and not _is_hostport(text):
            r.error(node, path, f"{text!r} is not host:port (e.g. smtp.example.com:587)")
            return None
        return text

    def read_url(self, node: Node | None, path: str) -> str | None:
        text = self.r.text(node, path)
        if text is not None and not _is_url(text):
            self.r.error(node, path, f"must be an http(s) URL, got {text!r}")
            return None
        return text


def _peek_matchers(node: Node) -> str:
    """The matcher text of a route node before it is read, for its key (errors are reported when
    the route itself is read)."""
    if not isinstance(node, MappingNode):
        return ""
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == "matchers":
            texts = [value_node] if isinstance(value_node, ScalarNode) else getattr(value_node, "value", [])
            found: list[str] = []
            for text in texts:
                try:
                    found.extend(format_matcher(m) for m in parse_matchers(str(text.value)))
                except (MatcherError, AttributeError):
                    return ""
            return ",".join(found)
    return ""


def _is_url(text: str) -> bool:
    try:
        url = urlsplit(text)
    except ValueError:  # "http://1[27.0.0.1" (an unclosed IPv6 bracket)
        return False
    return url.scheme in ("http", "https") and bool(url.netloc)


def _is_email(text: str) -> bool:
    local, _, domain = text.strip().rpartition("@")
    return bool(local) and ("." in domain or domain == "localhost")


def _is_hostport(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> tuple[Policy | None, list[SpecError]]:
    """The policy in ``path`` and every problem found (the policy is None if there is any).

    Secrets are read from ``environ`` (default: the process environment) and from files relative to
    the policy file's directory."""
    path = Path(path)
    r = Reader(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [SpecError(str(path), 0, "(path)", "no such file")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [SpecError(str(path), 0, "(file)", f"cannot be read: {exc}")]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return None, [
            SpecError(str(path), mark.line + 1 if mark else 0, "(yaml)", str(exc.problem or exc.context))
        ]
    except yaml.YAMLError as exc:
        return None, [SpecError(str(path), 0, "(yaml)", str(exc))]
    except RecursionError:  # PyYAML composes nested collections recursively
        return None, [SpecError(str(path), 0, "(yaml)", "collections are nested too deeply")]
    if root is None:
        return None, [
            SpecError(str(path), 0, "(document)", "the file is empty (leave out the policy for the default)")
        ]
    loader = _Loader(r, path.parent, os.environ if environ is None else environ)
    policy = loader.read_policy(root)
    errors = sorted(r.errors, key=lambda e: e.line)
    return (policy if not errors else None), errors


def load_policy(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Policy:
    """The policy in ``path``, or :func:`default_policy` for None; :class:`PolicyErrors` listing
    every problem if the file has any."""
    if path is None:
        return default_policy()
    policy, errors = load(path, environ)
    if errors or policy is None:
        raise PolicyErrors(errors)
    return policy
