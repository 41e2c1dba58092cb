"""The offline template query generator: natural-sounding queries from the item metadata alone.

See :mod:`semid.data.queries` for what the generator writes (specific vs generic queries)."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from semid.data.query_files import contains_title
from semid.errors import ConfigError

# genre -> (adjective used before a noun, noun phrase, moods, occasions)
_GENRES: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "Action": ("action", "action movie", ("exciting", "fast-paced", "explosive"),
               ("a night in with friends", "a saturday night")),
    "Adventure": ("adventure", "adventure", ("epic", "thrilling", "sweeping"),
                  ("a lazy sunday", "the weekend")),
    "Animation": ("animated", "animated film", ("colorful", "charming"),
                  ("a family movie night", "watching with the kids")),
    "Children": ("family", "family film", ("family-friendly", "wholesome", "heartwarming"),
                 ("watching with the kids", "a family movie night")),
    "Comedy": ("funny", "comedy", ("funny", "lighthearted", "feel-good", "hilarious"),
               ("a rainy evening", "when I need a laugh", "a night in with friends")),
    "Crime": ("crime", "crime story", ("gritty", "dark", "tense"),
              ("a late night", "a dark winter evening")),
    "Documentary": ("documentary", "documentary", ("eye-opening", "informative", "true"),
                    ("a quiet evening", "learning something new")),
    "Drama": ("dramatic", "drama", ("moving", "emotional", "thoughtful", "powerful"),
              ("a quiet evening", "a rainy evening")),
    "Fantasy": ("fantasy", "fantasy film", ("magical", "imaginative", "whimsical"),
                ("a cozy evening", "the weekend")),
    "Film-Noir": ("noir", "film noir", ("moody", "shadowy", "atmospheric"),
                  ("a late night", "a rainy night")),
    "Horror": ("horror", "horror movie", ("scary", "creepy", "terrifying", "disturbing"),
               ("halloween", "a late night", "a scary movie night")),
    "Musical": ("musical", "musical", ("uplifting", "joyful", "toe-tapping"),
                ("a sing-along night", "a cozy evening")),
    "Mystery": ("mystery", "mystery", ("puzzling", "twisty", "intriguing"),
                ("a rainy evening", "a late night")),
    "Romance": ("romantic", "romance", ("romantic", "sweet", "touching"),
                ("date night", "valentine's day", "a cozy evening")),
    "Sci-Fi": ("sci-fi", "sci-fi movie", ("mind-bending", "futuristic", "cerebral"),
               ("a night in with friends", "a late night")),
    "Thriller": ("suspenseful", "thriller", ("tense", "gripping", "suspenseful"),
                 ("a late night", "the edge of my seat")),
    "War": ("war", "war movie", ("harrowing", "intense", "powerful"),
            ("a history buff", "a quiet evening")),
    "Western": ("western", "western", ("dusty", "rugged", "classic"),
                ("a lazy sunday afternoon", "the weekend")),
}  # fmt: skip
_SHORT = {"Animation": "animated", "Children": "family", "Romance": "romance",
          "Thriller": "thriller", "Comedy": "comedy", "Drama": "drama"}  # fmt: skip
_GENERIC_MOODS = ("good", "great", "interesting", "fun", "memorable")
_GENERIC_OCCASIONS = ("a rainy evening", "movie night", "tonight", "the weekend", "a long flight")

# Slots: {g} genre phrase, {gw} genre word, {gw2} second genre word, {d} decade, {y} year,
# {era} era adjective, {t}/{t2} tags, {m} mood, {o} occasion, {title}; "A~" becomes a / an.
_TEMPLATES = (
    "{g}",
    "{d} {g}",
    "A~ {d} {g}",
    "A~ {d} {g} with {t}",
    "A~ {m} {g}",
    "{m} {g}",
    "{m} {d} {g}",
    "something like A~ {g} about {t}",
    "something {m} for {o}",
    "{g} for {o}",
    "A~ {m} {g} for {o}",
    "I want to watch A~ {g} about {t}",
    "I want to watch A~ {m} {gw} movie",
    "I want to watch A~ {d} {gw} movie tonight",
    "looking for A~ {m} {g} from the {d}",
    "looking for A~ {g} with {t}",
    "any good {gw} movies from the {d}?",
    "any {m} {gw} movies about {t}?",
    "recommend me A~ {g}",
    "recommend A~ {m} {gw} movie with {t}",
    "{t} {g}",
    "{t} {gw} movie",
    "{gw} movie with {t} and {t2}",
    "{gw} and {gw2} movie",
    "A~ {gw} {g} about {t}",
    "{g} from {y}",
    "{g} released in {y}",
    "A~ {y} {g}",
    "{m} {gw} movies {t}",
    "movies about {t}",
    "movies with {t}",
    "{t}, {t2}, {gw}",
    "{era} {g}",
    "A~ {era} {g} about {t}",
    "best {d} {gw} movies",
    "{g} like they made in the {d}",
    "what should I watch if I like {t}",
    "A~ {gw} movie for {o}",
    "need A~ {m} movie for {o}",
)
_TITLE_TEMPLATES = (
    "{title}",
    "{title} {y}",
    "{title} movie",
    "watch {title}",
    "is {title} worth watching",
    "that {gw} movie called {title}",
    "{title} ({d} {gw} film)",
    "the {y} movie {title}",
    "{title} {t}",
)
# Extra shapes of the specific mode: several attributes at once ({gw3}: a third genre word).
_SPECIFIC_TEMPLATES = (
    "A~ {y} {gw} and {gw2} movie",
    "{gw} and {gw2} movie from {y}",
    "any {gw} and {gw2} movies from {y}?",
    "A~ {m} {y} {gw} and {gw2} movie",
    "A~ {gw}, {gw2} and {gw3} movie from {y}",
    "{gw}, {gw2} and {gw3} movie from the {d}",
    "A~ {y} {g} with {t}",
    "A~ {y} {g} about {t}",
    "I want to watch A~ {y} {g} about {t}",
    "{gw} movie from {y} about {t}",
    "A~ {d} {gw} and {gw2} movie with {t}",
    "looking for A~ {y} {gw} and {gw2} movie with {t}",
    "{gw} and {gw2} movie with {t} and {t2}",
    "{t} and {t2}: A~ {gw} movie from {y}",
    "A~ {d} {g} about {t} and {t2}",
)
# Extra title shapes of the specific mode, where title queries replace non-specific ones.
_SPECIFIC_TITLE_TEMPLATES = (
    "{title} film",
    "the movie {title}",
    "{title} ({y})",
    "I want to watch {title}",
    "looking for {title}",
    "where can I watch {title}",
    "{title}, the {gw} movie",
    "{title} from the {d}",
    "{title} about {t}",
)
_SLOT = re.compile(r"\{(\w+)\}")
_ARTICLE = re.compile(r"A~ (\S)")


def _article(match: re.Match[str]) -> str:
    rest = match.string[match.start(1) :].lower()
    vowel = rest[:1] in "aeio" or (rest[:1] == "u" and not rest.startswith(("uni", "use")))
    an = vowel or rest.startswith(("8", "11 ", "18 ", "11-", "18-")) or rest.startswith("hour")
    return ("an " if an else "a ") + match.group(1)


def _decade(year: int, rng: random.Random) -> str:
    decade = year // 10 * 10
    if decade >= 2000 or decade < 1930:
        return f"{decade}s"
    return rng.choice((f"{decade % 100:02d}s", f"{decade}s"))


def _era(year: int) -> str | None:
    if year < 1950:
        return "old black-and-white"
    if year < 1970:
        return "classic"
    if year >= 2015:
        return "recent"
    return None


# What a query states about its item: (genres, decade, year, era, tags); None = not stated.
Constraint = tuple[frozenset[str], int | None, int | None, str | None, frozenset[str]]


class _Catalogue:
    """Counts the catalogue's items that have every attribute a query states."""

    def __init__(self, items: pl.DataFrame) -> None:
        n = items.height
        self.n = n
        years = items["year"].fill_null(-1).cast(pl.Int64).to_numpy()
        self.years = years
        self.eras = np.array([_era(int(y)) if y >= 0 else None for y in years], dtype=object)
        self.genres = self._index(items["genres"], n)
        self.tags = self._index(items["tags"], n)
        self.cache: dict[Constraint, int] = {}

    @staticmethod
    def _index(column: pl.Series, n: int) -> dict[str, np.ndarray]:
        masks: dict[str, np.ndarray] = {}
        for row, values in enumerate(column.to_list()):
            for value in values or []:
                masks.setdefault(value, np.zeros(n, dtype=bool))[row] = True
        return masks

    def count(self, constraint: Constraint) -> int:
        """Items matching every stated attribute (all items if nothing is stated)."""
        if constraint in self.cache:
            return self.cache[constraint]
        genres, decade, year, era, tags = constraint
        mask = np.ones(self.n, dtype=bool)
        empty = np.zeros(self.n, dtype=bool)
        for genre in genres:
            mask &= self.genres.get(genre, empty)
        for tag in tags:
            mask &= self.tags.get(tag, empty)
        if decade is not None:
            mask &= (self.years >= decade) & (self.years < decade + 10)
        if year is not None:
            mask &= self.years == year
        if era is not None:
            mask &= self.eras == era
        self.cache[constraint] = found = int(mask.sum())
        return found


class TemplateQueryGenerator:
    """Offline queries from item metadata, in varied sentence shapes.

    Parameters
    ----------
    title_share : float
        Share of queries that contain the item's title, per item ``per_item * title_share``
        rounded either way (spread over items so it holds overall). An upper bound with
        ``specific=False``; with ``specific=True`` a floor, since items whose metadata cannot
        be specific get title queries in place of attribute queries.
    progress : bool
        Show a progress bar.
    specific : bool
        Keep a non-title query only if at most ``max_items_per_query`` catalogue items have
        every attribute it states; fill the rest with title queries (module docstring).
        ``False``: the generic queries, unchanged from earlier versions.
    max_items_per_query : int
        The specificity bound of ``specific`` mode.
    """

    def __init__(
        self,
        title_share: float = 0.2,
        progress: bool = True,
        specific: bool = True,
        max_items_per_query: int = 5,
    ) -> None:
        self.title_share = title_share
        self.progress = progress
        self.specific = specific
        self.max_items_per_query = max_items_per_query

    def generate(self, items: pl.DataFrame, per_item: int = 10, seed: int = 0) -> pl.DataFrame:
        """Up to ``per_item`` distinct queries per item; deterministic given ``seed``."""
        if not 0.0 <= self.title_share <= 1.0:
            raise ConfigError(f"queries.title_share={self.title_share}: must be in [0, 1]")
        if per_item < 1:
            raise ConfigError(f"queries.per_item={per_item}: must be at least 1")
        if self.max_items_per_query < 1:
            raise ConfigError(
                f"queries.max_items_per_query={self.max_items_per_query}: must be at least 1"
            )
        self._catalogue = _Catalogue(items) if self.specific else None
        rows = items.select("item_idx", "title", "year", "genres", "tags").iter_rows()
        queries: list[str] = []
        targets: list[int] = []
        budget = per_item * self.title_share
        for position, (item_idx, title, year, genres, tags) in enumerate(
            tqdm(rows, total=items.height, desc="template queries", disable=not self.progress)
        ):
            n_title = math.floor((position + 1) * budget + 1e-9) - math.floor(
                position * budget + 1e-9
            )
            made = self._item_queries(
                random.Random(f"{seed}:{item_idx}"), title, year, genres, tags, per_item, n_title
            )
            queries += made
            targets += [item_idx] * len(made)
        return pl.DataFrame(
            {"query": queries, "item_idx": targets},
            schema={"query": pl.String, "item_idx": pl.Int32},
        )

    def _item_queries(
        self,
        rng: random.Random,
        title: str | None,
        year: int | None,
        genres: list[str] | None,
        tags: list[str] | None,
        per_item: int,
        n_title: int,
    ) -> list[str]:
        genres = [g for g in genres or [] if g in _GENRES] + [
            g for g in genres or [] if g not in _GENRES and g != "IMAX"
        ]
        tags = list(tags or [])
        words = [_SHORT.get(g, _GENRES[g][0]) if g in _GENRES else g.lower() for g in genres]
        title = (title or "").strip()
        catalogue = self._catalogue
        templates: tuple[str, ...] = _TEMPLATES
        title_templates: tuple[str, ...] = _TITLE_TEMPLATES
        if catalogue is not None:
            title_templates = _TITLE_TEMPLATES + _SPECIFIC_TITLE_TEMPLATES
            templates = self._specific_templates(catalogue, year, genres, tags)
            if not templates:
                n_title = per_item if title else 0  # no attribute combination singles it out
        plain: list[str] = []
        titled: list[str] = []
        seen: set[str] = set()
        for _round in range(2 if catalogue is not None else 1):
            if _round == 1:  # specific mode: title queries replace the non-specific ones
                if len(plain) >= per_item - n_title or not title:
                    break
                n_title = per_item - len(plain)
            attempts = 0
            while (
                len(plain) < per_item - n_title or len(titled) < n_title
            ) and attempts < 40 * per_item:
                attempts += 1
                want_title = (
                    bool(title)
                    and len(titled) < n_title
                    and (len(plain) >= per_item - n_title or rng.random() < 0.3)
                )
                template = rng.choice(title_templates if want_title else templates)
                filled = self._fill(rng, template, title, year, genres, words, tags)
                if filled is None or filled[0].lower() in seen:
                    continue
                query, stated = filled
                has_title = contains_title(query, title)
                if has_title and len(titled) >= n_title:
                    continue
                if not has_title and len(plain) >= per_item - n_title:
                    continue
                if (
                    not has_title
                    and catalogue is not None
                    and catalogue.count(stated) > self.max_items_per_query
                ):
                    continue
                seen.add(query.lower())
                (titled if has_title else plain).append(query)
        out = plain + titled
        rng.shuffle(out)
        return out

    def _specific_templates(
        self, catalogue: _Catalogue, year: int | None, genres: list[str], tags: list[str]
    ) -> tuple[str, ...]:
        """The templates that can single out this item: those whose slots, filled with every
        attribute of the item they can state, match few enough items (a necessary condition;
        each filled query is checked again)."""
        every: dict[tuple[bool, ...], Constraint] = {}
        keep = []
        for template in _TEMPLATES + _SPECIFIC_TEMPLATES:
            shape = _TEMPLATE_SHAPES[template]
            if shape not in every:
                every[shape] = (
                    frozenset(genres) if shape[0] else frozenset(),
                    year // 10 * 10 if year and shape[1] else None,
                    year if year and shape[2] else None,
                    _era(year) if year and shape[3] else None,
                    frozenset(tags) if shape[4] else frozenset(),
                )
            if catalogue.count(every[shape]) <= self.max_items_per_query:
                keep.append(template)
        return tuple(keep)

    @staticmethod
    def _fill(
        rng: random.Random,
        template: str,
        title: str,
        year: int | None,
        genres: list[str],
        words: list[str],
        tags: list[str],
    ) -> tuple[str, Constraint] | None:
        """``template`` filled from the item's metadata, and the attributes the text states.

        None if a slot has no value for this item.
        """
        names = _TEMPLATE_SLOTS[template]
        available = {
            "d": year, "y": year, "era": year and _era(year), "gw": words, "gw2": len(words) >= 2,
            "gw3": len(words) >= 3, "t": tags, "t2": len(tags) >= 2, "title": title,
        }  # fmt: skip
        if any(name in available and not available[name] for name in names):
            return None
        picked = rng.sample(genres, k=min(len(genres), rng.choice((1, 1, 2)))) if genres else []
        known = [g for g in picked if g in _GENRES]
        values: dict[str, str] = {}
        stated_genres: list[str] = []
        if "g" in names:
            if len(picked) == 2 and len(known) == 2:
                values["g"] = f"{_GENRES[known[0]][0]} {_GENRES[known[1]][1]}"
                stated_genres += known
            elif picked and picked[0] in _GENRES:
                values["g"] = _GENRES[picked[0]][1]
                stated_genres.append(picked[0])
            elif picked:
                values["g"] = f"{picked[0].lower()} movie"
                stated_genres.append(picked[0])
            else:
                values["g"] = rng.choice(("movie", "film"))
        if "gw3" in names:
            values["gw"], values["gw2"], values["gw3"] = rng.sample(words, 3)
        elif "gw2" in names:
            values["gw"], values["gw2"] = rng.sample(words, 2)
        elif "gw" in names:
            values["gw"] = rng.choice(words)
        genre_of = dict(zip(words, genres, strict=True))
        stated_genres += [genre_of[values[k]] for k in ("gw", "gw2", "gw3") if k in values]
        if "t2" in names:
            values["t"], values["t2"] = rng.sample(tags, 2)
        elif "t" in names:
            values["t"] = rng.choice(tags)
        if year:
            values["y"] = str(year)
            values["era"] = _era(year) or ""
            if "d" in names:
                values["d"] = _decade(year, rng)
        source = known or [g for g in genres if g in _GENRES]
        if "m" in names:
            values["m"] = rng.choice([m for g in source for m in _GENRES[g][2]] or _GENERIC_MOODS)
        if "o" in names:
            occasions = [o for g in source for o in _GENRES[g][3]] or _GENERIC_OCCASIONS
            values["o"] = rng.choice(occasions)
        if "title" in names:
            values["title"] = title if rng.random() < 0.6 else title.lower()
        # reject repeated words ("a suspenseful suspenseful drama"); titles may repeat words
        untitled = _SLOT.sub(
            lambda m: "" if m.group(1) == "title" else values[m.group(1)], template
        )
        long_words = [w for w in re.findall(r"[\w'-]+", untitled.lower()) if len(w) > 3]
        if len(set(long_words)) < len(long_words):
            return None
        text = _SLOT.sub(lambda m: values[m.group(1)], template)
        stated: Constraint = (
            frozenset(stated_genres),
            int(year) // 10 * 10 if year and "d" in names else None,
            int(year) if year and "y" in names else None,
            values["era"] if "era" in names else None,
            frozenset(values[k] for k in ("t", "t2") if k in values),
        )
        return _ARTICLE.sub(_article, text), stated


_TEMPLATE_SLOTS = {
    t: tuple(_SLOT.findall(t))
    for t in _TEMPLATES + _SPECIFIC_TEMPLATES + _TITLE_TEMPLATES + _SPECIFIC_TITLE_TEMPLATES
}
# which attributes a template can state: (genre, decade, year, era, tag)
_TEMPLATE_SHAPES = {
    t: (
        bool({"g", "gw"} & set(slots)),
        "d" in slots,
        "y" in slots,
        "era" in slots,
        "t" in slots,
    )
    for t, slots in _TEMPLATE_SLOTS.items()
}
