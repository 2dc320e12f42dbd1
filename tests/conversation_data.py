"""A hand-written entity-scoped FAQ (three hotels, a restaurant, a domain-wide entry) and labelled
dialogs about it, shared by the conversational retrieval tests."""

from __future__ import annotations

from assistant.data import FaqEntry, Turn
from assistant.retrieval.labels import KnowledgeTurn

HOTELS = {"HOBSONS HOUSE": "hob", "AVALON": "ava", "ACORN GUEST HOUSE": "aco"}
QUESTIONS = {
    "park": ("Is there parking at {name}?", ["is there parking for my car", "parking available"]),
    "wifi": ("Do you have wifi?", ["is the wifi free", "wifi for guests"]),
    "pets": ("Can I bring my dog?", ["is my dog allowed", "bring a dog"]),
}


def build_entries() -> list[FaqEntry]:
    entries = []
    for name, short in HOTELS.items():
        for key, (question, _) in QUESTIONS.items():
            entries.append(
                FaqEntry(
                    f"{short}-{key}",
                    question.format(name=name.title()),
                    f"{name.title()}: {key} answer.",
                    meta={"entity": name, "domain": "hotel"},
                )
            )
    entries.append(
        FaqEntry(
            "hotel-cancel",
            "Can I cancel my booking for free?",
            "Free cancellation until the day before.",
            meta={"entity": "*", "domain": "hotel"},
        )
    )
    entries.append(
        FaqEntry(
            "sock-alcohol",
            "Does The Missing Sock serve alcohol?",
            "Yes, beer and wine.",
            meta={"entity": "THE MISSING SOCK", "domain": "restaurant"},
        )
    )
    entries.append(
        FaqEntry(
            "sock-park",
            "Is there parking at The Missing Sock?",
            "Street parking only.",
            meta={"entity": "THE MISSING SOCK", "domain": "restaurant"},
        )
    )
    return entries


ENTRIES = build_entries()
TASK_TURNS = [
    "Book it for two nights please",
    "Thanks, that is all",
    "I need a place to stay in the north",
    "Yes, for 3 people on Friday",
    "Great, goodbye",
    "Can you book a table for 4 at 7pm",
]


def labelled_turns() -> list[KnowledgeTurn]:
    """Hand-written dialogs: FAQ questions about the entity the dialog named, and task turns."""
    turns = []
    n = 0
    for name, short in HOTELS.items():
        for key, (_, paraphrases) in QUESTIONS.items():
            for text in paraphrases:
                history = (
                    Turn("customer", f"I booked the {name.lower()}."),
                    Turn("agent", "Lovely, anything else?"),
                )
                turns.append(
                    KnowledgeTurn(
                        f"k{n}", history, text + "?", True, (f"{short}-{key}",), "ok", history[0].text
                    )
                )
                n += 1
        for text in TASK_TURNS:
            history = (Turn("customer", f"Tell me about {name.lower()}"), Turn("agent", "It is nice."))
            turns.append(KnowledgeTurn(f"t{n}", history, text, False, (), None, history[0].text))
            n += 1
    turns.append(
        KnowledgeTurn("r1", (), "Are the rooms quiet at the Avalon?", True, (), "Reviews say yes.", "r1")
    )
    return turns


def booked(name: str) -> list[Turn]:
    """A dialog opening that names a hotel."""
    return [Turn("customer", f"I booked the {name} for Friday."), Turn("agent", "Great, anything else?")]
