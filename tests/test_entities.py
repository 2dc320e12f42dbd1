"""Entity catalogue and tracking: fuzzy names, pronoun follow-ups, switches, domains, bad entity fields."""

from __future__ import annotations

import pytest

from assistant.data import FaqEntry, Turn
from assistant.errors import ConfigError, DataError
from assistant.retrieval.entities import EntityCatalog, normalize_words, track_entities


def entry(id_: str, question: str, entity: str | None, domain: str | None = None, **meta) -> FaqEntry:
    m = dict(meta)
    if entity is not None:
        m["entity"] = entity
    if domain is not None:
        m["domain"] = domain
    return FaqEntry(id_, question, f"answer of {id_}", meta=m)


ENTRIES = [
    entry("hob-park", "Is there parking at Hobsons House?", "HOBSONS HOUSE", "hotel"),
    entry("ava-park", "Do you have parking?", "AVALON", "hotel"),
    entry("rosa-pets", "Are pets allowed?", "ROSA'S BED AND BREAKFAST", "hotel"),
    entry("cote-wifi", "Is there wifi?", "COTE", "restaurant"),
    entry("j-alc", "Do you serve alcohol?", "J RESTAURANT", "restaurant"),
    entry(
        "sock-alc",
        "Does The Missing Sock serve alcohol?",
        "THE MISSING SOCK",
        "restaurant",
        entity_aliases=["the sock"],
    ),
    entry("hotel-cancel", "Can I cancel for free?", "*", "hotel"),
    entry("general", "How do I contact you?", None),
]


@pytest.fixture(scope="module")
def catalog() -> EntityCatalog:
    return EntityCatalog.from_entries(ENTRIES)


def customer(text: str) -> Turn:
    return Turn("customer", text)


def agent(text: str) -> Turn:
    return Turn("agent", text)


def test_catalog_collects_entities_aliases_and_domains(catalog: EntityCatalog) -> None:
    assert set(catalog.entities) == {
        "HOBSONS HOUSE",
        "AVALON",
        "ROSA'S BED AND BREAKFAST",
        "COTE",
        "J RESTAURANT",
        "THE MISSING SOCK",
    }
    assert catalog.entities["ROSA'S BED AND BREAKFAST"].aliases == ("rosas bed and breakfast", "rosas")
    assert "missing sock" in catalog.entities["THE MISSING SOCK"].aliases
    assert "the sock" in catalog.entities["THE MISSING SOCK"].aliases  # given in meta.entity_aliases
    # stripping the type word would leave one letter: no alias "j"
    assert catalog.entities["J RESTAURANT"].aliases == ("j restaurant",)
    assert catalog.domain_words == {"hotel": ("hotel", "hotels"), "restaurant": ("restaurant", "restaurants")}
    assert catalog.name_of("the missing sock") == "THE MISSING SOCK" and catalog.name_of("nowhere") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the avalon please", ["AVALON"]),
        ("THE AVALON", ["AVALON"]),
        ("The avolon would suit you", ["AVALON"]),  # one typo in six letters
        ("Is Rosa's B and B nice?", ["ROSA'S BED AND BREAKFAST"]),
        ("hobsonshouse or the missing sock", ["HOBSONS HOUSE", "THE MISSING SOCK"]),
        ("I need a restaurant", []),  # not J RESTAURANT: the only distinctive letter is missing
        ("please note the time", []),  # "note" is one edit from COTE, which is too short for typos
        ("Cote in the centre", ["COTE"]),
    ],
)
def test_mentions_are_fuzzy_case_insensitive_and_not_loose(catalog, text, expected) -> None:
    assert [m[0] for m in catalog.find_mentions(text)] == expected


def test_mask_cuts_names_out(catalog: EntityCatalog) -> None:
    assert catalog.mask("Does The Missing Sock serve alcohol?") == "Does serve alcohol?"
    assert catalog.mask("Do they serve alcohol?") == "Do they serve alcohol?"
    assert normalize_words("Rosa's B&B, Café") == ["rosas", "b", "and", "b", "cafe"]


def test_tracking_mention_pronoun_follow_up_switch_and_back(catalog: EntityCatalog) -> None:
    turns = [customer("I booked the Hobsons House for Friday.")]
    assert track_entities(catalog, turns).active == "HOBSONS HOUSE"
    turns += [agent("Great, anything else?"), customer("Do they have free parking?")]
    state = track_entities(catalog, turns)
    assert state.active == "HOBSONS HOUSE" and state.domain == "hotel"
    assert state.weights == {"HOBSONS HOUSE": 1.0}
    turns += [agent("Yes."), customer("And what about the avalon?")]
    state = track_entities(catalog, turns)
    assert state.active == "AVALON"
    assert state.weights == {"AVALON": 1.0, "HOBSONS HOUSE": 0.5**4}
    turns += [agent("It has parking too."), customer("Are pets allowed there?")]
    assert track_entities(catalog, turns).active == "AVALON"
    turns += [agent("No."), customer("Back to Hobsons house: pets?")]
    assert track_entities(catalog, turns).active == "HOBSONS HOUSE"


def test_an_agent_recommendation_becomes_active(catalog: EntityCatalog) -> None:
    turns = [
        customer("A cheap place to eat?"),
        agent("Try The Missing Sock."),
        customer("Do they serve alcohol?"),
    ]
    assert track_entities(catalog, turns).active == "THE MISSING SOCK"


def test_a_named_domain_picks_that_domains_last_entity(catalog: EntityCatalog) -> None:
    turns = [
        customer("Book the Missing Sock for 7pm."),
        agent("Done."),
        customer("I also need a room at the Avalon."),
        agent("Booked."),
        customer("Does the restaurant have wifi?"),
    ]
    state = track_entities(catalog, turns)
    assert state.active == "THE MISSING SOCK" and state.domain == "restaurant"
    turns[-1] = customer("Does the hotel have wifi?")
    assert track_entities(catalog, turns).active == "AVALON"


def test_no_entity_mentioned_gives_an_empty_state(catalog: EntityCatalog) -> None:
    state = track_entities(catalog, [customer("Do you have parking?"), agent("Where?"), customer("anywhere")])
    assert state.active is None and state.weights == {} and state.mentions == ()
    assert track_entities(catalog, [customer("Is the hotel quiet?")]).domain == "hotel"


def test_an_faq_without_entities_has_an_empty_catalogue() -> None:
    plain = [FaqEntry("pw", "How do I reset my password?", "Use the link.")]
    catalog = EntityCatalog.from_entries(plain)
    assert len(catalog) == 0 and catalog.find_mentions("reset my password") == []
    assert catalog.mask("reset my password") == "reset my password"
    assert track_entities(catalog, [customer("reset my password")]).active is None


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"entity": 7}, "FAQ entry 'x': meta.entity must be a non-empty string or absent, got 7"),
        ({"entity": "*"}, "FAQ entry 'x': meta.entity '\\*' \\(domain-wide\\) needs meta.domain"),
        ({"entity": "A", "entity_aliases": "a"}, "FAQ entry 'x': meta.entity_aliases must be a list"),
        ({"entity_aliases": ["a"]}, "FAQ entry 'x': meta.entity_aliases needs a named meta.entity"),
        ({"entity": "A", "domain": ""}, "FAQ entry 'x': meta.domain must be a non-empty string"),
    ],
)
def test_bad_entity_fields_name_the_entry_and_field(meta, message) -> None:
    with pytest.raises(DataError, match=message):
        EntityCatalog.from_entries([FaqEntry("x", "q?", "a", meta=meta)])


def test_one_entity_in_two_domains_is_refused() -> None:
    entries = [entry("a", "q?", "Avalon", "hotel"), entry("b", "q?", "AVALON", "restaurant")]
    with pytest.raises(
        DataError, match="entity 'AVALON' has meta.domain 'restaurant', but entry 'a' gives it 'hotel'"
    ):
        EntityCatalog.from_entries(entries)


def test_tracking_rejects_a_bad_decay(catalog: EntityCatalog) -> None:
    with pytest.raises(ConfigError, match="decay must be in \\(0, 1\\], got 0"):
        track_entities(catalog, [customer("hi")], decay=0)
