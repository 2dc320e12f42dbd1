"""Compose the Parcelo demo dialogs (assistant/demo_data/dialogs/{train,valid,test}.jsonl) from hand-written scripts.

Parcelo is a fictional online consumer-electronics shop invented for this project; every text comes from
``demo_scripts.py`` (written for the project) or from ``assistant/demo_data/faq/faq.jsonl``, never from a public data
set. Each dialog follows one scenario (track an order, cancel it, return an item, reset a password, hand
over to a human, ...): the customer's lines are drawn from many hand-written phrasings and the agent's
lines are fixed macros per situation, as a real support team uses, filled with a fictional order
number, product, e-mail address and weekday. Where the agent answers a policy question, its reply is the
``answer`` of the FAQ entry (read at run time), so dialogs and FAQ state the same policies. Around the
scenario come an optional greeting, an optional request for a human, and a closing; 15% of customer
turns are typed casually (lower case, no final punctuation).

What it does not do: it does not write the FAQ or the query set (hand-written JSONL files), and it does
re-check the dialogs it writes (``tests/test_demo_data.py`` does). It reads the FAQ and writes JSONL with
``assistant.data``, so run it in the project's environment (``make install``).

Deterministic: the same FAQ file, seed and counts give byte-identical output. Rerun with::

    python data/build_demo_dialogs.py                   # rewrites assistant/demo_data/dialogs/*.jsonl
    python data/build_demo_dialogs.py --out-dir /tmp/x  # writes elsewhere (used by the tests)
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from pathlib import Path

import demo_scripts as T  # this folder is on sys.path when run as a script

from assistant.data import FaqEntry, read_faq, write_jsonl
from assistant.errors import DataError

HERE = Path(__file__).resolve().parent
#: the demo data is package data of ``assistant.demo_data``; these are its files in this checkout
DEMO_DATA = HERE.parent / "assistant" / "demo_data"
DEFAULT_FAQ = DEMO_DATA / "faq" / "faq.jsonl"
DEFAULT_OUT = DEMO_DATA / "dialogs"
DEFAULT_SEED = 20261121
SPLITS = ("train", "valid", "test")
DEFAULT_COUNTS = (320, 40, 40)
MAX_TURNS = 8
SOURCE = "parcelo-demo"
#: share of customer turns typed casually (lower case, no final punctuation), as people do in chat
CASUAL_RATE = 0.15
#: FAQ entries whose answers the scenarios below quote (faq_question uses every entry)
FAQ_IDS_USED = ("ship-004", "return-002", "return-003", "return-008", "acct-001", "acct-002", "pay-001",
                "pay-003", "pay-004", "warr-004")  # fmt: skip

Turns = list[tuple[str, str]]  # (role, text), oldest first
Result = tuple[Turns, str, list[str], list[str]]  # (turns, domain, tasks, faq_ids)


class Ctx:
    """The fictional facts one dialog is about (customer, order, product, days), drawn from ``rng``."""

    def __init__(self, rng: random.Random) -> None:
        self.first = rng.choice(T.FIRST_NAMES)
        self.last = rng.choice(T.LAST_NAMES)
        self.email = f"{self.first.lower()}.{self.last.lower()}@example.com"
        self.order = f"PC-{rng.randint(100000, 199999)}"
        self.product, self.short, self.price = rng.choice(T.PRODUCTS)
        plural = self.short in T.PLURAL  # grammar fill-ins: "my earbuds are", "my tablet is"
        self.is_, self.is_cap, self.isnt, self.was = (
            ("are", "Are", "aren't", "were") if plural else ("is", "Is", "isn't", "was")
        )
        self.keeps, self.it, self.its, self.this = (
            ("keep", "them", "they're", "these") if plural else ("keeps", "it", "it's", "this")
        )
        self.a = "a pair of" if plural else ("an" if self.short[0] in "aeiou" else "a")
        self.carrier = rng.choice(T.CARRIERS)
        d1, d2 = sorted(rng.sample(range(len(T.DAYS)), 2))
        self.day1, self.day2 = T.DAYS[d1], T.DAYS[d2]  # day1 comes before day2 in the week
        self.ref = rng.randint(10000, 99999)
        self.address = f"{rng.randint(2, 480)} {rng.choice(T.STREETS)}, {rng.choice(T.CITIES)}"
        self.minutes = rng.randint(5, 50)  # order age: still inside the 60-minute cancellation window
        self.months = rng.randint(3, 22)  # product age: inside the 2-year warranty
        self.recent_days = rng.randint(2, 13)  # days since delivery: inside Price Protection's 14 days
        self.old_days = rng.randint(16, 40)  # ... outside it
        self.diff = rng.choice(T.PRICE_DROPS)

    def fill(self, template: str) -> str:
        """Substitute ``{order}``, ``{product}``, ... in a template."""
        return template.format(**vars(self))


class FaqBook:
    """The FAQ entries the agent answers from.

    ``book[id]`` is an entry's answer; ``next_entry()`` cycles through all entries in a seeded shuffled
    order, so every entry is asked about before any is asked twice.
    """

    def __init__(self, entries: list[FaqEntry], rng: random.Random) -> None:
        self.entries = entries
        self.answers = {e.id: e.answer for e in entries}
        self._rng = rng
        self._queue: list[FaqEntry] = []

    def __getitem__(self, faq_id: str) -> str:
        return self.answers[faq_id]

    def next_entry(self) -> FaqEntry:
        if not self._queue:
            self._queue = list(self.entries)
            self._rng.shuffle(self._queue)
        return self._queue.pop()


def c(text: str) -> tuple[str, str]:
    return ("customer", text)


def a(text: str) -> tuple[str, str]:
    return ("agent", text)


def handoff(rng: random.Random, x: Ctx) -> Turns:
    """The agent's hand-over macro after a request for a human, and the customer's reason."""
    return [a(T.AGENT_HANDOFF), c(x.fill(rng.choice(T.HANDOFF_REASONS))), a(T.AGENT_HANDOFF_DONE)]


# --------------------------------------------------------------------------- scenarios
# Each scenario: (rng, ctx, faq) -> (turns, domain, tasks, faq_ids), the core exchange only;
# build_dialog() adds the greeting, hand-over request and closing around it.


def track_order(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["track_order"]
    opener = rng.choice(s["open"])
    status = rng.choice(["shipped", "shipped", "packed", "late"])
    turns = [
        c(x.fill(opener)),
        a(T.ASK_ORDER),
        c(x.fill(rng.choice(T.GIVE_ORDER))),
        a(x.fill(s[f"agent_{status}"])),
    ]
    if status == "late" and rng.random() < 0.3:
        turns += [c(rng.choice(s["angry"])), *handoff(rng, x)]
        return turns, "shipping", ["track_order", "handoff"], []
    if status == "late" and rng.random() < 0.6:
        turns += [c(rng.choice(s["worried"])), a(faq["ship-004"])]
    return turns, "shipping", ["track_order"], (["ship-004"] if len(turns) > 4 else [])


def cancel_order(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["cancel_order"]
    turns = [c(x.fill(rng.choice(s["open"]))), a(T.ASK_ORDER), c(x.fill(rng.choice(T.GIVE_ORDER)))]
    if rng.random() < 0.55:
        turns.append(a(x.fill(s["agent_done"])))
        return turns, "orders", ["cancel_order"], ["order-001"]
    turns.append(a(x.fill(s["agent_too_late"])))
    if rng.random() < 0.6:
        turns += [c(rng.choice(s["how_return"])), a(faq["return-002"])]
        return turns, "orders", ["cancel_order", "return_item"], ["order-001", "return-002"]
    return turns, "orders", ["cancel_order"], ["order-001"]


def change_address(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["change_address"]
    turns = [c(x.fill(rng.choice(s["open"]))), a(T.ASK_ORDER), c(x.fill(rng.choice(T.GIVE_ORDER)))]
    if rng.random() < 0.6:
        turns += [
            a(x.fill(s["agent_ask_address"])),
            c(x.fill(rng.choice(s["give_address"]))),
            a(x.fill(s["agent_changed"])),
        ]
    else:
        turns.append(a(x.fill(s["agent_locked"])))
    return turns, "orders", ["change_address"], ["order-002"]


def return_item(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["return_item"]
    turns = [c(x.fill(rng.choice(s["open"]))), a(faq["return-002"])]
    ids = ["return-002"]
    r = rng.random()
    if r < 0.45:
        turns += [c(rng.choice(s["refund_when"])), a(faq["return-003"])]
        ids.append("return-003")
    elif r < 0.75:
        turns += [c(rng.choice(s["label_cost"])), a(faq["return-008"])]
        ids.append("return-008")
    return turns, "returns", ["return_item"], ids


def refund_status(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["refund_status"]
    turns = [c(x.fill(rng.choice(s["open"]))), a(s["agent_ask"]), c(x.fill(rng.choice(T.GIVE_ORDER)))]
    turns.append(a(x.fill(s["agent_refunded"] if rng.random() < 0.6 else s["agent_in_transit"])))
    return turns, "returns", ["refund_status"], ["return-003"]


def damaged_item(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["damaged_item"]
    turns = [
        c(x.fill(rng.choice(s["open"]))),
        a(s["agent_ask"]),
        c(x.fill(rng.choice(s["give"]))),
        a(x.fill(s["agent_replace"])),
    ]
    tasks = ["damaged_item"]
    if rng.random() < 0.35:
        turns += [c(rng.choice(s["want_refund"])), a(x.fill(s["agent_refund"]))]
        tasks.append("refund_instead")
    return turns, "returns", tasks, ["return-004"]


def wrong_item(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["wrong_item"]
    opener = x.fill(rng.choice(s["open"]))
    turns = [c(opener), a(T.ASK_ORDER_SORRY), c(x.fill(rng.choice(T.GIVE_ORDER))), a(x.fill(s["agent_fix"]))]
    return turns, "returns", ["wrong_item"], ["return-005"]


def password_reset(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["password_reset"]
    turns = [c(rng.choice(s["open"])), a(faq["acct-001"])]
    if rng.random() < 0.55:
        turns += [
            c(rng.choice(s["no_email"])),
            a(s["agent_ask_email"]),
            c(x.fill(rng.choice(T.GIVE_EMAIL))),
            a(x.fill(s["agent_resent"])),
        ]
    return turns, "account", ["password_reset"], ["acct-001"]


def invoice_request(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["invoice_request"]
    if rng.random() < 0.4:
        return (
            [c(rng.choice(s["open_general"])), a(faq["pay-003"])],
            "payments",
            ["invoice_request"],
            ["pay-003"],
        )
    turns = [c(x.fill(rng.choice(s["open_order"]))), a(x.fill(s["agent_sent"]))]
    if rng.random() < 0.5:
        turns += [c(rng.choice(s["company"])), a(s["agent_company"])]
    return turns, "payments", ["invoice_request"], ["pay-003"]


def warranty_claim(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["warranty_claim"]
    turns = [
        c(x.fill(rng.choice(s["open"]))),
        a(x.fill(s["agent_covered"])),
        c(x.fill(rng.choice(T.GIVE_ORDER))),
        a(x.fill(s["agent_opened"])),
    ]
    if rng.random() < 0.4:
        turns += [c(rng.choice(s["unfixable"])), a(s["agent_unfixable"])]
    return turns, "warranty", ["warranty_claim"], ["warr-002"]


def accidental_damage(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["accidental_damage"]
    turns = [c(x.fill(rng.choice(s["open"]))), a(s["agent_quote"])]
    if rng.random() < 0.5:
        turns += [c(rng.choice(s["cover"])), a(faq["warr-004"])]
        return turns, "warranty", ["repair_quote", "care_plus"], ["warr-005", "warr-004"]
    return turns, "warranty", ["repair_quote"], ["warr-005"]


def charged_twice(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["charged_twice"]
    opener = x.fill(rng.choice(s["open"]))
    turns = [c(opener), a(T.ASK_ORDER_SORRY), c(x.fill(rng.choice(T.GIVE_ORDER))), a(x.fill(s["agent_hold"]))]
    return turns, "payments", ["charged_twice"], ["pay-005"]


def payment_declined(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["payment_declined"]
    turns = [c(rng.choice(s["open"])), a(faq["pay-004"])]
    if rng.random() < 0.6:
        turns += [c(rng.choice(s["other_way"])), a(faq["pay-001"])]
        return turns, "payments", ["payment_declined"], ["pay-004", "pay-001"]
    return turns, "payments", ["payment_declined"], ["pay-004"]


def not_received(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["not_received"]
    turns = [c(x.fill(rng.choice(s["open"]))), a(T.ASK_ORDER_SORRY), c(x.fill(rng.choice(T.GIVE_ORDER)))]
    turns.append(a(x.fill(s["agent_wait"] if rng.random() < 0.5 else s["agent_investigate"])))
    return turns, "shipping", ["not_received"], ["ship-005"]


def price_protection(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["price_protection"]
    turns = [c(x.fill(rng.choice(s["open"]))), a(T.ASK_ORDER), c(x.fill(rng.choice(T.GIVE_ORDER)))]
    turns.append(a(x.fill(s["agent_refunded"] if rng.random() < 0.65 else s["agent_too_late"])))
    return turns, "payments", ["price_protection"], ["pay-007"]


def gift_card_resend(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["gift_card_resend"]
    opener = rng.choice(s["open"])
    turns = [c(opener), a(s["agent_ask"]), c(x.fill(rng.choice(T.GIVE_ORDER))), a(x.fill(s["agent_resent"]))]
    return turns, "gift cards", ["gift_card_resend"], ["gift-003"]


def missing_item(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["missing_item"]
    turns = [c(x.fill(rng.choice(s["open"]))), a(T.ASK_ORDER_SORRY), c(x.fill(rng.choice(T.GIVE_ORDER)))]
    turns.append(a(x.fill(s["agent_second_parcel"] if rng.random() < 0.5 else s["agent_resend"])))
    return turns, "shipping", ["missing_item"], ["ship-008"]


def account_locked(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["account_locked"]
    turns = [c(rng.choice(s["open"])), a(faq["acct-002"])]
    if rng.random() < 0.5:
        turns += [c(rng.choice(s["now"])), a(s["agent_now"])]
    return turns, "account", ["account_locked"], ["acct-002"]


def order_confirmation(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    s = T.SCRIPTS["order_confirmation"]
    turns = [
        c(rng.choice(s["open"])),
        a(s["agent_ask_email"]),
        c(x.fill(rng.choice(s["give_email"]))),
        a(x.fill(s["agent_found"])),
    ]
    return turns, "orders", ["order_confirmation"], ["order-003"]


def human_handoff(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    return [c(rng.choice(T.HUMAN_REQUESTS)), *handoff(rng, x)], "contact", ["handoff"], []


def out_of_scope(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    return [c(rng.choice(T.OUT_OF_SCOPE)), a(T.AGENT_OUT_OF_SCOPE)], "contact", ["out_of_scope"], []


def faq_question(rng: random.Random, x: Ctx, faq: FaqBook) -> Result:
    """A policy question answered with the FAQ answer, asked as its question or one of its examples."""
    entry = faq.next_entry()
    ask = rng.choice([entry.question, *entry.examples])
    if rng.random() < 0.25:
        ask = rng.choice(T.FAQ_PREFIXES) + ask
    return [c(ask), a(entry.answer)], entry.meta["category"], ["faq_question"], [entry.id]


Scenario = Callable[[random.Random, Ctx, FaqBook], Result]
#: (scenario, relative weight); order matters for reproducibility
SCENARIOS: list[tuple[Scenario, int]] = [
    (track_order, 14), (cancel_order, 8), (change_address, 6), (return_item, 9), (refund_status, 7),
    (damaged_item, 7), (wrong_item, 4), (password_reset, 7), (invoice_request, 6), (warranty_claim, 6),
    (accidental_damage, 4), (charged_twice, 4), (payment_declined, 4), (not_received, 5),
    (price_protection, 3), (gift_card_resend, 3), (missing_item, 3), (account_locked, 3),
    (order_confirmation, 3), (human_handoff, 5), (out_of_scope, 2), (faq_question, 30),
]  # fmt: skip


def casual(text: str) -> str:
    """``"Where is my order?"`` -> ``"where is my order"``; turns with an order number stay as typed."""
    if "PC-" in text:
        return text
    return text.lower().rstrip("?!.")


def build_dialog(rng: random.Random, faq: FaqBook) -> dict:
    """One dialog (without id): optional greeting, a scenario, optional hand-over, closing; <= MAX_TURNS."""
    x = Ctx(rng)
    scenario = rng.choices([s for s, _ in SCENARIOS], weights=[w for _, w in SCENARIOS])[0]
    core, domain, tasks, faq_ids = scenario(rng, x, faq)
    turns: Turns = []
    if rng.random() < 0.3 and len(core) + 2 <= MAX_TURNS:
        turns += [c(rng.choice(T.GREETINGS)), a(T.AGENT_GREETING)]
    turns += core
    if scenario is faq_question and rng.random() < 0.12 and len(turns) + 4 <= MAX_TURNS:
        # the FAQ answer did not settle it: the customer asks for a person
        turns += [c(rng.choice(T.HUMAN_REQUESTS)), *handoff(rng, x)]
        tasks = [*tasks, "handoff"]
    elif scenario is not human_handoff:
        room = MAX_TURNS - len(turns)
        if room >= 4 and rng.random() < 0.45:
            turns += [
                c(rng.choice(T.THANKS)),
                a(T.AGENT_ANYTHING_ELSE),
                c(rng.choice(T.NOTHING_ELSE)),
                a(T.AGENT_GOODBYE),
            ]
        elif room >= 2 and rng.random() < 0.7:
            turns += [c(rng.choice(T.THANKS_BYE)), a(T.AGENT_THANKS_BYE)]
    turns = [(r, casual(t) if r == "customer" and rng.random() < CASUAL_RATE else t) for r, t in turns]
    meta: dict = {"source": SOURCE, "domains": [domain], "tasks": tasks}
    if faq_ids:
        meta["faq_ids"] = faq_ids
    return {"turns": [{"role": r, "text": t} for r, t in turns], "meta": meta}


def build_all(faq_entries: list[FaqEntry], seed: int, counts: tuple[int, ...]) -> dict[str, list[dict]]:
    """Generate ``sum(counts)`` distinct dialogs and split them by shuffled dialog id.

    A dialog identical (same turns) to an earlier one is drawn again, so no dialog appears twice in or
    across splits. Ids are ``parcelo-0001`` ... in generation order; each split is sorted by id.
    """
    rng = random.Random(seed)
    faq = FaqBook(faq_entries, random.Random(seed + 2))
    total = sum(counts)
    dialogs: list[dict] = []
    seen: set[tuple] = set()
    while len(dialogs) < total:
        d = build_dialog(rng, faq)
        key = tuple((t["role"], t["text"]) for t in d["turns"])
        if key in seen:
            continue
        seen.add(key)
        dialogs.append({"id": f"parcelo-{len(dialogs) + 1:04d}", **d})
    order = list(range(total))
    random.Random(seed + 1).shuffle(order)
    splits, start = {}, 0
    for name, n in zip(SPLITS, counts, strict=True):
        splits[name] = [dialogs[i] for i in sorted(order[start : start + n])]
        start += n
    return splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--faq", type=Path, default=DEFAULT_FAQ, help="FAQ JSONL whose answers the agent quotes"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT,
        help="folder for train/valid/test.jsonl (default: assistant/demo_data/dialogs)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--counts",
        type=int,
        nargs=3,
        default=list(DEFAULT_COUNTS),
        metavar=("TRAIN", "VALID", "TEST"),
        help="dialogs per split (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.counts):
        print(f"error: --counts must all be >= 1, got {args.counts}", file=sys.stderr)
        return 2
    if not args.faq.is_file():
        print(
            f"error: {args.faq}: no such FAQ file (expected assistant/demo_data/faq/faq.jsonl)",
            file=sys.stderr,
        )
        return 2
    try:
        faq_entries = read_faq(args.faq)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    missing = sorted(set(FAQ_IDS_USED) - {e.id for e in faq_entries})
    if missing:
        print(f"error: {args.faq} lacks FAQ ids the dialog scripts quote: {missing}", file=sys.stderr)
        return 2
    splits = build_all(faq_entries, args.seed, tuple(args.counts))
    for name, rows in splits.items():
        write_jsonl(args.out_dir / f"{name}.jsonl", rows)
        turns = sum(len(r["turns"]) for r in rows)
        print(f"{args.out_dir / f'{name}.jsonl'}: {len(rows)} dialogs, {turns} turns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
