"""Discovery: `codemode.search(query)` and `codemode.describe(target)`.

The model finds tools from inside the sandbox instead of reading every schema
in its prompt, so the prompt stays small however large the catalog is.

Two scorers share one index:

- `"baseline"` reproduces Cloudflare's ranking exactly. It is
  the yardstick the benchmark (`benchmarks/search_quality.py`) measures against.
- `"codemode"` (the default) keeps the baseline's shape (weighted fields, phrase
  bonuses, coverage rule) and adds recall: plural and verb-form folding, verb
  synonyms (get/fetch/retrieve, find/search, create/add/new, ...), stop words
  that no longer dilute coverage, low-weight fields for parameter names,
  parameter descriptions and connector instructions, IDF weighting of query
  words, and a bonus for method names made of the words asked for.

Both only ever score items sharing a token relation with the query, found
through an inverted index that is built once per catalog and memoized by the
identity of its `ConnectorDescription` objects: over the 1,675 GitHub and
Stripe tools a query takes about 0.4-2.5 ms in pure Python, and building the
index about 0.2-0.3 s once (see `docs/search.md`).
"""

from __future__ import annotations

import bisect
import difflib
import itertools
import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from codemode.connectors.spec import ConnectorDescription, ToolSpec
from codemode.records import Snippet
from codemode.schema.base import DeclarationRenderer

__all__ = [
    "MAX_SEARCH_RESULTS",
    "Description",
    "Scoring",
    "SearchOutput",
    "SearchResult",
    "describe",
    "normalize",
    "search",
    "tokenize",
]

MAX_SEARCH_RESULTS = 50
Scoring = Literal["codemode", "baseline"]
ResultKind = Literal["method", "snippet"]
DescriptionKind = Literal["connector", "method", "snippet", "type"]

# ---------------------------------------------------------------------------
# Public result types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    """One hit: a connector method, or a saved snippet (`connector == "snippet"`)."""

    path: str
    connector: str
    method: str
    description: str
    requires_approval: bool
    kind: ResultKind
    score: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as handed to the sandbox."""
        return asdict(self)


@dataclass(frozen=True)
class SearchOutput:
    """The best `limit` hits, plus how many matched in all."""

    results: list[SearchResult]
    total: int
    truncated: bool
    # Connectors whose service is down, so their tools could not be searched: name -> why, what to do.
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as handed to the sandbox (`unavailable` only when some connector is)."""
        data = asdict(self)
        if not self.unavailable:
            del data["unavailable"]
        return data


@dataclass(frozen=True)
class Description:
    """What `describe(target)` returns: declarations in the sandbox language, or a not-found hint.

    `kind` is `"type"` for a type named in a method's declarations (`"stripe.GetCharge.Customer"`).
    """

    path: str
    description: str | None
    requires_approval: bool
    types: str
    kind: DescriptionKind

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as handed to the sandbox."""
        return asdict(self)


# ---------------------------------------------------------------------------
# Text normalization (Cloudflare's, exact)
# ---------------------------------------------------------------------------

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[_./:\-]+")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize(text: str) -> str:
    """Split camelCase, turn `_ . / : -` runs into one space, lowercase, trim."""
    return _SEPARATORS.sub(" ", _CAMEL.sub(r"\1 \2", text)).lower().strip()


def tokenize(text: str) -> list[str]:
    """`normalize`, then split on anything that is not `[a-z0-9]`."""
    return [t for t in _NON_ALNUM.split(normalize(text)) if t]


# ---------------------------------------------------------------------------
# Token folding for the "codemode" scorer
# ---------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


# Words that carry no intent in a tool query; they only dilute coverage (and in
# the baseline, "a" or "i" match as substrings of almost everything).
_STOP_WORDS = frozenset(
    _words(
        """a an the of for to in on by with from and or my our your their me i we you it its this that these those
        is are be been was were do does did how can could should would will what which who whose where when please
        using use used via into onto at as some any all each every just also about there here want need like let
        lets one much many"""
    )
)

# Verbs and abbreviations that mean the same thing in API catalogs. Plain words;
# they are stemmed below, and the first word of a group is its canonical form.
# Mind the stems: "settings" would fold to "set" and "logged" to "log".
_SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("get", "fetch", "retrieve", "obtain", "show", "lookup", "look", "read", "view", "describe"),
    ("list", "enumerate", "browse"),
    ("search", "find", "query"),
    ("create", "add", "new", "make", "insert", "generate", "register", "post", "publish", "start", "begin"),
    ("delete", "remove", "destroy", "erase", "drop", "purge", "unregister"),
    ("update", "edit", "modify", "change", "patch", "alter", "amend"),
    ("repo", "repository"),
    ("org", "organization", "organisation"),
    ("config", "configuration"),
    ("pr", "pull"),
    ("compare", "diff", "comparison"),
    ("latest", "recent", "newest", "last"),
    ("trigger", "dispatch"),
)

# Query words that hint at a concept without being required: "my repositories"
# leans toward the tools "for the authenticated user" but must still match
# tools that do not say so.
_SOFT_HINTS: dict[str, str] = {"my": "authenticated", "me": "authenticated", "mine": "authenticated"}
_VOWELS = frozenset("aeiouy")


def _stem(token: str) -> str:
    """Fold plurals and verb forms so "issues"/"issue" and "created"/"create" meet.

    Deliberately tiny (not Porter): it only needs to map both sides of a match
    to the same string, and it must be cheap to run over a whole vocabulary.
    """
    t = token
    if len(t) <= 3 or not t.isalpha():
        return t
    if t.endswith(("ies", "ied")) and len(t) > 4:
        t = t[:-3] + "y"
    elif t.endswith("s") and not t.endswith(("ss", "us", "is")):
        t = t[:-1]
    for suffix in ("ing", "ed"):
        if t.endswith(suffix):
            rest = t[: -len(suffix)]
            if len(rest) >= 3 and any(ch in _VOWELS for ch in rest):
                t = rest
                if len(t) >= 4 and t[-1] == t[-2] and t[-1] not in "lsz":
                    t = t[:-1]
            break
    if t.endswith("e") and len(t) > 3:
        t = t[:-1]
    return t


_CANONICAL: dict[str, str] = {_stem(word): _stem(group[0]) for group in _SYNONYM_GROUPS for word in group}


def _canonical(stem: str) -> str:
    return _CANONICAL.get(stem, stem)


# ---------------------------------------------------------------------------
# The index
# ---------------------------------------------------------------------------

# Field order inside an entry. The first four are Cloudflare's fields.
_F_PATH, _F_CONNECTOR, _F_METHOD, _F_DESCRIPTION, _F_PARAMS, _F_PARAM_DOCS, _F_INSTRUCTIONS = range(7)
_BASELINE_WEIGHTS = (12.0, 8.0, 10.0, 5.0)

# Tuning of the codemode scorer, chosen on benchmarks/search_quality.py.
_CODEMODE_WEIGHTS = (12.0, 8.0, 10.0, 5.0, 3.0, 1.0, 0.5)  # path, connector, method, description, params, ...
_IDF_FLOOR = 0.3  # a token's weight is FLOOR + (1 - FLOOR) * idf / max_idf
_MIN_COVERAGE = 0.5  # share of query words an entry must match (unless it contains the whole phrase)
_PRECISION_WEIGHT = 100.0  # bonus for method names made only of what was asked
_PAIR_WEIGHT = 12.0  # per pair of adjacent query words found adjacent in the description
_SOFT_WEIGHT = 0.5  # weight of hinted words ("my" -> "authenticated")
_FUZZY_PREFIX = 5  # shared-prefix relation: at least this many characters...
_FUZZY_SHARE = 0.75  # ...and this share of the shorter word
_FUZZY_STRENGTH = 2
_SUBSTRING_STRENGTH = 1  # a query word inside a longer word ("hook" in "webhooks")


@dataclass(frozen=True)
class _Field:
    raw: str
    tokens: tuple[str, ...]


def _field(value: str | None) -> _Field:
    text = value or ""
    return _Field(normalize(text), tuple(tokenize(text)))


@dataclass(frozen=True)
class _Entry:
    path: str
    connector: str
    method: str
    description: str
    requires_approval: bool
    kind: ResultKind
    fields: tuple[_Field, ...]
    sort_key: tuple[str, str]
    first_tokens: tuple[str, ...]  # first token of the path and of the method (+8 bonus)
    first_canons: tuple[str, ...]  # the same, folded, for the codemode scorer
    method_terms: tuple[str, ...]  # distinct method-name words that carry meaning (codemode precision)
    word_pairs: frozenset[tuple[str, str]]  # adjacent meaningful words of the description (codemode phrasing)


def _folded(tokens: Sequence[str]) -> list[str]:
    """Meaningful words in order, stemmed and folded to their canonical synonym."""
    return [_canonical(_stem(t)) for t in tokens if t not in _STOP_WORDS]


def _pairs(words: Sequence[str]) -> frozenset[tuple[str, str]]:
    return frozenset(itertools.pairwise(words))


def _method_terms(tokens: Sequence[str]) -> tuple[str, ...]:
    """One token per distinct folded word of a method name, stop words left out.

    `GetPromotionCodesPromotionCode` counts "promotion" and "code" once, so a
    repeated word cannot make a name look more on-topic than it is.
    """
    seen: dict[str, str] = {}
    for t in tokens:
        if t not in _STOP_WORDS:
            seen.setdefault(_canonical(_stem(t)), t)
    return tuple(seen.values())


def _entry(
    path: str,
    connector: str,
    method: str,
    description: str,
    requires_approval: bool,
    kind: ResultKind,
    fields: tuple[_Field, ...],
) -> _Entry:
    firsts = tuple(fields[f].tokens[0] for f in (_F_PATH, _F_METHOD) if fields[f].tokens)
    return _Entry(
        path=path,
        connector=connector,
        method=method,
        description=description,
        requires_approval=requires_approval,
        kind=kind,
        fields=fields,
        sort_key=_sort_key(path),
        first_tokens=firsts,
        first_canons=tuple(_canonical(_stem(t)) for t in firsts),
        method_terms=_method_terms(fields[_F_METHOD].tokens),
        word_pairs=_pairs(_folded(fields[_F_DESCRIPTION].tokens)),
    )


# Approximates ICU root collation (what JS `localeCompare` uses) closely enough
# for identifiers: punctuation before digits before letters, `_` before `.`,
# case ignored at first and lowercase first on ties.
_PUNCT_ORDER = "_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$"


def _sort_key(path: str) -> tuple[str, str]:
    primary = []
    for ch in path.casefold():
        if ch.isalnum():
            primary.append(ch)
        else:
            rank = _PUNCT_ORDER.find(ch)
            primary.append(chr(1 + (rank if rank >= 0 else len(_PUNCT_ORDER))))
    return "".join(primary), path.swapcase()


def _schema_params(schema: Mapping[str, Any] | None) -> tuple[str, str]:
    """Top-level parameter names and descriptions, as two texts (nothing is resolved)."""
    if not isinstance(schema, Mapping):
        return "", ""
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return "", ""
    names: list[str] = []
    docs: list[str] = []
    for name, prop in props.items():
        names.append(str(name))
        if isinstance(prop, Mapping):
            doc = prop.get("description")
            if isinstance(doc, str):
                docs.append(doc)
    return " ".join(names), " ".join(docs)


def _method_entry(conn: ConnectorDescription, method: str, spec: ToolSpec) -> _Entry:
    path = f"{conn.name}.{method}"
    params, param_docs = _schema_params(spec.input_schema)
    return _entry(
        path=path,
        connector=conn.name,
        method=method,
        description=spec.description or "",
        requires_approval=bool(spec.requires_approval),
        kind="method",
        fields=(
            _field(path),
            _field(conn.name),
            _field(method),
            _field(spec.description),
            _field(params),
            _field(param_docs),
            _field(conn.instructions),
        ),
    )


def _snippet_entry(snippet: Snippet) -> _Entry:
    params, param_docs = _schema_params(snippet.input_schema)
    return _entry(
        path=snippet.name,
        connector="snippet",
        method=snippet.name,
        description=snippet.description or "",
        requires_approval=False,
        kind="snippet",
        fields=(
            _field(snippet.name),
            _field("snippet"),
            _field(snippet.name),
            _field(snippet.description),
            _field(params),
            _field(param_docs),
            _field(None),
        ),
    )


class _Index:
    """Entries plus an inverted index from vocabulary tokens to (entry, field) pairs.

    Every token relation the scorers use (equal, prefix either way, substring,
    same stem, synonym) is resolved against the vocabulary once per query token;
    scoring then walks only the postings of the related tokens, so its cost
    follows the number of matches, not the size of the catalog.
    """

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        # Posting codes are `entry << 3 | field`: one int, cheap to store and hash.
        self.postings: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            for f, fld in enumerate(entry.fields):
                for token in dict.fromkeys(fld.tokens):
                    self.postings.setdefault(token, []).append(i << 3 | f)
        self.primary_postings: dict[str, list[int]] = {}
        for token, codes in self.postings.items():
            primary = [code for code in codes if code & 7 <= _F_DESCRIPTION]
            if primary:
                self.primary_postings[token] = primary
        self.vocab = sorted(self.postings)
        # One string holding the whole vocabulary lets `str.find` do substring
        # scans at C speed; `starts` maps a hit position back to its token.
        self.blob = "\n".join(self.vocab)
        self.starts: list[int] = []
        pos = 0
        for token in self.vocab:
            self.starts.append(pos)
            pos += len(token) + 1
        self.by_stem: dict[str, list[str]] = {}
        self.by_canonical: dict[str, list[str]] = {}
        for token in self.vocab:
            stem = _stem(token)
            self.by_stem.setdefault(stem, []).append(token)
            if stem in _CANONICAL:
                self.by_canonical.setdefault(_CANONICAL[stem], []).append(token)
        # Inverse document frequency per canonical stem over the primary fields:
        # a token shared by half the catalog says little about which tool is meant.
        df: dict[str, set[int]] = {}
        for token, codes in self.primary_postings.items():
            df.setdefault(_canonical(_stem(token)), set()).update(code >> 3 for code in codes)
        n = max(len(entries), 1)
        self.max_idf = math.log(1.0 + n)
        self.idf: dict[str, float] = {canon: math.log(1.0 + n / len(ids)) for canon, ids in df.items()}

    def substring_hits(self, token: str) -> list[str]:
        """Vocabulary tokens containing `token`."""
        blob, starts, vocab = self.blob, self.starts, self.vocab
        found: list[str] = []
        last = -1
        pos = blob.find(token)
        while pos != -1:
            i = bisect.bisect_right(starts, pos) - 1
            if i != last:
                found.append(vocab[i])
                last = i
            pos = blob.find(token, pos + 1)
        return found

    def relations(self, token: str, codemode: bool) -> dict[str, int]:
        """Vocabulary token -> strength of its best relation to a query token.

        Baseline strengths follow Cloudflare's ranking (4 equal, 2 prefix either way,
        1 substring). The codemode scorer adds 3 for the same stem and 2 for a
        synonym, and ignores prefixes and substrings shorter than 3 characters.
        """
        rel: dict[str, int] = {}
        inner = 1 if not codemode else _SUBSTRING_STRENGTH
        if not codemode or len(token) >= 3:
            for c in self.substring_hits(token):
                r = 4 if c == token else 2 if c.startswith(token) else inner
                if r:
                    rel[c] = r
        elif token in self.postings:
            rel[token] = 4
        for k in range(3 if codemode else 1, len(token)):
            prefix = token[:k]
            if prefix in self.postings and rel.get(prefix, 0) < 2:
                rel[prefix] = 2
        if codemode:
            if len(token) >= _FUZZY_PREFIX:
                # Shared stems the suffix rules miss: "invite"/"invitation", "subscribe"/"subscription".
                head = token[:_FUZZY_PREFIX]
                i = bisect.bisect_left(self.vocab, head)
                while i < len(self.vocab) and self.vocab[i].startswith(head):
                    c = self.vocab[i]
                    i += 1
                    if rel.get(c, 0) >= _FUZZY_STRENGTH:
                        continue
                    common = _FUZZY_PREFIX
                    limit = min(len(c), len(token))
                    while common < limit and c[common] == token[common]:
                        common += 1
                    if common >= _FUZZY_SHARE * limit:
                        rel[c] = _FUZZY_STRENGTH
            stem = _stem(token)
            for c in self.by_stem.get(stem, ()):
                if rel.get(c, 0) < 3:
                    rel[c] = 3
            canon = _CANONICAL.get(stem)
            if canon is not None:
                for c in self.by_canonical.get(canon, ()):
                    if rel.get(c, 0) < 2:
                        rel[c] = 2
        return rel

    def best_relations(self, rel: Mapping[str, int], primary_only: bool) -> dict[int, int]:
        """Posting code -> the strongest relation of any of that field's tokens."""
        postings = self.primary_postings if primary_only else self.postings
        by_strength: dict[int, list[list[int]]] = {}
        for c, r in rel.items():
            codes = postings.get(c)
            if codes:
                by_strength.setdefault(r, []).append(codes)
        # Weakest first, so a stronger relation overwrites; the loops run in C.
        best: dict[int, int] = {}
        for r in sorted(by_strength):
            best.update(dict.fromkeys(itertools.chain.from_iterable(by_strength[r]), r))
        return best


_INDEX_CACHE: OrderedDict[tuple[int, ...], tuple[tuple[ConnectorDescription, ...], _Index]] = OrderedDict()
_INDEX_CACHE_SIZE = 16
_SNIPPET_CACHE: OrderedDict[tuple[Any, ...], _Index] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _connector_index(connectors: Sequence[ConnectorDescription]) -> _Index:
    """The index of a catalog, memoized by the identity of its descriptions.

    Connector descriptions are memoized per connector instance, so the same
    runtime keeps hitting the same cache entry; the stored tuple keeps the
    objects alive so their ids cannot be reused by other objects.
    """
    conns = tuple(connectors)
    key = tuple(id(c) for c in conns)
    with _CACHE_LOCK:
        hit = _INDEX_CACHE.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], conns, strict=True)):
            _INDEX_CACHE.move_to_end(key)
            return hit[1]
    index = _Index([_method_entry(c, m, spec) for c in conns for m, spec in c.tools.items()])
    with _CACHE_LOCK:
        _INDEX_CACHE[key] = (conns, index)
        _INDEX_CACHE.move_to_end(key)
        while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
            _INDEX_CACHE.popitem(last=False)
    return index


def _snippet_key(snippets: Sequence[Snippet]) -> tuple[Any, ...]:
    return tuple((s.name, s.description, repr(s.input_schema)) for s in snippets)


def _snippet_index(snippets: Sequence[Snippet]) -> _Index:
    """Snippets come fresh from the store each time, so they are memoized by value."""
    key = _snippet_key(snippets)
    with _CACHE_LOCK:
        hit = _SNIPPET_CACHE.get(key)
        if hit is not None:
            _SNIPPET_CACHE.move_to_end(key)
            return hit
    index = _Index([_snippet_entry(s) for s in snippets])
    with _CACHE_LOCK:
        _SNIPPET_CACHE[key] = index
        while len(_SNIPPET_CACHE) > _INDEX_CACHE_SIZE:
            _SNIPPET_CACHE.popitem(last=False)
    return index


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


def _js_round(x: float) -> int:
    """`Math.round`: halves go up (toward +infinity), unlike Python's banker's rounding."""
    return math.floor(x + 0.5)


def _phrase_score(raw: str, q: str) -> int:
    if raw == q:
        return 14
    if raw.startswith(q):
        return 9
    if q in raw:
        return 6
    return 0


def _bonuses(entry: _Entry, q: str, qt0: str, coverage: float, first_canon: str | None) -> float:
    """Coverage, first-token and exact-name bonuses (Cloudflare's)."""
    bonus = 25 if coverage == 1 else _js_round(coverage * 10)
    if qt0 in entry.first_tokens or (first_canon is not None and first_canon in entry.first_canons):
        bonus += 8
    if entry.fields[_F_PATH].raw == q or entry.fields[_F_METHOD].raw == q:
        bonus += 20
    return bonus


def _phrases(entry: _Entry, q: str, weights: Sequence[float]) -> float:
    total = 0.0
    for f in range(4):
        raw = entry.fields[f].raw
        if raw:
            total += _phrase_score(raw, q) * weights[f]
    return total


def _score_baseline(index: _Index, q: str, qt: list[str]) -> list[tuple[float, _Entry]]:
    """Cloudflare's ranking to the letter, over the entries sharing a token relation with the query."""
    unique = list(dict.fromkeys(qt))
    token_score: dict[int, float] = {}
    matched: dict[int, int] = {}
    for t in unique:
        times = qt.count(t)  # duplicated query tokens score every time they appear
        per_entry: dict[int, float] = {}
        get = per_entry.get
        for code, r in index.best_relations(index.relations(t, False), primary_only=True).items():
            e = code >> 3
            per_entry[e] = get(e, 0.0) + r * _BASELINE_WEIGHTS[code & 7]
        for e, s in per_entry.items():
            token_score[e] = token_score.get(e, 0.0) + s * times
            matched[e] = matched.get(e, 0) + 1
    minimum = 1.0 if len(qt) <= 2 else 0.6
    out: list[tuple[float, _Entry]] = []
    for e, count in matched.items():
        entry = index.entries[e]
        coverage = count / len(qt)
        # The query phrase inside a field implies every query token matched there,
        # so entries missing a token can skip the substring checks.
        phrase = _phrases(entry, q, _BASELINE_WEIGHTS) if count == len(unique) else 0.0
        if coverage < minimum and not phrase:
            continue
        out.append((token_score[e] + phrase + _bonuses(entry, q, qt[0], coverage, None), entry))
    return out


def _score_codemode(index: _Index, q: str, qt: list[str], soft: list[str], stats: _Index) -> list[tuple[float, _Entry]]:
    """The baseline's shape, with folded relations, more fields, IDF and a name-precision bonus.

    `stats` supplies the word rarity (the connector catalog, also when scoring
    snippets, so both kinds of result are weighed on one scale).
    """
    token_score: dict[int, float] = {}
    matched: Counter[int] = Counter()
    related: dict[str, int] = {}  # vocabulary token -> strongest relation to a (non-hint) query word
    for t in [*qt, *soft]:
        is_soft = t in soft
        rel = index.relations(t, True)
        if not is_soft:
            for c, r in rel.items():
                if related.get(c, 0) < r:
                    related[c] = r
        # Rare tokens weigh more; the floor keeps a common word from vanishing.
        tw = _IDF_FLOOR + (1 - _IDF_FLOOR) * stats.idf.get(_canonical(_stem(t)), stats.max_idf) / stats.max_idf
        if is_soft:
            tw *= _SOFT_WEIGHT
        weights = [w * tw for w in _CODEMODE_WEIGHTS]
        best = index.best_relations(rel, primary_only=False)
        get = token_score.get
        for code, r in best.items():
            e = code >> 3
            token_score[e] = get(e, 0.0) + r * weights[code & 7]
        if not is_soft:
            matched.update({code >> 3 for code in best})
    first_canon = _canonical(_stem(qt[0]))
    query_pairs = _pairs(_folded(qt))
    out: list[tuple[float, _Entry]] = []
    for e, count in matched.items():
        coverage = count / len(qt)
        entry = index.entries[e]
        phrase = _phrases(entry, q, _CODEMODE_WEIGHTS) if count == len(qt) else 0.0
        if coverage < _MIN_COVERAGE and not phrase:
            continue
        fields = entry.fields
        if not any(c in related for f in range(_F_PARAMS) for c in fields[f].tokens):
            continue  # matched only through parameters or instructions: too weak to show
        terms = entry.method_terms
        precision = sum(1 for c in terms if related.get(c, 0) >= 2) / len(terms) if terms else 0.0
        score = token_score[e] + phrase + _bonuses(entry, q, qt[0], coverage, first_canon)
        # Query words that sit side by side in the description, as written: "external account" rather than
        # "external" somewhere and "account" elsewhere.
        score += _PAIR_WEIGHT * len(query_pairs & entry.word_pairs)
        out.append((score + _PRECISION_WEIGHT * precision, entry))
    return out


def _query_tokens(query: str, scoring: Scoring) -> tuple[list[str], list[str]]:
    """Query words to match, and (codemode only) soft hint words."""
    tokens = tokenize(query)
    if scoring == "baseline":
        return tokens, []
    content = list(dict.fromkeys(t for t in tokens if t not in _STOP_WORDS)) or list(dict.fromkeys(tokens))
    soft = [hint for hint in dict.fromkeys(_SOFT_HINTS.get(t, "") for t in tokens) if hint and hint not in content]
    return content, soft


def _scored(query: str, indexes: Sequence[_Index], scoring: Scoring) -> list[tuple[float, _Entry]]:
    q = normalize(query)
    qt, soft = _query_tokens(query, scoring)
    if not q or not qt:
        return []
    hits: list[tuple[float, _Entry]] = []
    stats = max(indexes, key=lambda index: len(index.entries))
    for index in indexes:
        if not index.entries:
            continue
        if scoring == "baseline":
            hits.extend(_score_baseline(index, q, qt))
        else:
            hits.extend(_score_codemode(index, q, qt, soft, stats))
    hits.sort(key=lambda h: (-h[0], h[1].sort_key))
    return hits


def search(
    query: str,
    connectors: Sequence[ConnectorDescription],
    snippets: Sequence[Snippet],
    *,
    limit: int = MAX_SEARCH_RESULTS,
    scoring: Scoring = "codemode",
) -> SearchOutput:
    """Rank connector methods and snippets for a free-text query.

    Results are ordered by score (descending), then path; at most `limit` are
    returned, with `total` counting every match.
    """
    if scoring not in ("codemode", "baseline"):
        raise ValueError(f"scoring must be 'codemode' or 'baseline', not {scoring!r}")
    indexes = (_connector_index(connectors), _snippet_index(snippets))
    hits = _scored(query, indexes, scoring)
    results = [
        SearchResult(
            path=e.path,
            connector=e.connector,
            method=e.method,
            description=e.description,
            requires_approval=e.requires_approval,
            kind=e.kind,
            score=round(score, 2),
        )
        for score, e in hits[: max(limit, 0)]
    ]
    return SearchOutput(results=results, total=len(hits), truncated=len(hits) > limit)


# ---------------------------------------------------------------------------
# describe
# ---------------------------------------------------------------------------


def _fence(language: str, code: str) -> str:
    return f"```{language}\n{code}\n```"


def describe(
    target: str,
    connectors: Sequence[ConnectorDescription],
    snippets: Sequence[Snippet],
    renderer: DeclarationRenderer,
) -> Description:
    """Declarations for a snippet, a whole connector, one method, or a type a method uses, in the
    sandbox's language.

    Lookup order follows Cloudflare's code mode: a snippet with that exact name; a connector
    (`"github"`); a method (`"github.create_issue"`, or a bare `"create_issue"`
    on any connector). A miss names the closest paths instead of just failing.
    Beyond Cloudflare's, which ignores what follows `connector.method`, further
    pieces name a type in the method's declarations (`"stripe.GetCharge.Customer"`)
    and then a type in that type's (`"stripe.GetCharge.Customer.Address"`): the
    declarations of a large method leave some types out and say so.
    The renderer keeps every result within its size budget; a connector with
    many tools is shown as signatures only.
    """
    for snippet in snippets:
        if snippet.name == target:
            return Description(
                path=snippet.name,
                description=snippet.description or None,
                requires_approval=False,
                types=f"{snippet.description}\n\n{_fence(renderer.language, snippet.code)}",
                kind="snippet",
            )
    parts = target.split(".")
    conn_name = parts[0]
    method_name = parts[1] if len(parts) > 1 else None
    type_path = [part for part in parts[2:] if part]
    by_name = {c.name: c for c in connectors}
    conn = by_name.get(conn_name)
    if conn is not None and not method_name:
        declarations = _fence(renderer.language, renderer.connector(conn.name, conn.tools))
        return Description(
            path=conn.name,
            description=conn.instructions or None,
            requires_approval=False,
            types="\n\n".join(part for part in (conn.instructions, declarations) if part),
            kind="connector",
        )
    candidates = [conn] if conn is not None else list(connectors)
    wanted = method_name if method_name is not None else target
    for candidate in candidates:
        spec = candidate.tools.get(wanted)
        if spec is None:
            continue
        path = f"{candidate.name}.{wanted}"
        note = ""
        if type_path:
            found = renderer.named_type(candidate.name, wanted, spec, type_path)
            if found is not None:
                return Description(
                    path=f"{path}.{'.'.join(type_path)}",
                    description=None,
                    requires_approval=False,
                    types=_fence(renderer.language, found),
                    kind="type",
                )
            note = f'No type "{".".join(type_path)}" is named in the declarations of {path}; here they are.\n\n'
        return Description(
            path=path,
            description=spec.description or None,
            requires_approval=bool(spec.requires_approval),
            types=note + _fence(renderer.language, renderer.method(candidate.name, wanted, spec)),
            kind="method",
        )
    message = f'"{target}" not found.'
    suggestions = _closest(target, connectors, snippets)
    if suggestions:
        message += " Closest names: " + ", ".join(suggestions) + "."
    message += ' Use codemode.search("...") to find the right name.'
    return Description(path=target, description=None, requires_approval=False, types=message, kind="method")


def _closest(
    target: str, connectors: Sequence[ConnectorDescription], snippets: Sequence[Snippet], n: int = 3
) -> list[str]:
    """Up to `n` likely intended paths: search hits first, then spelling neighbours."""
    found: list[str] = [r.path for r in search(target, connectors, snippets, limit=n).results]
    if len(found) < n:
        names = [s.name for s in snippets] + [f"{c.name}.{m}" for c in connectors for m in c.tools]
        bare = {f"{c.name}.{m}": m for c in connectors for m in c.tools}
        pool = names if "." in target else [*names, *bare.values()]
        for match in difflib.get_close_matches(target, pool, n=n * 2, cutoff=0.6):
            path = match
            if match not in names:  # a bare method name: report its full path
                path = next(p for p, m in bare.items() if m == match)
            if path not in found:
                found.append(path)
            if len(found) >= n:
                break
    return found[:n]
