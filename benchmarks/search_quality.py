"""Search quality and latency: the spec-§6 baseline beside our `codemode` scorer.

Catalogs are built from the real OpenAPI documents in `shared/specs/` (GitHub
REST, 1,223 operations; Stripe, 452), one `ToolSpec` per operation. Query sets:

- `hand`: realistic intents written by a person, each with the operation(s)
  that answer it. The honest set: no query copies a summary.
- `generated`: derived deterministically from each sampled operation's longer
  `description` (first sentence, when it starts with a common verb): stop
  words dropped, the verb either dropped (`nouns`) or swapped for a
  plain-English alternative (`verb`). A hit
  on any operation with the same description text counts (the GitHub and
  Stripe catalogs repeat descriptions across families).

Each set runs against its own catalog and against the combined catalog
(github + stripe in one search). Prints recall@1, recall@5 and the mean search
latency for both scorers side by side.

Run: `.venv/bin/python benchmarks/search_quality.py` (add `--misses` to list
the queries each scorer gets wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import math
import re
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from codemode.connectors.openapi import HttpOpenApiConnector
from codemode.connectors.spec import ConnectorDescription
from codemode.discovery import Scoring, search

SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"
SPECS_FALLBACK = Path("/work/shared/specs")
REPEATS = 3


def _plain(text: str) -> str:
    """Strip HTML tags (Stripe descriptions are HTML) and collapse whitespace."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", text))).strip()


@dataclass(frozen=True)
class Operation:
    tool: str
    description: str  # what the ToolSpec has
    long_description: str  # the operation's `description`, for generated queries


def load_catalog(name: str, path: Path) -> tuple[ConnectorDescription, dict[str, Operation]]:
    """The catalog users get: `HttpOpenApiConnector` over the document, one tool per operation."""
    doc = json.loads(path.read_text())
    connector = HttpOpenApiConnector(name, doc)
    description = asyncio.run(connector.describe())
    ops: dict[str, Operation] = {}
    for tool, op in connector.operations.items():
        raw = doc["paths"][op.path][op.method.lower()]
        ops[op.operation_id or tool] = Operation(
            tool=tool,
            description=description.tools[tool].description,
            long_description=_plain(raw.get("description") or ""),
        )
    return description, ops


# ---------------------------------------------------------------------------
# Query sets
# ---------------------------------------------------------------------------

# (query, acceptable operationIds)
GITHUB_HAND: list[tuple[str, tuple[str, ...]]] = [
    ("open a new issue in a repo", ("issues/create",)),
    ("close an issue", ("issues/update",)),
    ("add a comment to an issue", ("issues/create-comment",)),
    ("get details of one pull request", ("pulls/get",)),
    ("merge a PR", ("pulls/merge",)),
    ("show open pull requests of a repository", ("pulls/list",)),
    ("ask someone to review my pull request", ("pulls/request-reviewers",)),
    ("star a repository", ("activity/star-repo-for-authenticated-user",)),
    ("fork a repo", ("repos/create-fork",)),
    ("make a new repository for me", ("repos/create-for-authenticated-user",)),
    ("delete a repository", ("repos/delete",)),
    ("branches of a repository", ("repos/list-branches",)),
    ("protect the main branch", ("repos/update-branch-protection",)),
    ("read a file from a repository", ("repos/get-content",)),
    ("commit a change to a file", ("repos/create-or-update-file-contents",)),
    ("commit history of a branch", ("repos/list-commits",)),
    ("diff between two commits", ("repos/compare-commits",)),
    ("publish a release", ("repos/create-release",)),
    ("most recent release", ("repos/get-latest-release",)),
    ("label an issue", ("issues/add-labels",)),
    ("assign an issue to someone", ("issues/add-assignees",)),
    ("trigger a workflow manually", ("actions/create-workflow-dispatch",)),
    ("rerun failed jobs", ("actions/re-run-workflow-failed-jobs", "actions/re-run-workflow")),
    ("download logs of a workflow run", ("actions/download-workflow-run-logs",)),
    ("store an actions secret in a repository", ("actions/create-or-update-repo-secret",)),
    ("who are the members of my organization", ("orgs/list-members",)),
    ("invite someone to an organization", ("orgs/create-invitation",)),
    ("give a user access to a repository", ("repos/add-collaborator",)),
    ("find repositories by keyword", ("search/repos",)),
    ("find code matching a query", ("search/code",)),
    ("profile of the logged in user", ("users/get-authenticated",)),
    ("look up a user by username", ("users/get-by-username",)),
    ("followers of a user", ("users/list-followers-for-user",)),
    ("create a gist", ("gists/create",)),
    ("add a webhook to a repository", ("repos/create-webhook",)),
    ("my unread notifications", ("activity/list-notifications-for-authenticated-user",)),
    ("mark all notifications as read", ("activity/mark-notifications-as-read",)),
    ("code scanning alerts of a repository", ("code-scanning/list-alerts-for-repo",)),
    ("dependabot alerts for a repository", ("dependabot/list-alerts-for-repo",)),
    ("create a git tag object", ("git/create-tag",)),
    ("create a new branch from a commit sha", ("git/create-ref",)),
    ("check my API rate limit", ("rate-limit/get",)),
    ("topics of a repository", ("repos/get-all-topics",)),
    ("lock the conversation on an issue", ("issues/lock",)),
    ("approve a pull request", ("pulls/create-review", "pulls/submit-review")),
    ("repositories a team can access", ("teams/list-repos-in-org",)),
    ("delete a branch", ("git/delete-ref",)),
    ("milestones of a repository", ("issues/list-milestones",)),
    ("programming languages used in a repository", ("repos/list-languages",)),
    ("comment on a line of a pull request diff", ("pulls/create-review-comment",)),
    ("issues in a repository", ("issues/list-for-repo",)),
    ("cancel a running workflow", ("actions/cancel-workflow-run",)),
    ("workflow runs of a repository", ("actions/list-workflow-runs-for-repo",)),
    ("remove a label from an issue", ("issues/remove-label",)),
    ("fetch one issue", ("issues/get",)),
    ("open a pull request", ("pulls/create",)),
    ("list tags", ("repos/list-tags",)),
    ("repositories of a user", ("repos/list-for-user",)),
    ("kick a member out of an organization", ("orgs/remove-member", "orgs/remove-membership-for-user")),
    ("create a team", ("teams/create",)),
]

STRIPE_HAND: list[tuple[str, tuple[str, ...]]] = [
    ("create a customer", ("PostCustomers",)),
    ("look up a customer by email", ("GetCustomersSearch", "GetCustomers")),
    ("delete a customer", ("DeleteCustomersCustomer",)),
    ("change a customer's address", ("PostCustomersCustomer",)),
    ("charge a credit card", ("PostCharges",)),
    ("refund a payment", ("PostRefunds", "PostChargesChargeRefund", "PostChargesChargeRefunds")),
    ("list recent charges", ("GetCharges",)),
    ("start a payment intent", ("PostPaymentIntents",)),
    ("confirm a payment intent", ("PostPaymentIntentsIntentConfirm",)),
    ("capture an authorized payment", ("PostPaymentIntentsIntentCapture", "PostChargesChargeCapture")),
    (
        "cancel a subscription",
        ("DeleteSubscriptionsSubscriptionExposedId", "DeleteCustomersCustomerSubscriptionsSubscriptionExposedId"),
    ),
    ("subscribe a customer to a plan", ("PostSubscriptions", "PostCustomersCustomerSubscriptions")),
    ("change the quantity of a subscription", ("PostSubscriptionsSubscriptionExposedId", "PostSubscriptionItemsItem")),
    ("create an invoice", ("PostInvoices",)),
    ("finalize a draft invoice", ("PostInvoicesInvoiceFinalize",)),
    ("email an invoice to the customer", ("PostInvoicesInvoiceSend",)),
    ("void an invoice", ("PostInvoicesInvoiceVoid",)),
    ("pay an invoice now", ("PostInvoicesInvoicePay",)),
    ("preview the next invoice", ("GetInvoicesUpcoming",)),
    ("add a product to the catalog", ("PostProducts",)),
    ("set a price for a product", ("PostPrices",)),
    ("make a discount coupon", ("PostCoupons",)),
    ("create a promotion code", ("PostPromotionCodes",)),
    ("how much money is in my balance", ("GetBalance",)),
    ("balance transaction history", ("GetBalanceTransactions", "GetBalanceHistory")),
    ("send money to my bank account", ("PostPayouts",)),
    ("move funds to a connected account", ("PostTransfers",)),
    ("create a connected account", ("PostAccounts",)),
    ("onboarding link for a connected account", ("PostAccountLinks",)),
    ("start a checkout session", ("PostCheckoutSessions",)),
    ("customer portal session", ("PostBillingPortalSessions",)),
    ("attach a payment method to a customer", ("PostPaymentMethodsPaymentMethodAttach",)),
    ("detach a card from a customer", ("PostPaymentMethodsPaymentMethodDetach",)),
    ("payment methods saved for a customer", ("GetCustomersCustomerPaymentMethods",)),
    ("save a card for later payments", ("PostSetupIntents",)),
    ("submit evidence for a dispute", ("PostDisputesDispute",)),
    ("close a dispute", ("PostDisputesDisputeClose",)),
    ("register a webhook endpoint", ("PostWebhookEndpoints",)),
    ("recent events", ("GetEvents",)),
    ("upload a file", ("PostFiles",)),
    ("create a tax rate", ("PostTaxRates",)),
    ("calculate tax for an order", ("PostTaxCalculations",)),
    ("create a payment link", ("PostPaymentLinks",)),
    ("issue a credit note", ("PostCreditNotes",)),
    ("add a VAT number to a customer", ("PostCustomersCustomerTaxIds",)),
    ("currency exchange rates", ("GetExchangeRates",)),
    ("create a test clock", ("PostTestHelpersTestClocks",)),
    ("issue a virtual card", ("PostIssuingCards",)),
    ("quote for a customer", ("PostQuotes",)),
    ("cancel a payout", ("PostPayoutsPayoutCancel",)),
    ("retrieve a charge", ("GetChargesCharge",)),
    ("all subscriptions", ("GetSubscriptions",)),
    ("get one invoice", ("GetInvoicesInvoice",)),
    ("remove a discount from a customer", ("DeleteCustomersCustomerDiscount",)),
    ("list products", ("GetProducts",)),
    ("refunds of a charge", ("GetChargesChargeRefunds",)),
    ("update a price", ("PostPricesPrice",)),
    ("cardholders for issuing", ("GetIssuingCardholders",)),
    ("expire a checkout session", ("PostCheckoutSessionsSessionExpire",)),
    ("resume a paused subscription", ("PostSubscriptionsSubscriptionResume",)),
]

# Leading verbs of descriptions -> what a person might write instead.
VERB_SWAPS = {
    "list": "show",
    "lists": "show",
    "get": "fetch",
    "gets": "fetch",
    "retrieve": "fetch",
    "retrieves": "fetch",
    "returns": "show",
    "create": "make",
    "creates": "make",
    "delete": "remove",
    "deletes": "remove",
    "update": "change",
    "updates": "change",
    "add": "put",
    "adds": "put",
    "remove": "delete",
    "removes": "delete",
}
STOP = frozenset(
    re.findall(
        r"\w+",
        "a an the of for to in on by with from and or your you that this is are be can use used using any all its it "
        "their them which will was were has have been as at given specified specific object objects",
    )
)


def generated_queries(ops: Mapping[str, Operation], every: int, swap: bool) -> list[tuple[str, tuple[str, ...]]]:
    """Deterministic paraphrases of the first sentence of each sampled operation's description."""
    by_text: dict[str, list[str]] = {}
    for op_id, op in ops.items():
        by_text.setdefault(op.description.lower(), []).append(op_id)
    out: list[tuple[str, tuple[str, ...]]] = []
    for i, (_, op) in enumerate(sorted(ops.items())):
        if i % every:
            continue
        sentence = re.split(r"(?<=[.!?])\s", op.long_description or op.description)[0]
        words = re.findall(r"[A-Za-z][A-Za-z0-9_'-]*", sentence)[:14]
        if not words:
            continue
        first, rest = words[0].lower(), words[1:]
        content = [w for w in rest if w.lower() not in STOP]
        if first not in VERB_SWAPS or len(content) < 2:
            continue  # notes and warnings ("Closing down - ...") are not something anyone searches for
        lead = [VERB_SWAPS[first]] if swap else []
        query = " ".join(lead + content[:6])
        out.append((query, tuple(by_text[op.description.lower()])))
    return out


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


@dataclass
class Score:
    r1: float
    r5: float
    latency_us: float
    misses: list[tuple[str, str]]


def evaluate(
    queries: Sequence[tuple[str, tuple[str, ...]]],
    connectors: Sequence[ConnectorDescription],
    ops_by_conn: Mapping[str, Mapping[str, Operation]],
    scoring: Scoring,
    expected_conn: str,
) -> Score:
    hits1 = hits5 = 0
    times: list[float] = []
    misses: list[tuple[str, str]] = []
    ops = ops_by_conn[expected_conn]
    for query, expected in queries:
        wanted = {f"{expected_conn}.{ops[e].tool}" for e in expected}
        out = search(query, connectors, [], limit=5, scoring=scoring)
        # Best of a few runs: the machine may be shared, and we want the search's cost, not the noise.
        best = math.inf
        for _ in range(REPEATS):
            start = time.perf_counter()
            search(query, connectors, [], limit=5, scoring=scoring)
            best = min(best, time.perf_counter() - start)
        times.append(best)
        paths = [r.path for r in out.results]
        if paths[:1] and paths[0] in wanted:
            hits1 += 1
        if wanted & set(paths[:5]):
            hits5 += 1
        else:
            misses.append((query, paths[0] if paths else "-"))
    n = max(len(queries), 1)
    return Score(hits1 / n, hits5 / n, statistics.fmean(times) * 1e6 if times else 0.0, misses)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--misses", action="store_true", help="print the queries missed at @5")
    parser.add_argument("--specs", type=Path, default=SPECS if SPECS.exists() else SPECS_FALLBACK)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    github, gh_ops = load_catalog("github", args.specs / "github.json")
    stripe, st_ops = load_catalog("stripe", args.specs / "stripe.json")
    load_s = time.perf_counter() - t0
    ops_by_conn = {"github": gh_ops, "stripe": st_ops}

    for name, hand, ops in (("github", GITHUB_HAND, gh_ops), ("stripe", STRIPE_HAND, st_ops)):
        for _, expected in hand:
            missing = [e for e in expected if e not in ops]
            if missing:
                raise SystemExit(f"{name} query set names unknown operations: {missing}")

    sets: list[tuple[str, str, list[tuple[str, tuple[str, ...]]]]] = [
        ("github", "hand", GITHUB_HAND),
        ("github", "generated/nouns", generated_queries(gh_ops, 5, swap=False)),
        ("github", "generated/verb", generated_queries(gh_ops, 5, swap=True)),
        ("stripe", "hand", STRIPE_HAND),
        ("stripe", "generated/nouns", generated_queries(st_ops, 2, swap=False)),
        ("stripe", "generated/verb", generated_queries(st_ops, 2, swap=True)),
    ]
    catalogs = {"github": [github], "stripe": [stripe], "combined": [github, stripe]}

    # Index build (cold, then memoized) for the combined catalog, per scorer it is shared.
    t0 = time.perf_counter()
    search("warm up", catalogs["combined"], [])
    cold_ms = (time.perf_counter() - t0) * 1e3
    for conns in catalogs.values():
        search("warm up", conns, [])

    header = (
        f"{'catalog':<9} {'query set':<22} {'n':>4} | {'baseline r@1':>12} {'r@5':>6} {'µs':>6} "
        f"| {'codemode r@1':>12} {'r@5':>6} {'µs':>6}"
    )
    print(f"catalogs: github {len(github.tools)} tools, stripe {len(stripe.tools)} tools (loaded in {load_s:.1f} s)")
    print(f"index build, combined catalog, first search: {cold_ms:.0f} ms (memoized afterwards)\n")
    print(header)
    print("-" * len(header))
    totals: dict[str, list[float]] = {"baseline": [0, 0, 0], "codemode": [0, 0, 0]}
    worse: list[str] = []
    all_misses: list[str] = []
    for scope in ("own", "combined"):
        for conn, label, queries in sets:
            connectors = catalogs[conn] if scope == "own" else catalogs["combined"]
            cat = conn if scope == "own" else "combined"
            row = {s: evaluate(queries, connectors, ops_by_conn, s, conn) for s in ("baseline", "codemode")}
            b, c = row["baseline"], row["codemode"]
            print(
                f"{cat:<9} {conn + ' ' + label:<22} {len(queries):>4} | {b.r1:>12.3f} {b.r5:>6.3f} "
                f"{b.latency_us:>6.0f} | {c.r1:>12.3f} {c.r5:>6.3f} {c.latency_us:>6.0f}"
            )
            for s in ("baseline", "codemode"):
                totals[s][0] += row[s].r1 * len(queries)
                totals[s][1] += row[s].r5 * len(queries)
                totals[s][2] += len(queries)
            if c.r1 < b.r1 or c.r5 < b.r5:
                worse.append(f"{cat} {conn} {label}")
            if args.misses:
                for s in ("baseline", "codemode"):
                    all_misses += [f"  [{s}] {cat}/{label}: {q!r} -> {top}" for q, top in row[s].misses]
    print("-" * len(header))
    b_tot, c_tot = totals["baseline"], totals["codemode"]
    print(
        f"{'all':<9} {'(query-weighted)':<22} {int(b_tot[2]):>4} | {b_tot[0] / b_tot[2]:>12.3f} "
        f"{b_tot[1] / b_tot[2]:>6.3f} {'':>6} | {c_tot[0] / c_tot[2]:>12.3f} {c_tot[1] / c_tot[2]:>6.3f}"
    )
    if all_misses:
        print("\nmissed at @5:")
        print("\n".join(all_misses))
    if worse:
        print(f"\ncodemode is worse than baseline on: {', '.join(worse)}")
        return 1
    print("\ncodemode is at least as good as baseline on every query set.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
