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
identity of its `ConnectorDescription` objects (`index.py`); only the entries
that can reach the results are scored in full (`scoring.py`). Over 10,000 tools
the index builds in a few tenths of a second and a query takes a few
milliseconds in pure Python (see `docs/performance.md`).
"""

from __future__ import annotations

from codemode.discovery.describe import describe
from codemode.discovery.index import connector_index as _connector_index
from codemode.discovery.results import MAX_SEARCH_RESULTS, Description, SearchOutput, SearchResult
from codemode.discovery.scoring import Scoring, _js_round, search
from codemode.discovery.text import normalize, tokenize
from codemode.discovery.text import stem as _stem

# Internals the tests reach for, importable where they were before discovery became a package.
_INTERNALS = (_connector_index, _js_round, _stem)

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
