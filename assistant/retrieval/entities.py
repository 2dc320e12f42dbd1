"""Entities of an entity-scoped FAQ, and which of them a conversation is about.

An FAQ entry may be scoped to an **entity** (a product, plan, store, hotel …) and a **domain**:

* ``meta.entity``: the entity's name (any case), or ``"*"`` for an entry about every entity of its
  domain (a domain-wide entry); absent for an unscoped entry (how every FAQ without entities is);
* ``meta.domain``: the entity's kind (``"hotel"``, ``"restaurant"``); required with ``"*"``;
* ``meta.entity_aliases``: optional other names of the entity (``["the Avalon hotel"]``).

:class:`EntityCatalog` collects the entities of an FAQ with the names a customer may use for them:
the name itself, the name without a leading "the", and the name without the catalogue's generic
type words (``generic_words``, e.g. "ROSA'S BED AND BREAKFAST" → "rosas"), plus the aliases the FAQ
gives. A generated alias that two entities share is dropped (ambiguous); a given name never is.

Matching (:meth:`EntityCatalog.find_mentions`) is case- and accent-insensitive, ignores punctuation
and spacing ("guesthouse" = "guest house", "rosa's" = "rosas"), and tolerates typos: a name of 6
to 10 letters matches at Levenshtein distance 1, a longer one at distance 2, a shorter one only
exactly; only the letters of words that are not generic type words count ("ask restaurant" has
3, so it matches only exactly), and the first letter must be right ("the avolon" finds AVALON; "note" never finds COTE;
"restaurant" never finds J RESTAURANT). Distances come from ``rapidfuzz``
(Bachmann, RapidFuzz); overlapping matches keep the closest, then the longest.

:func:`track_entities` follows a conversation turn by turn: the **active** entity is the one
mentioned last (later turn, then later in the turn), so a follow-up with a pronoun ("do they have
parking?") keeps it; a new name switches it; a message naming a domain ("does the *hotel* have …")
picks the domain's most recently mentioned entity. Every mentioned entity also gets a recency weight
``decay ** (turns since its last mention)`` that retrieval uses to rank entries
(``assistant/retrieval/conversational.py``). This module does not search or rank anything.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from assistant.data import FaqEntry, Turn
from assistant.errors import ConfigError, DataError

#: ``meta.entity`` value of a domain-wide entry.
DOMAIN_WIDE = "*"

#: Type words stripped from either end of an entity name to make an alias (hospitality catalogues,
#: the DSTC9–11 hotel/restaurant FAQs). Multi-word items are matched as word sequences. Catalogues of
#: other kinds pass their own (``EntityCatalog.from_entries(..., generic_words=...)``).
DEFAULT_GENERIC_WORDS: tuple[str, ...] = (
    "the",
    "restaurant and bar",
    "restaurant bar",
    "restaurant",
    "hotel",
    "guest house",
    "guesthouse",
    "bed and breakfast",
    "b and b",
    "cafe",
    "bar",
    "bistro",
    "pizzeria",
)

#: A generated alias (not a given name) needs at least this many letters/digits, so that stripping
#: never leaves a common short word ("ASK RESTAURANT" → "ask" is not an alias).
MIN_GENERATED_ALIAS_CHARS = 4


_WORD = re.compile(r"[^\W_]+(?:['’`´][^\W_]+)*|&")


def words_with_spans(text: str) -> list[tuple[str, int, int]]:
    """Normalised words of ``text`` with their ``(start, end)`` character offsets in ``text``.

    A word is lowercased, without accents; apostrophes inside it join ("Rosa's" → "rosas"); ``&``
    is the word "and"; any other non-alphanumeric character separates words.
    """
    out = []
    for m in _WORD.finditer(text):
        token = m.group()
        if token == "&":
            out.append(("and", m.start(), m.end()))
            continue
        token = unicodedata.normalize("NFKD", token)
        token = "".join(c for c in token if not unicodedata.combining(c)).lower()
        for part in re.findall(r"[a-z0-9]+", re.sub(r"['’`´]", "", token)):
            out.append((part, m.start(), m.end()))
    return out


def normalize_words(text: str) -> list[str]:
    """The normalised words of ``text`` (see :func:`words_with_spans`)."""
    return [w for w, _, _ in words_with_spans(text)]


def max_edits(length: int) -> int:
    """Typos tolerated in a name of ``length`` letters/digits (spaces not counted)."""
    return 0 if length <= 5 else 1 if length <= 10 else 2


@dataclass(frozen=True)
class Entity:
    """One entity of the catalogue.

    Attributes:
        name: as the FAQ writes it (``meta.entity``).
        domain: its ``meta.domain``, or ``None``.
        aliases: the normalised word sequences that name it (``"the avalon"``, ``"avalon"``).
    """

    name: str
    domain: str | None
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Mention:
    """One entity named in one turn.

    Attributes:
        entity: the entity's name.
        turn: index of the turn in the conversation (0 = oldest).
        start: index of the first matched word in the turn's normalised words.
        alias: the alias matched; distance: its Levenshtein distance to the words (spaces ignored).
    """

    entity: str
    turn: int
    start: int
    alias: str
    distance: int


@dataclass(frozen=True)
class EntityState:
    """Which entities a conversation is about, after its last turn.

    Attributes:
        active: the entity the conversation is about now, or ``None`` (none mentioned yet).
        domain: the active entity's domain, or the domain the last message names; ``None`` if neither.
        weights: entity name → recency weight in (0, 1] (1 = mentioned in the last turn or active).
        mentions: every mention, oldest first.
    """

    active: str | None = None
    domain: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    mentions: tuple[Mention, ...] = ()


class EntityCatalog:
    """The entities of an FAQ with their aliases, and the fuzzy matcher over them.

    Build with :meth:`from_entries`. An FAQ without ``meta.entity`` gives an empty catalogue
    (``len(catalog) == 0``), which finds nothing and tracks nothing.
    """

    def __init__(
        self,
        entities: Iterable[Entity],
        domain_words: dict[str, tuple[str, ...]],
        generic_words: Sequence[str] = DEFAULT_GENERIC_WORDS,
    ) -> None:
        """Internal: use :meth:`from_entries`."""
        self.entities: dict[str, Entity] = {e.name: e for e in entities}
        self._by_key = {" ".join(normalize_words(name)): name for name in self.entities}
        generic = {w for g in generic_words for w in normalize_words(g)}
        self.domain_words = domain_words
        owners: list[str] = []
        forms: list[str] = []
        words: list[int] = []
        for e in self.entities.values():
            for alias in e.aliases:
                owners.append(e.name)
                forms.append(alias.replace(" ", ""))
                words.append(len(alias.split()))
        self._owners = owners
        self._forms = forms
        self._form_lengths = np.array([len(f) for f in forms], dtype=np.int64)
        # typos are allowed in proportion to the distinctive words only: "ask restaurant" is "ask" + a
        # type word, so "a restaurant" (two edits of 13 letters) must not find it
        distinctive = [
            sum(len(w) for w in alias.split() if w not in generic)
            for e in self.entities.values()
            for alias in e.aliases
        ]
        self._allowed = np.array([max_edits(n) for n in distinctive], dtype=np.int64)
        self._first_letters = np.array([f[0] for f in forms])
        self._max_words = max(words, default=0) + 1  # windows one word longer ("cityroomz" ~ "city rooms")
        self._domain_forms = {
            domain: {w.replace(" ", "") for w in names} for domain, names in domain_words.items()
        }
        self._find_cached = lru_cache(maxsize=65536)(self._find)

    def __len__(self) -> int:
        return len(self.entities)

    @classmethod
    def from_entries(
        cls,
        entries: Sequence[FaqEntry],
        generic_words: Sequence[str] = DEFAULT_GENERIC_WORDS,
        domain_words: dict[str, Sequence[str]] | None = None,
    ) -> EntityCatalog:
        """Collect the entities of FAQ entries (see the module docstring for the ``meta`` fields).

        Args:
            entries: FAQ entries, entity-scoped or not.
            generic_words: type words stripped from either end of a name to make aliases.
            domain_words: domain → extra words that name it in a message (the domain's own name and
                its plural always do), e.g. ``{"hotel": ["guesthouse"]}``.

        Raises:
            DataError: a ``meta`` field has the wrong type, ``"*"`` lacks a domain, or one entity
                name appears under two domains (entry id and field named).
        """
        names: dict[str, str] = {}  # normalised name -> name as first written
        domains: dict[str, str | None] = {}
        given: dict[str, list[str]] = {}
        first_id: dict[str, str] = {}
        all_domains: set[str] = set()
        for e in entries:
            entity, domain, aliases = entity_fields(e)
            if domain is not None:
                all_domains.add(domain)
            if entity is None or entity == DOMAIN_WIDE:
                continue
            key = " ".join(normalize_words(entity))
            if not key:
                raise DataError(f"FAQ entry {e.id!r}: meta.entity {entity!r} has no letters or digits")
            if key in names and domains[key] != domain:
                raise DataError(
                    f"FAQ entry {e.id!r}: entity {entity!r} has meta.domain {domain!r}, but entry "
                    f"{first_id[key]!r} gives it {domains[key]!r}; an entity has one domain "
                    "(give entities of different domains different names)"
                )
            names.setdefault(key, entity)
            domains.setdefault(key, domain)
            first_id.setdefault(key, e.id)
            given.setdefault(key, [])
            for alias in aliases:
                norm = " ".join(normalize_words(alias))
                if not norm:
                    raise DataError(f"FAQ entry {e.id!r}: meta.entity_aliases has {alias!r}, with no letters")
                if norm not in given[key]:
                    given[key].append(norm)
        generic = [normalize_words(w) for w in generic_words if normalize_words(w)]
        generated = {key: _strip_generic(key.split(), generic) for key in names}
        given_owner: dict[str, set[str]] = {}
        for key in names:
            for alias in [key, *given[key]]:
                given_owner.setdefault(alias, set()).add(key)
        generated_owner: dict[str, set[str]] = {}
        for key, aliases in generated.items():
            for alias in aliases:
                generated_owner.setdefault(alias, set()).add(key)
        entities = []
        for key, name in names.items():
            aliases = [key, *given[key]]
            for alias in generated[key]:
                unique = len(generated_owner[alias] | given_owner.get(alias, set())) == 1
                long_enough = len(alias.replace(" ", "")) >= MIN_GENERATED_ALIAS_CHARS
                if alias not in aliases and unique and long_enough:
                    aliases.append(alias)
            entities.append(Entity(name, domains[key], tuple(aliases)))
        words: dict[str, tuple[str, ...]] = {}
        for domain in sorted(all_domains):
            extra = list((domain_words or {}).get(domain, ()))
            norm = {" ".join(normalize_words(w)) for w in [domain, domain + "s", *extra]}
            words[domain] = tuple(sorted(w for w in norm if w))
        unknown = sorted(set(domain_words or {}) - all_domains)
        if unknown:
            raise ConfigError(
                f"domain_words names domains {unknown} that no FAQ entry has; known: {sorted(all_domains)}"
            )
        return cls(entities, words, generic_words)

    def name_of(self, entity: str) -> str | None:
        """The catalogue's name of an entity as some entry writes it (any case), or ``None``."""
        return self._by_key.get(" ".join(normalize_words(entity)))

    # -- matching
    def find_mentions(self, text: str) -> list[tuple[str, int, str, int]]:
        """Entities named in ``text``: ``(entity, start word, alias, distance)``, in text order.

        ``start word`` indexes :func:`normalize_words` of ``text``.
        """
        return [m[:4] for m in self._find_cached(text)] if self._forms else []

    def mask(self, text: str, replacement: str = "") -> str:
        """``text`` with every entity name it contains replaced by ``replacement`` (spaces tidied).

        Retrieval compares a question with FAQ questions without the names in them, so that "Does
        Fitzbillies serve alcohol?" is closest to the entity's alcohol entry, not to another of its
        entries that happens to spell the name ("Does FITZBILLIES RESTAURANT have outdoor seating?").
        """
        if not self._forms:
            return text
        found = self._find_cached(text)
        if not found:
            return text
        pieces, at = [], 0
        for *_, char_start, char_end in found:
            pieces += [text[at:char_start], replacement]
            at = char_end
        pieces.append(text[at:])
        return re.sub(r"\s+", " ", "".join(pieces)).strip() or text

    def _find(self, text: str) -> tuple[tuple[str, int, str, int, int, int], ...]:
        spans = words_with_spans(text)
        words = [w for w, _, _ in spans]
        windows: list[tuple[int, int, str]] = []  # (start, n_words, joined)
        for i in range(len(words)):
            for n in range(1, min(self._max_words, len(words) - i) + 1):
                windows.append((i, n, "".join(words[i : i + n])))
        if not windows:
            return ()
        max_allowed = int(self._allowed.max())
        dist = process.cdist(
            [w[2] for w in windows],
            self._forms,
            scorer=Levenshtein.distance,
            score_cutoff=max_allowed,
            dtype=np.int32,
        )  # (n_windows, n_aliases); values above the cutoff become cutoff + 1
        window_lengths = np.array([len(w[2]) for w in windows])
        first_letters = np.array([w[2][0] for w in windows])
        ok = (
            (dist <= self._allowed[None, :])
            & (np.abs(window_lengths[:, None] - self._form_lengths[None, :]) <= self._allowed[None, :])
            & (first_letters[:, None] == self._first_letters[None, :])
        )
        candidates = []
        for wi, ai in zip(*np.nonzero(ok), strict=True):
            start, n, _ = windows[wi]
            candidates.append((int(dist[wi, ai]), -int(self._form_lengths[ai]), start, n, int(ai)))
        candidates.sort()  # closest first, then longest alias, then earliest
        taken = np.zeros(len(words), dtype=bool)
        found = []
        for d, _neg_len, start, n, ai in candidates:
            if taken[start : start + n].any():
                continue
            taken[start : start + n] = True
            found.append(
                (self._owners[ai], start, self._forms[ai], d, spans[start][1], spans[start + n - 1][2])
            )
        return tuple(sorted(found, key=lambda m: m[1]))

    def domain_named(self, text: str) -> str | None:
        """The domain that ``text`` names by a domain word ("the hotel"), the last one if several."""
        if not self._domain_forms:
            return None
        words = normalize_words(text)
        last, where = None, -1
        for domain, forms in self._domain_forms.items():
            for i in range(len(words)):
                for n in (1, 2, 3):
                    if "".join(words[i : i + n]) in forms and i > where:
                        last, where = domain, i
        return last


def entity_fields(entry: FaqEntry) -> tuple[str | None, str | None, tuple[str, ...]]:
    """``(meta.entity, meta.domain, meta.entity_aliases)`` of an entry, validated.

    Raises:
        DataError: a field has the wrong type, or ``"*"`` has no domain (entry id and field named).
    """
    meta: dict[str, Any] = entry.meta
    entity = meta.get("entity")
    domain = meta.get("domain")
    aliases = meta.get("entity_aliases", [])
    if entity is not None and (not isinstance(entity, str) or not entity.strip()):
        raise DataError(
            f"FAQ entry {entry.id!r}: meta.entity must be a non-empty string or absent, got {entity!r}"
        )
    if domain is not None and (not isinstance(domain, str) or not domain.strip()):
        raise DataError(
            f"FAQ entry {entry.id!r}: meta.domain must be a non-empty string or absent, got {domain!r}"
        )
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise DataError(
            f"FAQ entry {entry.id!r}: meta.entity_aliases must be a list of non-empty strings, got {aliases!r}"
        )
    if aliases and (entity is None or entity == DOMAIN_WIDE):
        raise DataError(f"FAQ entry {entry.id!r}: meta.entity_aliases needs a named meta.entity")
    if entity == DOMAIN_WIDE and domain is None:
        raise DataError(f"FAQ entry {entry.id!r}: meta.entity '*' (domain-wide) needs meta.domain")
    return (
        None if entity is None else entity.strip(),
        None if domain is None else domain.strip(),
        tuple(a.strip() for a in aliases),
    )


def _strip_generic(words: list[str], generic: list[list[str]]) -> list[str]:
    """Aliases made by stripping generic word sequences from either end of a name, repeatedly."""
    out: list[str] = []
    frontier = [words]
    seen = {tuple(words)}
    while frontier:
        current = frontier.pop()
        for g in generic:
            n = len(g)
            for cut in (
                current[n:] if current[:n] == g else None,
                current[:-n] if current[-n:] == g else None,
            ):
                if cut and tuple(cut) not in seen:
                    seen.add(tuple(cut))
                    out.append(" ".join(cut))
                    frontier.append(cut)
    return out


def track_entities(catalog: EntityCatalog, turns: Sequence[Turn], decay: float = 0.5) -> EntityState:
    """Which entities a conversation is about after its last turn (see the module docstring).

    Args:
        catalog: the FAQ's entities.
        turns: the conversation, oldest first; the last one is usually the customer's new message.
        decay: recency weight factor per turn in (0, 1]: an entity last named ``t`` turns before the
            last turn weighs ``decay ** t``; the active entity always weighs 1.

    Returns:
        the state; ``EntityState()`` (nothing active) when no entity is named or the catalogue is empty.

    Raises:
        ConfigError: ``decay`` outside (0, 1].
    """
    if not 0.0 < decay <= 1.0:
        raise ConfigError(f"decay must be in (0, 1], got {decay}")
    if not len(catalog) or not turns:
        return EntityState()
    mentions: list[Mention] = []
    for t, turn in enumerate(turns):
        for entity, start, alias, distance in catalog.find_mentions(turn.text):
            mentions.append(Mention(entity, t, start, alias, distance))
    last_turn = len(turns) - 1
    latest: dict[str, tuple[int, int]] = {}
    for m in mentions:
        latest[m.entity] = max(latest.get(m.entity, (-1, -1)), (m.turn, m.start))
    named_domain = catalog.domain_named(turns[-1].text)
    active = None
    if latest:
        named_now = [e for e, (t, _) in latest.items() if t == last_turn]
        pool = list(latest)
        if named_domain is not None and not named_now:
            in_domain = [e for e in latest if catalog.entities[e].domain == named_domain]
            pool = in_domain or pool
        active = max(pool, key=lambda e: latest[e])
    weights = {e: decay ** (last_turn - t) for e, (t, _) in latest.items()}
    if active is not None:
        weights[active] = 1.0
    domain = catalog.entities[active].domain if active is not None else named_domain
    if named_domain is not None and active is not None and catalog.entities[active].domain != named_domain:
        domain = catalog.entities[active].domain
    return EntityState(active, domain, weights, tuple(mentions))
