"""Local users of the web UI and the API: a YAML (or JSON) document of names, password hashes, roles
and tenants, read from the ``users_file`` setting or the ``SLOSCOPE_USERS`` environment variable.

.. code-block:: yaml

    users:
      - name: alice
        password_hash: "$argon2id$v=19$m=65536,t=3,p=4$..."   # sloscope user hash
        role: responder          # viewer, responder or admin
        tenant: acme             # optional: alice sees only tenant acme's data
      - name: grafana-proxy-user # no password_hash: only a trusted proxy can sign in as this user
        role: viewer

Password hashes are argon2 (``$argon2id$``, also ``$argon2i$``/``$argon2d$``) or bcrypt (``$2b$``,
``$2a$``, ``$2y$``); a plain password is refused. Every problem is reported as
``file:line: field: problem`` (``slo/spec.py``'s errors), all of them in one run.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import argon2
import bcrypt
import yaml
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from slo.spec import Reader, SpecError, SpecErrors, one_of
from store.tenancy import check_tenant
from ui.identity import ROLES

#: User names: what people type into a login form (and an e-mail address fits).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
#: Longest password verified: hashing a megabyte on every request is a denial of service.
MAX_PASSWORD_BYTES = 1024
_USER_KEYS = ("name", "password_hash", "role", "tenant")


@dataclass(frozen=True)
class User:
    """One user. ``tenant`` None: sees every tenant; a text: only that tenant ("" the default one).
    An empty ``password_hash`` means the user can only come through a trusted proxy."""

    name: str
    role: str
    tenant: str | None = None
    password_hash: str = field(default="", repr=False)


class UsersError(SpecErrors):
    """The users document has problems; ``errors`` lists each as ``file:line: field: problem``."""


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` with argon2-cffi's default (RFC 9106 low-memory) cost."""
    return argon2.PasswordHasher().hash(password)


def _scheme(password_hash: str) -> str:
    if password_hash.startswith(("$argon2id$", "$argon2i$", "$argon2d$")):
        return "argon2"
    if _BCRYPT.match(password_hash):
        return "bcrypt"
    return ""


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (argon2 or bcrypt). Slow on purpose.

    bcrypt reads at most 72 bytes of a password; a longer one is refused rather than truncated,
    so two passwords sharing their first 72 bytes are not the same password."""
    data = password.encode("utf-8", "surrogatepass")
    if len(data) > MAX_PASSWORD_BYTES:
        return False
    scheme = _scheme(password_hash)
    if scheme == "argon2":
        try:
            return argon2.PasswordHasher().verify(password_hash, data)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    if scheme == "bcrypt":
        if len(data) > 72:
            return False
        try:
            return bcrypt.checkpw(data, password_hash.encode("ascii"))
        except ValueError:
            return False
    return False


def dummy_hash(users: Mapping[str, User]) -> str:
    """A hash of a random password with the cost of the users' most common hash: checking an unknown
    user's password against it takes as long as checking a known user's, so the time of a failed
    login does not tell whether the name exists."""
    examples = {_cost(u.password_hash): u.password_hash for u in users.values() if u.password_hash}
    costs = Counter(_cost(u.password_hash) for u in users.values() if u.password_hash)
    password = secrets.token_urlsafe(24)
    if not costs:
        return hash_password(password)
    (scheme, cost), _ = costs.most_common(1)[0]
    if scheme == "bcrypt":
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(int(cost))).decode()
    example = examples[(scheme, cost)]
    return argon2.PasswordHasher.from_parameters(argon2.extract_parameters(example)).hash(password)


def _cost(password_hash: str) -> tuple[str, str]:
    """(scheme, cost): ``$argon2id$v=19$m=65536,t=3,p=4`` for argon2, the rounds for bcrypt."""
    scheme = _scheme(password_hash)
    if scheme == "bcrypt":
        match = _BCRYPT.match(password_hash)
        return scheme, match.group(1) if match else "12"
    return scheme, "$".join(password_hash.split("$")[:4])


def _check_hash(r: Reader, node: object, path: str, text: str) -> str | None:
    scheme = _scheme(text)
    if scheme == "argon2":
        try:
            argon2.extract_parameters(text)
        except InvalidHashError:
            r.error(node, path, "is not a well-formed argon2 hash")  # type: ignore[arg-type]
            return None
        return text
    if scheme == "bcrypt":
        return text
    r.error(
        node,  # type: ignore[arg-type]
        path,
        "must be an argon2 ($argon2id$...) or bcrypt ($2b$...) hash, never a password; "
        "make one with `sloscope user hash`",
    )
    return None


def _read_user(r: Reader, node: object, path: str) -> tuple[User | None, str | None]:
    """The user of one entry (None if it has problems) and its name (for the duplicate check)."""
    fields = r.mapping(node, path, _USER_KEYS, required=("name", "role"))  # type: ignore[arg-type]
    if fields is None:
        return None, None
    before = r.count
    name = r.text(fields.get("name"), f"{path}.name")
    if name is not None and not _NAME.match(name):
        r.error(
            fields["name"],
            f"{path}.name",
            f"{name!r} is not a valid user name (letters, digits, '.', '_', '@', '+' and '-', "
            "starting with a letter or digit, at most 128 characters)",
        )
    role = r.text(fields.get("role"), f"{path}.role")
    if role is not None and role not in ROLES:
        r.error(fields["role"], f"{path}.role", f"unknown role {role!r} ({one_of(role, ROLES)})")
    password_hash = ""
    if "password_hash" in fields:
        text = r.text(fields["password_hash"], f"{path}.password_hash")
        if text is not None:
            password_hash = _check_hash(r, fields["password_hash"], f"{path}.password_hash", text) or ""
    elif "password_hash" in fields.key_nodes:
        r.error(
            fields.key_nodes["password_hash"],
            f"{path}.password_hash",
            "must not be empty (leave the key out for a user who signs in only through a trusted proxy)",
        )
    tenant: str | None = None
    if "tenant" in fields:
        tenant = r.raw_text(fields["tenant"], f"{path}.tenant")
        if tenant:
            try:
                check_tenant(tenant)
            except ValueError as exc:
                r.error(fields["tenant"], f"{path}.tenant", str(exc))
    elif "tenant" in fields.key_nodes:
        # An empty `tenant:` must not silently grant every tenant's data.
        r.error(
            fields.key_nodes["tenant"],
            f"{path}.tenant",
            'must not be empty (leave the key out for a user of every tenant, or write tenant: "" '
            "for the default tenant)",
        )
    if r.count > before or name is None or role is None:
        return None, name
    return User(name, role, tenant, password_hash), name


def parse_users(text: str, source: str) -> tuple[dict[str, User], list[SpecError]]:
    """The users of a document (``source`` names it in errors) and every problem found."""
    r = Reader(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return {}, [
            SpecError(source, mark.line + 1 if mark else 0, "(yaml)", str(exc.problem or exc.context))
        ]
    except yaml.YAMLError as exc:
        return {}, [SpecError(source, 0, "(yaml)", str(exc))]
    if root is None:
        return {}, [SpecError(source, 0, "(document)", "is empty: list the users under users:")]
    fields = r.mapping(root, "", ("users",), required=("users",))
    users: dict[str, User] = {}
    lines: dict[str, int] = {}
    items = r.sequence(fields.get("users"), "users") if fields else None
    if items is not None and not items:
        r.error(fields["users"], "users", "must list at least one user")  # type: ignore[index]
    for i, item in enumerate(items or []):
        user, name = _read_user(r, item, f"users[{i}]")
        if name is None:
            continue
        if name in lines:
            r.error(item, f"users[{i}].name", f"duplicate user {name!r} (first at line {lines[name]})")
            continue
        lines[name] = item.start_mark.line + 1
        if user is not None:
            users[name] = user
    errors = sorted(r.errors, key=lambda e: e.line)
    return (users if not errors else {}), errors


def load_users(path: str | Path) -> dict[str, User]:
    """The users in the file ``path``; :class:`UsersError` with every problem if it has any."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsersError([SpecError(str(path), 0, "(path)", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsersError([SpecError(str(path), 0, "(file)", f"cannot be read: {exc}")]) from None
    return _checked(*parse_users(text, str(path)))


def users_from_text(text: str, source: str) -> dict[str, User]:
    """The users of a document held in an environment variable named ``source``."""
    return _checked(*parse_users(text, source))


def _checked(users: dict[str, User], errors: list[SpecError]) -> dict[str, User]:
    if errors:
        raise UsersError(errors)
    return users
