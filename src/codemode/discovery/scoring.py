"""Ranking: Cloudflare's scorer to the letter ("baseline") and ours ("codemode"), over one index.

Both only ever look at entries sharing a token relation with the query, and add up their token scores
with dict operations that run in C. Only the best entries are scored in full: every entry gets a
lower bound of its score (token scores, coverage, phrase and exact-name bonuses), and the remaining
bonuses are bounded, so once the `limit`-th best full score beats the next entry's lower bound plus
that bound, no entry left can enter the results. `total` still counts every match.
"""

from __future__ import annotations

import heapq
import itertools
import math
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

from codemode.connectors.spec import ConnectorDescription
from codemode.discovery.index import F_CONNECTOR, F_DESCRIPTION, F_METHOD, F_PATH, PRIMARY, Index
from codemode.discovery.index import connector_index as _connector_index
from codemode.discovery.index import snippet_index as _snippet_index
from codemode.discovery.results import MAX_SEARCH_RESULTS, SearchOutput, SearchResult
from codemode.discovery.text import SOFT_HINTS, STOP_WORDS, fold, folded, normalize, tokenize
from codemode.records import Snippet

__all__ = ["Scoring", "search", "search_index"]

Scoring = Literal["codemode", "baseline"]

_BASELINE_WEIGHTS = (12.0, 8.0, 10.0, 5.0)

# Tuning of the codemode scorer, chosen on benchmarks/search_quality.py.
_CODEMODE_WEIGHTS = (12.0, 8.0, 10.0, 5.0, 3.0, 1.0, 0.5)  # path, connector, method, description, params, ...
_IDF_FLOOR = 0.3  # a token's weight is FLOOR + (1 - FLOOR) * idf / max_idf
_MIN_COVERAGE = 0.5  # share of query words an entry must match (unless it contains the whole phrase)
_PRECISION_WEIGHT = 100.0  # bonus for method names made only of what was asked
_PAIR_WEIGHT = 12.0  # per pair of adjacent query words found adjacent in the description
_SOFT_WEIGHT = 0.5  # weight of hinted words ("my" -> "authenticated")
_FIRST_TOKEN_BONUS = 8
_EXACT_NAME_BONUS = 20
_EPSILON = 1e-6  # float sums in another order may differ in the last bits: bounds keep this margin
_TIE_DIGITS = 9  # scores equal to this many decimals are ties, ordered by path (not by rounding noise)

# (full score, entry) pairs of one index
_Hits = list[tuple[float, int]]


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


def _coverage_bonus(count: int, n: int) -> int:
    coverage = count / n
    return 25 if coverage == 1 else _js_round(coverage * 10)


def _add(scores: dict[int, float], found: dict[int, int], weight: float) -> None:
    """`scores[e] += found[e] * weight` for every entry of `found`, in C."""
    keys = found.keys()
    scores.update(
        zip(
            keys,
            map(
                operator.add,
                map(scores.get, keys, itertools.repeat(0.0)),
                map(operator.mul, found.values(), itertools.repeat(weight)),
            ),
            strict=True,
        )
    )


_DIRECT_PHRASES = 500  # up to this many candidates, check each; beyond, scan each field's joined texts once


def _phrases(index: Index, q: str, weights: Sequence[float], candidates: Sequence[int]) -> dict[int, float]:
    """Entry -> phrase bonus over the primary fields, for the `candidates` containing the normalized query."""
    phrase: dict[int, float] = {}
    fields = (F_PATH, F_CONNECTOR, F_METHOD, F_DESCRIPTION)
    if len(candidates) <= _DIRECT_PHRASES:
        raw = index.raw
        for e in candidates:
            total = 0.0
            for f in fields:
                text = raw(f, e)
                if q in text:
                    total += _phrase_score(text, q) * weights[f]
            if total:
                phrase[e] = total
        return phrase
    wanted = set(candidates)
    for f in fields:
        w = weights[f]
        if f == F_CONNECTOR:
            for g, text in enumerate(index.group_raws):
                if q in text:
                    bonus = _phrase_score(text, q) * w
                    for e in wanted.intersection(index.group_ranges[g]):
                        phrase[e] = phrase.get(e, 0.0) + bonus
            continue
        texts = index.texts[f]
        for e in texts.containing(q):
            if e in wanted:
                phrase[e] = phrase.get(e, 0.0) + _phrase_score(texts.raws[e], q) * w
    return phrase


def _best(bounds: dict[int, float], limit: int, full: Callable[[int], float], slack: float) -> _Hits:
    """The entries that can be among the best `limit`, scored in full.

    `bounds[e] + slack` bounds entry e's score from above; entries are scored best bound first until
    the `limit`-th full score beats every bound left.
    """
    if limit <= 0:
        return []
    heap = list(zip(map(operator.neg, bounds.values()), bounds.keys(), strict=True))
    heapq.heapify(heap)
    slack += _EPSILON
    kept: list[float] = []  # the best `limit` full scores so far, smallest first
    out: _Hits = []
    while heap:
        if len(kept) >= limit and slack - heap[0][0] < kept[0]:
            break
        e = heapq.heappop(heap)[1]
        score = full(e)
        out.append((score, e))
        if len(kept) < limit:
            heapq.heappush(kept, score)
        elif score > kept[0]:
            heapq.heapreplace(kept, score)
    if len(kept) >= limit:  # beaten by `limit` entries of this index: out of the results for sure
        out = [hit for hit in out if hit[0] >= kept[0] - _EPSILON]
    return out


def _score_baseline(index: Index, q: str, qt: list[str], limit: int) -> tuple[_Hits, int]:
    """Cloudflare's ranking to the letter, over the entries sharing a token relation with the query."""
    unique = list(dict.fromkeys(qt))
    token_score: dict[int, float] = {}
    matched: Counter[int] = Counter()
    for t in unique:
        times = qt.count(t)  # duplicated query tokens score every time they appear
        rel = index.related(t, False)
        hit: set[int] = set()
        for f, found in index.best(rel, PRIMARY).items():
            _add(token_score, found, _BASELINE_WEIGHTS[f] * times)
            hit.update(found.keys())
        matched.update(hit)
    n = len(qt)
    minimum = 1.0 if n <= 2 else 0.6
    exact = index.named(q)
    phrase = _phrases(index, q, _BASELINE_WEIGHTS, [e for e, count in matched.items() if count == len(unique)])
    upper: dict[int, float] = {}  # the score less the first-token bonus
    for e, count in matched.items():
        coverage = count / n
        # The query phrase inside a field implies every query token matched there: only entries
        # matching them all were given a phrase bonus.
        ph = phrase.get(e, 0.0)
        if coverage < minimum and not ph:
            continue
        upper[e] = token_score[e] + ph + (_coverage_bonus(count, n) + (_EXACT_NAME_BONUS if e in exact else 0))

    qt0 = qt[0]

    def full(e: int) -> float:
        bonus = _coverage_bonus(matched[e], n) + (_EXACT_NAME_BONUS if e in exact else 0)
        if qt0 in index.extras[e].first_tokens:
            bonus += _FIRST_TOKEN_BONUS
        return token_score[e] + phrase.get(e, 0.0) + bonus

    return _best(upper, limit, full, _FIRST_TOKEN_BONUS), len(upper)


def _score_codemode(
    index: Index, q: str, qt: list[str], soft: list[str], stats: Index, limit: int
) -> tuple[_Hits, int]:
    """The baseline's shape, with folded relations, more fields, IDF and a name-precision bonus.

    `stats` supplies the word rarity (the connector catalog, also when scoring
    snippets, so both kinds of result are weighed on one scale).
    """
    token_score: dict[int, float] = {}
    matched: Counter[int] = Counter()
    primary: set[int] = set()  # entries with a primary field related to a (non-hint) query word
    # Entry -> how many of its method-name words are strongly related to a query word (counted once per
    # query word): it bounds the share of the name the query explains (precision), which needs at least one.
    named: Counter[int] = Counter()
    method_postings = index.postings[F_METHOD]
    # The low-weight fields (parameters, instructions) hold most postings, but only count for the entries
    # that are hits: their scores are added once the hits are known.
    deferred: list[tuple[dict[int, int], float]] = []
    related: dict[str, int] = {}  # vocabulary token -> strongest relation to a (non-hint) query word
    for t in [*qt, *soft]:
        is_soft = t in soft
        rel = index.related(t, True)
        if not is_soft:
            for c, r in rel.items():
                if related.get(c, 0) < r:
                    related[c] = r
        # Rare tokens weigh more; the floor keeps a common word from vanishing.
        tw = _IDF_FLOOR + (1 - _IDF_FLOOR) * stats.idf(fold(t)) / stats.max_idf
        if is_soft:
            tw *= _SOFT_WEIGHT
        hit: set[int] = set()
        for f, found in index.best(rel).items():
            if f in PRIMARY:
                _add(token_score, found, _CODEMODE_WEIGHTS[f] * tw)
                if not is_soft:
                    primary.update(found.keys())
            else:
                deferred.append((found, _CODEMODE_WEIGHTS[f] * tw))
            if not is_soft:
                hit.update(found.keys())
        matched.update(hit)
        if not is_soft:
            named.update(itertools.chain.from_iterable(method_postings.get(c, ()) for c, r in rel.items() if r >= 2))
    n = len(qt)
    exact = index.named(q)
    phrase = _phrases(index, q, _CODEMODE_WEIGHTS, [e for e in primary if matched[e] == n])
    first_canon = fold(qt[0])
    qt0 = qt[0]
    query_pairs = frozenset(itertools.pairwise(folded(qt)))
    # What the first-token, pair and precision bonuses can add at most.
    slack = _FIRST_TOKEN_BONUS + _PAIR_WEIGHT * len(query_pairs)
    coverage_bonus = [_coverage_bonus(count, n) for count in range(n + 1)]
    # Entries matching too few query words drop out (an entry holding the whole phrase matched every word),
    # and so do those matched only through parameters or instructions: too weak to show. The bounds of the
    # rest are worked out with maps that run in C: token scores, coverage bonus, a bound of the precision
    # bonus; then the phrase and exact-name bonuses of the few that have one, and the slack left for the rest.
    need = next(c for c in range(n + 1) if c / n >= _MIN_COVERAGE)
    candidates = list(primary)
    if need > 1:
        counts = map(matched.__getitem__, candidates)
        candidates = list(itertools.compress(candidates, map(operator.ge, counts, itertools.repeat(need))))
    hits = set(candidates)
    for found, weight in deferred:
        keys = hits.intersection(found.keys())
        _add(token_score, dict(zip(keys, map(found.__getitem__, keys), strict=True)), weight)
    bounds = map(
        operator.add,
        map(token_score.__getitem__, candidates),
        map(coverage_bonus.__getitem__, map(matched.__getitem__, candidates)),
    )
    shares = map(
        operator.truediv, map(named.get, candidates, itertools.repeat(0)), map(index.term_share.__getitem__, candidates)
    )
    precision = map(operator.mul, map(min, shares, itertools.repeat(1.0)), itertools.repeat(_PRECISION_WEIGHT))
    upper = dict(zip(candidates, map(operator.add, bounds, precision), strict=True))
    for e, bonus in phrase.items():
        upper[e] += bonus
    for e in exact:
        if e in upper:
            upper[e] += _EXACT_NAME_BONUS
    get_phrase = phrase.get

    def full(e: int) -> float:
        extras = index.extras[e]
        count = matched[e]
        bonus = coverage_bonus[count]
        if qt0 in extras.first_tokens or first_canon in extras.first_canons:
            bonus += _FIRST_TOKEN_BONUS
        if e in exact:
            bonus += _EXACT_NAME_BONUS
        terms = extras.method_terms
        precision = sum(1 for c in terms if related.get(c, 0) >= 2) / len(terms) if terms else 0.0
        score = token_score[e] + get_phrase(e, 0.0) + bonus  # only entries matching every word have one
        # Query words that sit side by side in the description, as written: "external account" rather than
        # "external" somewhere and "account" elsewhere.
        if query_pairs:
            score += _PAIR_WEIGHT * len(query_pairs.intersection(itertools.pairwise(extras.words)))
        return score + _PRECISION_WEIGHT * precision

    return _best(upper, limit, full, slack), len(upper)


def _query_tokens(query: str, scoring: Scoring) -> tuple[list[str], list[str]]:
    """Query words to match, and (codemode only) soft hint words."""
    tokens = tokenize(query)
    if scoring == "baseline":
        return tokens, []
    content = list(dict.fromkeys(t for t in tokens if t not in STOP_WORDS)) or list(dict.fromkeys(tokens))
    soft = [hint for hint in dict.fromkeys(SOFT_HINTS.get(t, "") for t in tokens) if hint and hint not in content]
    return content, soft


def _scored(
    query: str, indexes: Sequence[Index], scoring: Scoring, limit: int
) -> tuple[list[tuple[float, Index, int]], int]:
    """The best `limit` hits over all indexes, best first (ties by path), and how many matched in all."""
    q = normalize(query)
    qt, soft = _query_tokens(query, scoring)
    if not q or not qt:
        return [], 0
    stats = max(indexes, key=lambda index: index.size)
    ranked: list[tuple[float, tuple[str, str], int, int, Index]] = []
    total = 0
    for number, index in enumerate(indexes):
        if not index.size:
            continue
        if scoring == "baseline":
            hits, count = _score_baseline(index, q, qt, limit)
        else:
            hits, count = _score_codemode(index, q, qt, soft, stats, limit)
        total += count
        ranked.extend((-round(score, _TIE_DIGITS), index.sort_key(e), number, e, index) for score, e in hits)
    ranked.sort(key=operator.itemgetter(0, 1, 2, 3))
    return [(-neg, index, e) for neg, _, _, e, index in ranked[: max(limit, 0)]], total


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
    return search_index(query, _connector_index(connectors), snippets, limit=limit, scoring=scoring)


def search_index(
    query: str,
    index: Index,
    snippets: Sequence[Snippet],
    *,
    limit: int = MAX_SEARCH_RESULTS,
    scoring: Scoring = "codemode",
) -> SearchOutput:
    """`search` over a catalog's index built beforehand (`connector_index`)."""
    if scoring not in ("codemode", "baseline"):
        raise ValueError(f"scoring must be 'codemode' or 'baseline', not {scoring!r}")
    hits, total = _scored(query, (index, _snippet_index(snippets)), scoring, limit)
    results = []
    for score, index, e in hits:
        g = index.group_of[e]
        results.append(
            SearchResult(
                path=index.paths[e],
                connector=index.group_names[g],
                method=index.methods[e],
                description=index.descriptions[e],
                requires_approval=index.approvals[e],
                kind=index.group_kinds[g],
                score=round(score, 2),
            )
        )
    return SearchOutput(results=results, total=total, truncated=total > limit)
