"""The search index: one inverted index per catalog, built once and memoized.

Entries are kept as columns (a list per attribute), postings as compact arrays of entry numbers, one
map per field. The connector name and the connector's instructions are the same for every method of a
connector, so their postings name connectors, not methods: a catalog of 10,000 methods holds a few
dozen postings for them instead of hundreds of thousands. What only the best few hits need (the sort
key, the first words, the method's words, the description's word pairs) is worked out on first use.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import threading
from array import array
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from codemode.connectors.spec import ConnectorDescription
from codemode.discovery.results import ResultKind
from codemode.discovery.text import CANONICAL, STOP_WORDS, fold, normalize, stem, tokens_of
from codemode.records import Snippet

__all__ = ["FIELDS", "Extras", "Index", "connector_index", "snippet_index", "sort_key"]

# Field numbers. The first four are Cloudflare's fields ("primary"); the connector name (1) and the
# instructions (6) are connector-wide.
F_PATH, F_CONNECTOR, F_METHOD, F_DESCRIPTION, F_PARAMS, F_PARAM_DOCS, F_INSTRUCTIONS = range(7)
FIELDS = range(7)
PRIMARY = range(4)
_GROUP_FIELDS = (F_CONNECTOR, F_INSTRUCTIONS)

# Tuning of the codemode scorer, chosen on benchmarks/search_quality.py.
FUZZY_PREFIX = 5  # shared-prefix relation: at least this many characters...
FUZZY_SHARE = 0.75  # ...and this share of the shorter word
FUZZY_STRENGTH = 2
SUBSTRING_STRENGTH = 1  # a query word inside a longer word ("hook" in "webhooks")

# Normalized text never holds "_" (it becomes a space), nor, therefore, does a normalized query: it
# separates the texts of a field in one string, so `str.find` scans a whole field at C speed.
_SEPARATOR = "_"
_RELATIONS_KEPT = 4096  # query words whose relations an index remembers

# Approximates ICU root collation (what JS `localeCompare` uses) closely enough
# for identifiers: punctuation before digits before letters, `_` before `.`,
# case ignored at first and lowercase first on ties.
_PUNCT_ORDER = "_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$"


def _slow_key(ch: str) -> str:
    if ch.isalnum():
        return ch
    rank = _PUNCT_ORDER.find(ch)
    return chr(1 + (rank if rank >= 0 else len(_PUNCT_ORDER)))


_ASCII_KEYS = {code: _slow_key(chr(code)) for code in range(128)}


def sort_key(path: str) -> tuple[str, str]:
    """The tie-break order of equal scores: path ascending, like `localeCompare`."""
    folded = path.casefold()
    if folded.isascii():
        return folded.translate(_ASCII_KEYS), path.swapcase()
    return "".join(map(_slow_key, folded)), path.swapcase()


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


@dataclass(frozen=True)
class _Item:
    path: str
    method: str
    description: str
    requires_approval: bool
    input_schema: Mapping[str, Any] | None


@dataclass(frozen=True)
class _Group:
    """Items sharing a connector name and instructions (a connector, or all snippets)."""

    name: str
    instructions: str | None
    kind: ResultKind
    items: list[_Item]


class Extras(NamedTuple):
    """What scoring needs of an entry only when it is among the best."""

    first_tokens: tuple[str, ...]  # first token of the path and of the method (+8 bonus)
    first_canons: tuple[str, ...]  # the same, folded, for the codemode scorer
    method_terms: tuple[str, ...]  # distinct method-name words that carry meaning (codemode precision)
    words: tuple[str, ...]  # meaningful description words in order, folded (codemode phrasing)


def _method_terms(tokens: Sequence[str], fold: Callable[[str], str]) -> tuple[str, ...]:
    """One token per distinct folded word of a method name, stop words left out.

    `GetPromotionCodesPromotionCode` counts "promotion" and "code" once, so a
    repeated word cannot make a name look more on-topic than it is.
    """
    seen: dict[str, str] = {}
    for t in tokens:
        if t not in STOP_WORDS:
            seen.setdefault(fold(t), t)
    return tuple(seen.values())


class _Folds(dict[str, str]):
    """Token -> `fold(token)`, each worked out once per build."""

    def __missing__(self, token: str) -> str:
        value = self[token] = fold(token)
        return value


class _FieldText:
    """The normalized texts of one field, joined, so that finding a phrase is one C-speed scan."""

    def __init__(self, raws: list[str]) -> None:
        self.raws = raws
        self.blob = _SEPARATOR.join(raws)
        # starts[i] is where text i begins; one more entry marks the end.
        self.starts = list(itertools.accumulate(map(operator.add, map(len, raws), itertools.repeat(1)), initial=0))

    def containing(self, phrase: str) -> list[int]:
        """Numbers of the texts that contain `phrase` (which holds no separator)."""
        blob, starts = self.blob, self.starts
        found: list[int] = []
        pos = blob.find(phrase)
        while pos != -1:
            i = bisect.bisect_right(starts, pos) - 1
            found.append(i)
            pos = blob.find(phrase, starts[i + 1])
        return found


class Index:
    """Entries plus an inverted index from vocabulary tokens to the entries (or connectors) holding them.

    Every token relation the scorers use (equal, prefix either way, substring,
    same stem, synonym) is resolved against the vocabulary once per query token;
    scoring then walks only the postings of the related tokens, so its cost
    follows the number of matches, not the size of the catalog.
    """

    def __init__(self, groups: Sequence[_Group]) -> None:
        self.paths: list[str] = []
        self.methods: list[str] = []
        self.descriptions: list[str] = []
        self.approvals: list[bool] = []
        self.group_of: list[int] = []
        self.group_names = [g.name for g in groups]
        self.group_kinds = [g.kind for g in groups]
        self.group_ranges: list[range] = []
        raw_paths: list[str] = []
        raw_methods: list[str] = []
        raw_descriptions: list[str] = []
        lists: list[defaultdict[str, list[int]]] = [defaultdict(list) for _ in FIELDS]
        texts: dict[str, tuple[str, ...]] = {}  # parameter texts repeat across a catalog's methods
        folds = _Folds()
        self.extras: list[Extras] = []
        # len(extras[e].method_terms) (infinite when none: no precision bonus), for a bound of that bonus
        self.term_share = array("d")

        def distinct(text: str) -> tuple[str, ...]:
            found = texts.get(text)
            if found is None:
                found = texts[text] = tuple(dict.fromkeys(tokens_of(normalize(text))))
            return found

        e = 0
        for g, group in enumerate(groups):
            start = e
            for token in distinct(group.name):
                lists[F_CONNECTOR][token].append(g)
            for token in distinct(group.instructions or ""):
                lists[F_INSTRUCTIONS][token].append(g)
            for item in group.items:
                raw_path, raw_method, raw_description = (
                    normalize(item.path),
                    normalize(item.method),
                    normalize(item.description),
                )
                params, param_docs = _schema_params(item.input_schema)
                path_tokens, method_tokens = tokens_of(raw_path), tokens_of(raw_method)
                description_tokens = tokens_of(raw_description)
                firsts = tuple(tokens[0] for tokens in (path_tokens, method_tokens) if tokens)
                terms = _method_terms(method_tokens, folds.__getitem__)
                self.extras.append(
                    Extras(
                        first_tokens=firsts,
                        first_canons=tuple(folds[t] for t in firsts),
                        method_terms=terms,
                        words=tuple([folds[t] for t in description_tokens if t not in STOP_WORDS]),
                    )
                )
                self.term_share.append(len(terms) or math.inf)
                for f, tokens in (
                    (F_PATH, dict.fromkeys(path_tokens)),
                    (F_METHOD, dict.fromkeys(method_tokens)),
                    (F_DESCRIPTION, dict.fromkeys(description_tokens)),
                    (F_PARAMS, distinct(params)),
                    (F_PARAM_DOCS, distinct(param_docs)),
                ):
                    postings = lists[f]
                    for token in tokens:
                        postings[token].append(e)
                raw_paths.append(raw_path)
                raw_methods.append(raw_method)
                raw_descriptions.append(raw_description)
                self.paths.append(item.path)
                self.methods.append(item.method)
                self.descriptions.append(item.description)
                self.approvals.append(item.requires_approval)
                e += 1
            self.group_of.extend(itertools.repeat(g, e - start))
            self.group_ranges.append(range(start, e))
        self.size = e
        # Entry numbers as 4-byte unsigned integers: a tenth of a list of Python ints.
        self.postings: list[dict[str, array[int]]] = [
            {token: array("I", ids) for token, ids in field.items()} for field in lists
        ]
        self.group_raws = [normalize(name) for name in self.group_names]
        self._names: dict[str, list[int]] = {}  # normalized path or method -> entries (the exact-name bonus)
        for raws in (raw_paths, raw_methods):
            for e, raw in enumerate(raws):
                self._names.setdefault(raw, []).append(e)
        # The normalized texts of the per-entry primary fields, for phrases and on-demand extras.
        self.texts = {F_PATH: _FieldText(raw_paths), F_METHOD: _FieldText(raw_methods)}
        self.texts[F_DESCRIPTION] = _FieldText(raw_descriptions)
        vocab_set: set[str] = set()
        for field in lists:
            vocab_set.update(field)
        self.vocab = sorted(vocab_set)
        # Token -> the fields holding it, with their postings: one lookup per related token.
        self.holders: dict[str, tuple[tuple[int, array[int]], ...]] = {
            token: tuple((f, self.postings[f][token]) for f in FIELDS if token in self.postings[f])
            for token in vocab_set
        }
        self._relations: dict[tuple[str, bool], dict[str, int]] = {}
        # One string holding the whole vocabulary lets `str.find` do substring
        # scans at C speed; `starts` maps a hit position back to its token.
        self.blob = "\n".join(self.vocab)
        self.starts = list(
            itertools.accumulate(map(operator.add, map(len, self.vocab), itertools.repeat(1)), initial=0)
        )[:-1]
        self.by_stem: dict[str, list[str]] = {}
        self.by_canonical: dict[str, list[str]] = {}
        self.by_fold: dict[str, list[str]] = {}
        for token in self.vocab:
            s = stem(token)
            self.by_stem.setdefault(s, []).append(token)
            canon = CANONICAL.get(s)
            if canon is not None:
                self.by_canonical.setdefault(canon, []).append(token)
            self.by_fold.setdefault(canon or s, []).append(token)
        self.max_idf = math.log(1.0 + max(self.size, 1))
        self._idf: dict[str, float] = {}
        self._sort_keys: dict[int, tuple[str, str]] = {}

    # -- per entry, on demand ------------------------------------------------

    def sort_key(self, e: int) -> tuple[str, str]:
        key = self._sort_keys.get(e)
        if key is None:
            key = self._sort_keys[e] = sort_key(self.paths[e])
        return key

    # -- per token --------------------------------------------------------------

    def idf(self, canon: str) -> float:
        """Inverse document frequency of a folded word over the primary fields (max when absent):
        a word shared by half the catalog says little about which tool is meant."""
        value = self._idf.get(canon)
        if value is None:
            holders: set[int] = set()
            for token in self.by_fold.get(canon, ()):
                for f in PRIMARY:
                    ids = self.postings[f].get(token)
                    if ids is None:
                        continue
                    if f == F_CONNECTOR:
                        holders.update(itertools.chain.from_iterable(self.group_ranges[g] for g in ids))
                    else:
                        holders.update(ids)
            value = math.log(1.0 + max(self.size, 1) / len(holders)) if holders else self.max_idf
            self._idf[canon] = value
        return value

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
        inner = 1 if not codemode else SUBSTRING_STRENGTH
        known = self.holders  # keyed by the whole vocabulary
        if not codemode or len(token) >= 3:
            for c in self.substring_hits(token):
                r = 4 if c == token else 2 if c.startswith(token) else inner
                if r:
                    rel[c] = r
        elif token in known:
            rel[token] = 4
        for k in range(3 if codemode else 1, len(token)):
            prefix = token[:k]
            if prefix in known and rel.get(prefix, 0) < 2:
                rel[prefix] = 2
        if codemode:
            if len(token) >= FUZZY_PREFIX:
                # Shared stems the suffix rules miss: "invite"/"invitation", "subscribe"/"subscription".
                head = token[:FUZZY_PREFIX]
                i = bisect.bisect_left(self.vocab, head)
                while i < len(self.vocab) and self.vocab[i].startswith(head):
                    c = self.vocab[i]
                    i += 1
                    if rel.get(c, 0) >= FUZZY_STRENGTH:
                        continue
                    common = FUZZY_PREFIX
                    limit = min(len(c), len(token))
                    while common < limit and c[common] == token[common]:
                        common += 1
                    if common >= FUZZY_SHARE * limit:
                        rel[c] = FUZZY_STRENGTH
            s = stem(token)
            for c in self.by_stem.get(s, ()):
                if rel.get(c, 0) < 3:
                    rel[c] = 3
            canon = CANONICAL.get(s)
            if canon is not None:
                for c in self.by_canonical.get(canon, ()):
                    if rel.get(c, 0) < 2:
                        rel[c] = 2
        return rel

    def best(self, rel: Mapping[str, int], fields: range = FIELDS) -> dict[int, dict[int, int]]:
        """Field -> entry -> the strongest relation of any token of that field of the entry (fields and
        entries with none left out)."""
        by_field: dict[int, dict[int, list[Iterable[int]]]] = {}
        holders = self.holders
        ranges = self.group_ranges
        for c, r in rel.items():
            for f, ids in holders[c]:
                if f in fields:
                    by_strength = by_field.setdefault(f, {})
                    if f in _GROUP_FIELDS:
                        by_strength.setdefault(r, []).extend(ranges[g] for g in ids)
                    else:
                        by_strength.setdefault(r, []).append(ids)
        out: dict[int, dict[int, int]] = {}
        for f in sorted(by_field):
            by_strength = by_field[f]
            # Weakest first, so a stronger relation overwrites; the loops run in C.
            found: dict[int, int] = {}
            for r in sorted(by_strength):
                found.update(dict.fromkeys(itertools.chain.from_iterable(by_strength[r]), r))
            out[f] = found
        return out

    def related(self, token: str, codemode: bool) -> dict[str, int]:
        """`relations`, memoized per query word (the index never changes; the result must not be changed)."""
        key = (token, codemode)
        found = self._relations.get(key)
        if found is None:
            if len(self._relations) >= _RELATIONS_KEPT:
                self._relations.clear()
            found = self._relations[key] = self.relations(token, codemode)
        return found

    def named(self, q: str) -> set[int]:
        """Entries whose normalized path or method is exactly `q`."""
        return set(self._names.get(q, ()))

    def raw(self, f: int, e: int) -> str:
        """The normalized text of a primary field of an entry."""
        if f == F_CONNECTOR:
            return self.group_raws[self.group_of[e]]
        return self.texts[f].raws[e]


def _connector_groups(conns: Sequence[ConnectorDescription]) -> list[_Group]:
    return [
        _Group(
            name=c.name,
            instructions=c.instructions,
            kind="method",
            items=[
                _Item(f"{c.name}.{m}", m, spec.description or "", bool(spec.requires_approval), spec.input_schema)
                for m, spec in c.tools.items()
            ],
        )
        for c in conns
    ]


def _snippet_groups(snippets: Sequence[Snippet]) -> list[_Group]:
    items = [_Item(s.name, s.name, s.description or "", False, s.input_schema) for s in snippets]
    return [_Group(name="snippet", instructions=None, kind="snippet", items=items)]


_INDEX_CACHE: OrderedDict[tuple[int, ...], tuple[tuple[ConnectorDescription, ...], Index]] = OrderedDict()
_INDEX_CACHE_SIZE = 16
_SNIPPET_CACHE: OrderedDict[tuple[Any, ...], Index] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def connector_index(connectors: Sequence[ConnectorDescription]) -> Index:
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
    index = Index(_connector_groups(conns))
    with _CACHE_LOCK:
        _INDEX_CACHE[key] = (conns, index)
        _INDEX_CACHE.move_to_end(key)
        while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
            _INDEX_CACHE.popitem(last=False)
    return index


def _snippet_key(snippets: Sequence[Snippet]) -> tuple[Any, ...]:
    return tuple((s.name, s.description, repr(s.input_schema)) for s in snippets)


def snippet_index(snippets: Sequence[Snippet]) -> Index:
    """Snippets come fresh from the store each time, so they are memoized by value."""
    key = _snippet_key(snippets)
    with _CACHE_LOCK:
        hit = _SNIPPET_CACHE.get(key)
        if hit is not None:
            _SNIPPET_CACHE.move_to_end(key)
            return hit
    index = Index(_snippet_groups(snippets))
    with _CACHE_LOCK:
        _SNIPPET_CACHE[key] = index
        while len(_SNIPPET_CACHE) > _INDEX_CACHE_SIZE:
            _SNIPPET_CACHE.popitem(last=False)
    return index
