"""The IMA runtime policy: which measurements a node may show (format: ``docs/ima-policy.md``).

``templates`` names the templates the node's kernel is configured to log; an entry labelled with
any other is refused whatever it holds (the label is not covered by the template hash, see
``allowlists.ima.labels``). Absent, it is ``ima-ng`` and ``ima-sig``, plus ``ima-buf`` when the
policy allows buffers at all; the legacy ``ima`` template must be named to be accepted.

A file measurement (``ima``, ``ima-ng``, ``ima-sig``) is allowed when its ``alg:hex`` digest is
listed for its path in ``digests``, or its path matches ``excludes`` (globs matched segment by
segment, ``allowlists.ima.globs``; version 1 policies: ``fnmatch``, ``*`` crosses ``/``) or
``exclude_regexes`` (Python regexes matched at the start of the path, Keylime's semantics; kept
for imported policies). A path that is not in normal form (``.``, ``..`` or empty segments) is
never excluded. ``boot_aggregate`` is a path like any other.

A buffer measurement (``ima-buf``) is allowed when its digest is listed for its name in
``keyrings`` or ``ima_buf``; a name listed in neither is allowed only when ``ignored_keyrings``
holds it or ``"*"``. Excludes never apply to buffers.

Digests are compared as lowercase ``alg:hex`` text, exactly as the kernel prints them, so the
replay loop looks a line's digest up without decoding it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from types import MappingProxyType
from typing import Any, cast

from allowlists.ima.globs import glob_regex, is_normal_path
from allowlists.ima.template import DIGEST_SIZES, TEMPLATES
from geoattest.errors import PolicyInvalid

POLICY_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)  # 1: excludes are fnmatch globs (``*`` crosses ``/``)
FILE_TEMPLATES = ("ima-ng", "ima-sig")
"""What ``templates`` defaults to (plus ``ima-buf`` when the policy allows any buffer)."""
_TOP_KEYS = frozenset(
    {"version", "meta", "templates", "digests", "excludes", "exclude_regexes", "keyrings"}
    | {"ima_buf", "ignored_keyrings", "allow_violations"}
)
_DIGEST_TEXT = re.compile(r"([a-z0-9_]+):([0-9a-f]+)")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SHA256_LINES = re.compile(r"(?:sha256:[0-9a-f]{64}\n)*")


def _never(_path: str) -> bool:
    return False


def _freeze(table: Mapping[str, Iterable[str]]) -> Mapping[str, frozenset[str]]:
    # A copy (the caller keeps no handle on it); sets already frozen are kept, not rebuilt.
    return MappingProxyType(
        {k: v if type(v) is frozenset else frozenset(v) for k, v in table.items()}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimePolicy:
    """A parsed runtime policy with its excludes compiled into one regex.

    ``templates`` empty means the default (module docstring); it is resolved at construction, so
    the attribute always holds the templates in force. ``version`` is the format version, which
    decides how ``excludes`` are read.
    """

    templates: frozenset[str] = frozenset()
    version: int = POLICY_VERSION
    digests: Mapping[str, frozenset[str]] = field(default_factory=dict)
    excludes: tuple[str, ...] = ()
    exclude_regexes: tuple[str, ...] = ()
    keyrings: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ima_buf: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ignored_keyrings: frozenset[str] = frozenset()
    allow_violations: bool = False  # ToMToU/open-writers events; their path is unauthenticated
    meta: Mapping[str, str] = field(default_factory=dict)
    is_excluded: Callable[[str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("digests", "keyrings", "ima_buf"):
            object.__setattr__(self, name, _freeze(getattr(self, name)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        if self.version not in SUPPORTED_VERSIONS:
            raise PolicyInvalid(f"runtime policy version {self.version} is not supported")
        object.__setattr__(self, "templates", _templates(self))
        object.__setattr__(self, "is_excluded", _compile_excludes(self))

    @property
    def allows_buffers(self) -> bool:
        """Whether any ``ima-buf`` measurement could be allowed by the buffer tables."""
        return bool(self.keyrings or self.ima_buf or self.ignored_keyrings)

    def logs(self, template: str) -> bool:
        """Whether the node is configured to log entries of ``template``."""
        return template in self.templates

    def allows_file(self, path: str, digest_text: str) -> bool:
        """True when ``digest_text`` (``alg:hex``) is listed for ``path``, or it is excluded."""

        allowed = self.digests.get(path)
        if allowed is not None and digest_text.lower() in allowed:
            return True
        return self.is_excluded(path)

    def allows_buffer(self, name: str, digest_text: str) -> bool:
        """True when an ima-buf measurement named ``name`` with this digest is allowed."""
        digest_text = digest_text.lower()
        listed = False
        for table in (self.keyrings, self.ima_buf):
            allowed = table.get(name)
            if allowed is not None:
                listed = True
                if digest_text in allowed:
                    return True
        if listed:
            return False
        return name in self.ignored_keyrings or "*" in self.ignored_keyrings


def _templates(policy: RuntimePolicy) -> frozenset[str]:
    if not policy.templates:
        return frozenset(FILE_TEMPLATES + (("ima-buf",) if policy.allows_buffers else ()))
    unknown = sorted(policy.templates - set(TEMPLATES))
    if unknown:
        raise PolicyInvalid(
            f"$.templates: unsupported template(s) {', '.join(map(repr, unknown))} "
            f"(supported: {', '.join(TEMPLATES)})"
        )
    if policy.allows_buffers and "ima-buf" not in policy.templates:
        raise PolicyInvalid(
            "$.templates: keyrings, ima_buf or ignored_keyrings allow buffer measurements, "
            'which the kernel logs with the ima-buf template: add "ima-buf" or drop them'
        )
    return frozenset(policy.templates)


def _compile_excludes(policy: RuntimePolicy) -> Callable[[str], bool]:
    parts = [
        glob_regex(glob, version=policy.version, where=f"$.excludes[{index}]")
        for index, glob in enumerate(policy.excludes)
    ]
    parts += [f"(?:{regex})" for regex in policy.exclude_regexes]
    if not parts:
        return _never
    try:
        match = re.compile("|".join(parts)).match
    except re.error as e:  # parse names a bad regex first; a bad glob set ("[z-a]") lands here
        raise PolicyInvalid(f"excludes do not compile: {e}") from None
    # A path with ".", ".." or empty segments is never excluded (allowlists.ima.globs).
    return lambda path: match(path) is not None and is_normal_path(path)


# --- JSON ----------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise PolicyInvalid(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def load_json_object(text: str, what: str) -> dict[str, Any]:
    """Parse JSON text that must be an object, refusing duplicate keys (``PolicyInvalid``)."""
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise PolicyInvalid(
            f"{what}: not JSON: line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except PolicyInvalid as e:
        raise PolicyInvalid(f"{what}: {e.message}") from None
    except RecursionError:
        raise PolicyInvalid(f"{what}: nested too deeply") from None
    if not isinstance(document, dict):
        raise PolicyInvalid(f"{what}: the top level must be a JSON object")
    return document


def check_digest_text(text: object, where: str) -> str:
    """``text`` if it is a well-formed lowercase ``alg:hex`` of the algorithm's size."""
    if not isinstance(text, str):
        raise PolicyInvalid(f"{where}: expected an 'alg:hex' string, got {type(text).__name__}")
    found = _DIGEST_TEXT.fullmatch(text)
    if found is None:
        raise PolicyInvalid(f"{where}: expected lowercase 'alg:hex', got {text[:80]!r}")
    alg, hexd = found.groups()
    size = DIGEST_SIZES.get(alg)
    if size is None:
        raise PolicyInvalid(f"{where}: unknown digest algorithm {alg!r}")
    if len(hexd) != 2 * size:
        raise PolicyInvalid(f"{where}: a {alg} digest has {2 * size} hex digits, not {len(hexd)}")
    return text


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyInvalid(f"{where}: expected true or false")
    return value


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list):
        raise PolicyInvalid(f"{where}: expected a list of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise PolicyInvalid(f"{where}[{index}]: expected a non-empty string")
    return value


def _digest_table(value: object, where: str) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict):
        raise PolicyInvalid(f"{where}: expected an object mapping names to digest lists")
    if _all_sha256(value):
        return {name: frozenset(digests) for name, digests in value.items()}
    table: dict[str, frozenset[str]] = {}
    for name, digests in value.items():
        if not name or not isinstance(digests, list):
            spot = f"{where}[{json.dumps(name)}]"
            what = "empty name" if not name else "expected a list of 'alg:hex' strings"
            raise PolicyInvalid(f"{spot}: {what}")
        # The location is spelled out only on an error: a whole-system policy has 10^5 names.
        for index, item in enumerate(digests):
            if not (isinstance(item, str) and _well_formed(item)):
                check_digest_text(item, f"{where}[{json.dumps(name)}][{index}]")
        table[name] = frozenset(digests)
    return table


def _all_sha256(table: dict[object, object]) -> bool:
    """True when every name is non-empty and every value a list of well-formed ``sha256:``
    digests: a real policy, checked in one regex pass instead of one match per entry (a
    whole-system policy has 10^5 of them). False sends the table to the loop that names the
    first problem (or accepts the other algorithms)."""
    if "" in table or not set(map(type, table.values())) <= {list}:
        return False
    items = list(chain.from_iterable(cast("dict[object, list[object]]", table).values()))
    if not set(map(type, items)) <= {str}:
        return False
    joined = "\n".join(cast("list[str]", items)) + "\n"
    # One 72-character line per item: an item with a newline in it cannot pass for two.
    return len(joined) == 72 * len(items) and _SHA256_LINES.fullmatch(joined) is not None


def _well_formed(text: str) -> bool:
    """``check_digest_text``'s test without building its message (sha256, nearly every entry
    of a real policy, first)."""
    if len(text) == 71 and text.startswith("sha256:") and _HEX64.fullmatch(text, 7):
        return True
    found = _DIGEST_TEXT.fullmatch(text)
    if found is None:
        return False
    size = DIGEST_SIZES.get(found.group(1))
    return size is not None and len(found.group(2)) == 2 * size


def parse_runtime_policy(text: str) -> RuntimePolicy:
    """Parse our JSON runtime policy; ``PolicyInvalid`` names the offending location (``$.…``)
    or a duplicate key."""
    return runtime_policy_from_mapping(load_json_object(text, "runtime policy"))


def runtime_policy_from_mapping(document: Mapping[str, Any]) -> RuntimePolicy:
    """The same checks as ``parse_runtime_policy`` on JSON already parsed (a policy inside the
    verifier's policy document: parsing it to text and back costs seconds at 10^5 files)."""
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise PolicyInvalid(f"$: unknown key(s) {', '.join(map(repr, unknown))}")
    version = document.get("version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise PolicyInvalid(
            f"$.version: must be one of {', '.join(map(str, SUPPORTED_VERSIONS))}, got {version!r}"
        )
    meta = document.get("meta", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise PolicyInvalid("$.meta: expected an object of strings")
    excludes = _strings(document.get("excludes", []), "$.excludes")
    regexes = _strings(document.get("exclude_regexes", []), "$.exclude_regexes")
    for index, regex in enumerate(regexes):
        try:
            re.compile(regex)
        except re.error as e:
            raise PolicyInvalid(f"$.exclude_regexes[{index}]: not a regex: {e}") from None
    for index, glob in enumerate(excludes):
        try:
            re.compile(glob_regex(glob, version=version, where=f"$.excludes[{index}]"))
        except re.error as e:
            raise PolicyInvalid(f"$.excludes[{index}]: not a glob: {e}") from None
    templates: frozenset[str] = frozenset()
    if "templates" in document:
        names = _strings(document["templates"], "$.templates")
        if not names:
            raise PolicyInvalid("$.templates: name at least one template")
        if len(set(names)) != len(names):
            raise PolicyInvalid("$.templates: a template is listed twice")
        templates = frozenset(names)
    return RuntimePolicy(
        version=version,
        templates=templates,
        digests=_digest_table(document.get("digests", {}), "$.digests"),
        excludes=tuple(excludes),
        exclude_regexes=tuple(regexes),
        keyrings=_digest_table(document.get("keyrings", {}), "$.keyrings"),
        ima_buf=_digest_table(document.get("ima_buf", {}), "$.ima_buf"),
        ignored_keyrings=frozenset(
            _strings(document.get("ignored_keyrings", []), "$.ignored_keyrings")
        ),
        meta=meta,
        allow_violations=_flag(document.get("allow_violations", False), "$.allow_violations"),
    )


def dump_runtime_policy(policy: RuntimePolicy) -> str:
    """The policy as our JSON format: sorted, stable, one digest per line."""
    return "".join(iter_runtime_policy_json(policy))


def iter_runtime_policy_json(policy: RuntimePolicy) -> Iterator[str]:
    """``dump_runtime_policy`` in pieces, for writing a whole-system policy (tens of MB) without
    holding its text in memory."""
    document: dict[str, object] = {"version": policy.version}
    if policy.meta:
        document["meta"] = dict(sorted(policy.meta.items()))
    document["templates"] = sorted(policy.templates)
    document["digests"] = {path: sorted(policy.digests[path]) for path in sorted(policy.digests)}
    document["excludes"] = list(policy.excludes)
    if policy.exclude_regexes:
        document["exclude_regexes"] = list(policy.exclude_regexes)
    document["keyrings"] = {name: sorted(policy.keyrings[name]) for name in sorted(policy.keyrings)}
    document["ima_buf"] = {name: sorted(policy.ima_buf[name]) for name in sorted(policy.ima_buf)}
    document["ignored_keyrings"] = sorted(policy.ignored_keyrings)
    if policy.allow_violations:
        document["allow_violations"] = True
    yield from json.JSONEncoder(indent=1, ensure_ascii=False).iterencode(document)
    yield "\n"


def generate_policy(
    files: Iterable[tuple[str, bytes]],
    *,
    alg: str = "sha256",
    excludes: Iterable[str] = (),
    boot_aggregate: Iterable[str] = (),
    meta: Mapping[str, str] | None = None,
) -> RuntimePolicy:
    """A policy allowing exactly these ``(path, digest)`` files, digests computed with ``alg``.

    ``boot_aggregate`` holds ``alg:hex`` values to allow for the boot aggregate entry (it
    depends on firmware and boot chain, not on files; exclude it or list it). A path seen twice
    keeps both digests. Raises ``PolicyInvalid`` for a digest of the wrong size.
    """
    size = DIGEST_SIZES.get(alg)
    if size is None:
        raise PolicyInvalid(f"unknown digest algorithm {alg!r}")
    digests: dict[str, set[str]] = {}
    for path, digest in files:
        if len(digest) != size:
            raise PolicyInvalid(f"{path}: a {alg} digest has {size} bytes, not {len(digest)}")
        digests.setdefault(path, set()).add(f"{alg}:{digest.hex()}")
    aggregates = [check_digest_text(text, "boot_aggregate") for text in boot_aggregate]
    if aggregates:
        digests.setdefault("boot_aggregate", set()).update(aggregates)
    return RuntimePolicy(
        digests={path: frozenset(values) for path, values in digests.items()},
        excludes=tuple(excludes),
        meta=meta or {},
    )
