"""Discovery: the spec-§6 baseline to the letter, our scorer's recall, and `describe`."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, get_args

import pytest

from codemode.connectors.spec import ConnectorDescription, ToolSpec
from codemode.discovery import (
    Description,
    Scoring,
    SearchOutput,
    SearchResult,
    _connector_index,
    _js_round,
    _stem,
    describe,
    normalize,
    search,
    tokenize,
)
from codemode.records import Snippet
from codemode.schema.base import DESCRIBE_BUDGET, DeclarationRenderer
from codemode.schema.python import PythonDeclarations
from codemode.schema.typescript import TypeScriptDeclarations

from catalog import openapi_tools

SAVED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _noop(args: dict[str, Any], ctx: Any) -> None:
    return None


def spec(description: str = "", *, approval: bool = False, params: Mapping[str, str] | None = None) -> ToolSpec:
    properties = {name: {"type": "string", "description": doc} for name, doc in (params or {}).items()}
    return ToolSpec(
        execute=_noop,
        description=description,
        input_schema={"type": "object", "properties": properties},
        requires_approval=approval,
    )


def snippet(name: str, description: str, code: str = "return 1") -> Snippet:
    return Snippet(name=name, description=description, code=code, saved_at=SAVED)


# The fixture of spec §6.4. `list_issues` is given the description that makes
# the spec's 295 come out: "issues" must sit inside it, not at its start.
GITHUB = ConnectorDescription(
    name="github",
    instructions=None,
    tools={
        "create_issue": spec("Create a repository issue", approval=True),
        "list_issues": spec("List issues for a repository."),
    },
)
GITHUB_PULLS = ConnectorDescription(
    name="github",
    instructions=None,
    tools={"list_pull_requests": spec("List pull requests for a repository.")},
)
TRIAGE = snippet("triage", "Triage open issues")


def paths(out: SearchOutput) -> list[str]:
    return [r.path for r in out.results]


# ---------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------


def test_normalize_splits_camel_case_and_separators() -> None:
    assert normalize("createIssue") == "create issue"
    assert normalize("github.list_issues") == "github list issues"
    assert normalize("a__b..c//d::e--f") == "a b c d e f"
    assert normalize("  Get HTTPResponse  ") == "get httpresponse"
    assert normalize("x1Y") == "x1 y"


def test_normalize_does_not_collapse_other_whitespace() -> None:
    assert normalize("a  b") == "a  b"
    assert normalize("a_ b") == "a  b"


def test_tokenize_drops_empty_tokens() -> None:
    assert tokenize("List pull requests (for a repository).") == ["list", "pull", "requests", "for", "a", "repository"]
    assert tokenize("GetCustomersCustomer") == ["get", "customers", "customer"]
    assert tokenize("...") == []


def test_js_round_rounds_halves_up() -> None:
    assert _js_round(6.5) == 7
    assert _js_round(0.65 * 10) == 7  # Python's round() would give 6
    assert _js_round(6.49) == 6
    assert _js_round(2.5) == 3


# ---------------------------------------------------------------------------
# Baseline: the spec's worked examples, exactly
# ---------------------------------------------------------------------------


def test_baseline_create_issue_matches_only_create_issue_with_481() -> None:
    out = search("create issue", [GITHUB], [TRIAGE], scoring="baseline")
    assert paths(out) == ["github.create_issue"]
    assert out.results[0].score == 481
    assert out.total == 1 and out.truncated is False


def test_baseline_pull_request_scores_349() -> None:
    out = search("pull request", [GITHUB_PULLS], [], scoring="baseline")
    assert [(r.path, r.score) for r in out.results] == [("github.list_pull_requests", 349)]


def test_baseline_issues_ranks_list_create_then_snippet() -> None:
    out = search("issues", [GITHUB], [TRIAGE], scoring="baseline")
    assert [(r.path, r.score) for r in out.results] == [
        ("github.list_issues", 295),
        ("github.create_issue", 79),
        ("triage", 75),
    ]


def test_result_fields_and_kinds() -> None:
    out = search("issues", [GITHUB], [TRIAGE], scoring="baseline")
    first, second, third = out.results
    assert first == SearchResult(
        path="github.list_issues",
        connector="github",
        method="list_issues",
        description="List issues for a repository.",
        requires_approval=False,
        kind="method",
        score=295,
    )
    assert second.requires_approval is True
    assert (third.connector, third.method, third.kind) == ("snippet", "triage", "snippet")
    assert third.requires_approval is False


def test_to_dict_is_json_ready_with_snake_case_keys() -> None:
    out = search("issues", [GITHUB], [TRIAGE], scoring="baseline")
    data = out.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["total"] == 3 and data["truncated"] is False
    keys = {"path", "connector", "method", "description", "requires_approval", "kind", "score"}
    assert set(data["results"][0]) == keys


def test_empty_queries_match_nothing() -> None:
    for query in ("", "   ", "...", "__"):
        for scoring in get_args(Scoring):
            out = search(query, [GITHUB], [TRIAGE], scoring=scoring)
            assert out == SearchOutput(results=[], total=0, truncated=False)


def test_duplicate_query_tokens_lower_coverage() -> None:
    # "issue issue": one distinct token matched out of two -> coverage 0.5 < 1 -> no match.
    assert search("issue issue", [GITHUB], [], scoring="baseline").total == 0
    # Three tokens need 0.6: "create issue zzz" covers 2/3.
    out = search("create issue zzz", [GITHUB], [], scoring="baseline")
    assert paths(out) == ["github.create_issue"]


def test_results_are_capped_at_fifty_with_total_and_truncated() -> None:
    many = ConnectorDescription("bulk", None, {f"get_item_{i:03d}": spec("Get an item") for i in range(60)})
    out = search("item", [many], [], scoring="baseline")
    assert len(out.results) == 50 and out.total == 60 and out.truncated is True
    # Equal scores sort by path ascending.
    assert paths(out) == sorted(paths(out))
    assert paths(out)[0] == "bulk.get_item_000"
    small = search("item", [many], [], limit=5)
    assert len(small.results) == 5 and small.total == 60 and small.truncated is True


def test_ties_sort_by_path_like_locale_compare() -> None:
    conn = ConnectorDescription("c", None, {"b_x": spec("thing"), "a_x": spec("thing"), "B_y": spec("thing")})
    out = search("thing", [conn], [], scoring="baseline")
    # localeCompare ignores case at first, so B_y sorts between a_x and b_x.
    assert paths(out) == ["c.a_x", "c.b_x", "c.B_y"]


def test_unknown_scoring_is_refused() -> None:
    with pytest.raises(ValueError):
        search("x", [GITHUB], [], scoring="bm25")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Baseline against a straightforward re-implementation of spec §6.3
# ---------------------------------------------------------------------------


def _ref_normalize(s: str) -> str:
    import re

    s = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", s)
    s = re.sub(r"[_./:\-]+", " ", s)
    return s.lower().strip()


def _ref_tokens(s: str) -> list[str]:
    import re

    return [t for t in re.split(r"[^a-z0-9]+", _ref_normalize(s)) if t]


def _ref_score(item: tuple[str, str, str, str], query: str) -> int | None:
    q, qt = _ref_normalize(query), _ref_tokens(query)
    if not q or not qt:
        return None
    score, matched, exact = 0, set(), False
    for value, w in zip(item, (12, 8, 10, 5), strict=True):
        raw, toks = _ref_normalize(value), _ref_tokens(value)
        if not raw:
            continue
        if raw == q:
            score += 14 * w
        elif raw.startswith(q):
            score += 9 * w
        elif q in raw:
            score += 6 * w
        exact = exact or q in raw
        for t in qt:
            if t in toks:
                score += 4 * w
                matched.add(t)
            elif any(c.startswith(t) or t.startswith(c) for c in toks):
                score += 2 * w
                matched.add(t)
            elif t in raw:
                score += w
                matched.add(t)
    if not matched:
        return None
    coverage = len(matched) / len(qt)
    if coverage < (1.0 if len(qt) <= 2 else 0.6) and not exact:
        return None
    score += 25 if coverage == 1 else math.floor(coverage * 10 + 0.5)
    path, _, method, _ = item
    if qt[0] in (_ref_tokens(path)[:1] + _ref_tokens(method)[:1]):
        score += 8
    if _ref_normalize(path) == q or _ref_normalize(method) == q:
        score += 20
    return score


def _catalog() -> tuple[list[ConnectorDescription], list[Snippet]]:
    gh = ConnectorDescription(
        "github",
        "Work with GitHub repositories.",
        {
            "create_issue": spec("Create a repository issue"),
            "list_issues": spec("List issues for a repository."),
            "get_issue": spec("Get an issue"),
            "list_pull_requests": spec("List pull requests for a repository."),
            "merge_pull_request": spec("Merge a pull request", approval=True),
            "listForRepo": spec("Lists repository workflows"),
            "repos_get_content": spec("Get repository content: a file or a directory"),
            "delete_repo": spec(""),
        },
    )
    stripe = ConnectorDescription(
        "stripe",
        None,
        {
            "PostCustomers": spec("Creates a new customer object."),
            "GetCustomersCustomer": spec("Retrieves a Customer object."),
            "DeleteCustomersCustomer": spec("Permanently deletes a customer."),
            "GetCharges": spec("Returns a list of charges you've previously created."),
        },
    )
    snippets = [TRIAGE, snippet("weekly-report", "Summarize the week's merged pull requests"), snippet("x", "")]
    return [gh, stripe], snippets


def test_baseline_equals_reference_on_random_queries() -> None:
    connectors, snippets = _catalog()
    items: list[tuple[tuple[str, str, str, str], str]] = []
    for c in connectors:
        for m, s in c.tools.items():
            items.append(((f"{c.name}.{m}", c.name, m, s.description), f"{c.name}.{m}"))
    for sn in snippets:
        items.append(((sn.name, "snippet", sn.name, sn.description), sn.name))
    words = [
        *sorted({t for item, _ in items for v in item for t in _ref_tokens(v)}),
        "a",
        "re",
        "zz",
        "iss",
        "Customer",
    ]
    rng = random.Random(1234)
    queries = ["create issue", "issues", "pull request", "github", "snippet", "github.list_issues", "list_issues"]
    for _ in range(400):
        picked = [rng.choice(words) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.3:
            picked = [w[: rng.randint(1, len(w))] for w in picked]
        queries.append(rng.choice([" ", "_", ".", "-"]).join(picked))
    for query in queries:
        expected: dict[str, int] = {}
        for item, path in items:
            got = _ref_score(item, query)
            if got is not None:
                expected[path] = got
        out = search(query, connectors, snippets, limit=1000, scoring="baseline")
        assert {r.path: r.score for r in out.results} == expected, query
        scores = [r.score for r in out.results]
        assert scores == sorted(scores, reverse=True), query


# ---------------------------------------------------------------------------
# The codemode scorer
# ---------------------------------------------------------------------------


def test_codemode_keeps_the_spec_examples_on_top() -> None:
    assert paths(search("create issue", [GITHUB], [TRIAGE]))[0] == "github.create_issue"
    assert paths(search("pull request", [GITHUB_PULLS], []))[0] == "github.list_pull_requests"
    assert paths(search("issues", [GITHUB], [TRIAGE]))[:2] == ["github.list_issues", "github.create_issue"]


def test_stem_folds_plurals_and_verb_forms() -> None:
    assert _stem("issues") == _stem("issue")
    assert _stem("repositories") == _stem("repository")
    assert _stem("created") == _stem("creates") == _stem("creating") == _stem("create")
    assert _stem("branches") == _stem("branch")
    assert _stem("starred") == _stem("star")
    assert _stem("settings") == _stem("setting")
    assert _stem("status") == "status"
    assert _stem("string") == "string"


def test_codemode_folds_plurals_and_verb_synonyms() -> None:
    connectors, _ = _catalog()
    assert paths(search("fetch an issue", connectors, []))[0] == "github.get_issue"
    assert paths(search("remove customer", connectors, []))[0] == "stripe.DeleteCustomersCustomer"
    assert paths(search("make a new customer", connectors, []))[0] == "stripe.PostCustomers"
    # The baseline finds none of them.
    assert search("remove customer", connectors, [], scoring="baseline").total == 0


def test_codemode_stop_words_do_not_dilute_coverage() -> None:
    connectors, _ = _catalog()
    query = "how do I get the issue for my repo"
    assert paths(search(query, connectors, []))[0] == "github.get_issue"


def test_codemode_indexes_parameter_names_and_docs() -> None:
    conn = ConnectorDescription(
        "tracker",
        None,
        {
            "list_tickets": spec("List tickets", params={"assignee": "Login of the person the ticket is assigned to"}),
            "list_projects": spec("List projects"),
        },
    )
    assert paths(search("tickets by assignee", [conn], []))[0] == "tracker.list_tickets"
    assert search("tickets by assignee", [conn], [], scoring="baseline").total == 0
    # A parameter alone never makes a hit: "assignee" names no tool.
    assert search("assignee", [conn], []).total == 0


def test_codemode_uses_connector_instructions_as_a_weak_signal() -> None:
    mail = ConnectorDescription("mail", "Send and read email through the company SMTP relay.", {"send": spec("Send")})
    chat = ConnectorDescription("chat", None, {"send": spec("Send")})
    assert paths(search("send email", [chat, mail], []))[0] == "mail.send"


def test_codemode_is_deterministic() -> None:
    connectors, snippets = _catalog()
    first = search("list repository things", connectors, snippets)
    for _ in range(3):
        assert search("list repository things", connectors, snippets) == first


def test_index_is_memoized_per_connector_identity() -> None:
    connectors, _ = _catalog()
    index = _connector_index(connectors)
    assert _connector_index(list(connectors)) is index
    rebuilt = [ConnectorDescription(c.name, c.instructions, dict(c.tools)) for c in connectors]
    assert _connector_index(rebuilt) is not index


def test_normalize_and_tokenize_equal_the_reference_on_random_text() -> None:
    rng = random.Random(7)
    alphabet = "aZ9_./:-  \t\nxYbQ0éİKΣß()"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert normalize(text) == _ref_normalize(text), repr(text)
        assert tokenize(text) == _ref_tokens(text), repr(text)


def _real_catalog() -> list[ConnectorDescription]:
    return [ConnectorDescription(name, None, openapi_tools(name)) for name in ("github", "stripe", "slack")]


@pytest.mark.parametrize("scoring", get_args(Scoring))
def test_the_best_few_equal_the_head_of_every_match(scoring: Scoring) -> None:
    """Only the entries that can reach the results are scored in full: the first `limit` of a search are
    the first `limit` of the same search scored in full, and `total` does not depend on `limit`."""
    connectors = _real_catalog()
    queries = [
        "open a new issue in a repo",
        "my unread notifications",
        "list customers",
        "repos",
        "github",
        "send a message to a channel",
        "refund a charge",
        "issues issues",
        "a",
        "get the latest release of a repository",
        "stripe.GetCharges",
        "GetCustomersCustomer",
    ]
    for query in queries:
        every = search(query, connectors, [TRIAGE], limit=100_000, scoring=scoring)
        scores = [r.score for r in every.results]
        assert scores == sorted(scores, reverse=True) and every.total == len(every.results), query
        for limit in (0, 1, 5, 50):
            head = search(query, connectors, [TRIAGE], limit=limit, scoring=scoring)
            assert head.results == every.results[:limit], (query, limit)
            assert head.total == every.total and head.truncated == (every.total > limit), (query, limit)


def test_search_sees_new_snippets_immediately() -> None:
    connectors, snippets = _catalog()
    assert search("deploy", connectors, snippets).total == 0
    added = [*snippets, snippet("deploy-preview", "Deploy a preview environment")]
    assert paths(search("deploy", connectors, added)) == ["deploy-preview"]


# ---------------------------------------------------------------------------
# describe
# ---------------------------------------------------------------------------


class FakeRenderer:
    """Stands in for the real per-language renderers."""

    language = "python"

    def connector(self, name: str, tools: Mapping[str, ToolSpec]) -> str:
        return f"class {name}:\n" + "\n".join(f"    async def {t}(): ..." for t in tools)

    def method(self, connector: str, method: str, spec: ToolSpec) -> str:
        return f"async def {method}(): ...  # {connector}"

    def named_type(self, connector: str, method: str, spec: ToolSpec, path: Sequence[str]) -> str | None:
        if path[0] != "Item":
            return None
        return f"class {'.'.join(path)}: ...  # {connector}.{method}"


R = FakeRenderer()


def test_describe_snippet_first_by_exact_name() -> None:
    shadow = snippet("github", "A snippet named like a connector", "return await github.list_issues()")
    got = describe("github", [GITHUB], [shadow], R)
    assert got == Description(
        path="github",
        description="A snippet named like a connector",
        requires_approval=False,
        types="A snippet named like a connector\n\n```python\nreturn await github.list_issues()\n```",
        kind="snippet",
    )


def test_describe_connector() -> None:
    conn = ConnectorDescription("github", "Use owner/repo names.", GITHUB.tools)
    got = describe("github", [conn], [], R)
    assert got.kind == "connector" and got.path == "github"
    assert got.description == "Use owner/repo names."
    assert got.types == (
        "Use owner/repo names.\n\n```python\nclass github:\n"
        "    async def create_issue(): ...\n    async def list_issues(): ...\n```"
    )
    bare = describe("github", [GITHUB], [], R)
    assert bare.description is None and bare.types.startswith("```python\nclass github:")
    assert describe("github.", [GITHUB], [], R).kind == "connector"


def test_describe_method_by_path_and_by_bare_name() -> None:
    got = describe("github.create_issue", [GITHUB], [], R)
    assert got == Description(
        path="github.create_issue",
        description="Create a repository issue",
        requires_approval=True,
        types="```python\nasync def create_issue(): ...  # github\n```",
        kind="method",
    )
    assert describe("create_issue", [GITHUB_PULLS, GITHUB], [], R).path == "github.create_issue"
    # Like JS split(".", 2): only the first two pieces count.
    assert describe("github.list_issues.extra", [GITHUB], [], R).path == "github.list_issues"
    # An unknown first piece searches every connector for the method.
    assert describe("gh.list_issues", [GITHUB], [], R).path == "github.list_issues"


def test_describe_uses_the_renderer_language_as_fence() -> None:
    class TS(FakeRenderer):
        language = "typescript"

    assert describe("github.list_issues", [GITHUB], [], TS()).types.startswith("```typescript\n")
    assert describe("triage", [], [TRIAGE], TS()).types.endswith("```typescript\nreturn 1\n```")


def test_describe_not_found_suggests_close_paths() -> None:
    got = describe("github.create_isue", [GITHUB], [TRIAGE], R)
    assert got.kind == "method" and got.path == "github.create_isue" and got.description is None
    assert got.types.startswith('"github.create_isue" not found.')
    assert "github.create_issue" in got.types
    assert got.types.endswith('Use codemode.search("...") to find the right name.')
    nothing = describe("zzz", [GITHUB], [], R)
    assert nothing.types == '"zzz" not found. Use codemode.search("...") to find the right name.'
    assert json.loads(json.dumps(nothing.to_dict())) == nothing.to_dict()


def test_describe_suggestions_are_at_most_three() -> None:
    conn = ConnectorDescription("c", None, {f"list_issue_{i}": spec("List issues") for i in range(10)})
    got = describe("c.issues", [conn], [], R)
    listed = got.types.split("Closest names: ")[1].split(". Use")[0].split(", ")
    assert len(listed) == 3


def _all_paths(connectors: Sequence[ConnectorDescription]) -> list[str]:
    return [f"{c.name}.{m}" for c in connectors for m in c.tools]


def test_every_method_is_describable_by_its_path() -> None:
    connectors, _ = _catalog()
    for path in _all_paths(connectors):
        assert describe(path, connectors, [], R).path == path


def test_describe_a_type_named_in_a_method() -> None:
    got = describe("github.create_issue.Item", [GITHUB], [], R)
    assert got == Description(
        path="github.create_issue.Item",
        description=None,
        requires_approval=False,
        types="```python\nclass Item: ...  # github.create_issue\n```",
        kind="type",
    )
    assert describe("github.create_issue.Item.Label", [GITHUB], [], R).types == (
        "```python\nclass Item.Label: ...  # github.create_issue\n```"
    )
    missing = describe("github.create_issue.Nope", [GITHUB], [], R)
    assert missing.kind == "method" and missing.path == "github.create_issue" and missing.requires_approval
    assert missing.types == (
        'No type "Nope" is named in the declarations of github.create_issue; here they are.\n\n'
        "```python\nasync def create_issue(): ...  # github\n```"
    )
    assert describe("github.nope.Item", [GITHUB], [], R).types.startswith('"github.nope.Item" not found.')


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_describe_stays_within_the_budget_on_real_catalogs(language: str) -> None:
    renderer: DeclarationRenderer = PythonDeclarations() if language == "python" else TypeScriptDeclarations()
    connectors = [ConnectorDescription(name, None, openapi_tools(name)) for name in ("github", "stripe")]
    big = describe("github", connectors, [], renderer)
    assert big.kind == "connector" and len(big.types) <= DESCRIBE_BUDGET + 20  # the fence around it
    assert 'codemode.describe("github.<method>")' in big.types and "1223 methods" in big.types
    method = describe("stripe.GetCustomersCustomer", connectors, [], renderer)
    assert method.kind == "method" and len(method.types) <= DESCRIBE_BUDGET + 20
    omitted = method.types.split("codemode.describe(")[1]
    assert omitted.startswith('"stripe.GetCustomersCustomer.<TypeName>")')
    name = "Discount"  # a type the method uses but leaves out
    opaque = f"{name} = dict[str, Any]" if language == "python" else f"type {name} = Record<string, unknown>"
    assert opaque in method.types
    typed = describe(f"stripe.GetCustomersCustomer.{name}", connectors, [], renderer)
    assert typed.kind == "type" and typed.path == f"stripe.GetCustomersCustomer.{name}"
    assert (f"class {name}(TypedDict):" if language == "python" else f"type {name} = {{") in typed.types


def test_query_words_side_by_side_in_a_description_rank_first() -> None:
    def tool(description: str) -> ToolSpec:
        return ToolSpec(execute=lambda args, ctx: None, description=description)

    charges = ConnectorDescription(
        "charges",
        None,
        {
            "modify": tool("Changes a charge that was created previously; the details given replace the old ones."),
            "view": tool("Retrieves the details of a charge that has previously been created."),
        },
    )
    out = search("details charge previously created", [charges], [])
    assert [r.path for r in out.results] == ["charges.view", "charges.modify"]
