"""Taboo's rules, our own implementation of clembench's documented game (issue 22).

The describer sees a target word and its related words and gives clues; the guesser
answers with one guess per turn. From the rules stated in clembench's prompts and records:

- A describer reply must start with the clue prefix (`CLUE:` in clembench; the offline
  demo's prompts ask for `HINT:`). Anything else breaks the format: the episode aborts.
- The clue may use neither the target word nor a related word, "parts or morphological
  variants" included: the clue is lower-cased and split into words, stopwords are removed
  (our own list, `STOPWORDS`, so nothing is downloaded), and a word whose Snowball stem
  equals the stem of the target or of a related word breaks the rule (a hyphenated clue
  word is also checked part by part; a related word of several words is also matched as a
  phrase; a word that starts with the target's stem of 4+ letters, like `wintertime`,
  counts as a part of the target; stems that an instance lists, as clembench's do, are
  forbidden too). A stopword that is itself the target or a related word is still
  checked. A rule violation aborts the episode, as in clembench.
- A guesser reply must start with `GUESS:`; the rest is the guess, stripped, lower-cased
  and with punctuation removed (`games.parse_guess`, the held-out check's parser). No
  `GUESS:`, an empty guess or a reply of several lines breaks the format: abort.
- A guess equal to the target (normalised the same way) wins; a wrong one, a repeated
  guess included (counted, not a violation), gives the describer another turn, until
  `max_turns` guesses have been made: then the episode is a failure.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from playpen_attribution.words.games import GUESS_PREFIX, normalise_word, parse_guess
from playpen_attribution.words.generate import stem

CLUE_PREFIX = "CLUE:"
KNOWN_CLUE_PREFIXES = ("CLUE:", "HINT:")

# English function words (our own list): removed from a clue before the stem comparison.
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your
    yours yourself yourselves
    """.split()
)
_WORD_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


class TabooParseError(ValueError):
    """A reply that breaks the format (no prefix, empty, several lines): the episode aborts."""


class TabooRuleViolation(ValueError):
    """A clue that uses the target word or a related word: the episode aborts."""


def clue_prefix_for(prompt: str | None, configured: str | None = None) -> str:
    """The clue prefix: the configured one, else the first known prefix that the
    describer's prompt asks for, else clembench's `CLUE:`."""
    if configured:
        return configured
    for prefix in KNOWN_CLUE_PREFIXES:
        if prompt and f"{prefix} <" in prompt:
            return prefix
    return CLUE_PREFIX


def parse_clue(reply: str, prefix: str = CLUE_PREFIX) -> str:
    """The clue text of a describer reply (prefix removed, stripped)."""
    reply = (reply or "").strip()
    if not reply.startswith(prefix):
        raise TabooParseError(f"the clue does not start with {prefix!r}")
    clue = reply[len(prefix) :].strip()
    if not clue:
        raise TabooParseError("the clue is empty")
    return clue


def clue_words(clue: str) -> list[str]:
    return _WORD_RE.findall(clue.lower())


def _stems_of(word: str) -> set[str]:
    """The stems of a clue word: the word's own and, for a hyphenated one, its parts'."""
    parts = [word, *re.split(r"[-']", word)] if re.search(r"[-']", word) else [word]
    return {stem(p) for p in parts if p}


@dataclass
class TabooRules:
    target_word: str
    related_words: list[str]
    max_turns: int = 3
    clue_prefix: str = CLUE_PREFIX
    target_stem: str | None = None
    related_stems: list[str] | None = None
    guesses: list[str] = field(default_factory=list)
    extra_stems: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.target_word = self.target_word.strip().lower()
        self.related_words = [w.strip().lower() for w in self.related_words]
        # Stems an instance lists (clembench's do) are forbidden besides our own.
        self.extra_stems = {s for s in [self.target_stem, *(self.related_stems or [])] if s}
        self.target_stem = stem(self.target_word)
        self.related_stems = [stem(w) for w in self.related_words]

    @classmethod
    def from_instance(cls, instance: dict, experiment: dict) -> TabooRules:
        prefix = clue_prefix_for(experiment.get("describer_initial_prompt"), experiment.get("clue_prefix"))
        return cls(
            target_word=instance["target_word"],
            related_words=list(instance["related_word"]),
            max_turns=int(experiment.get("max_turns", 3)),
            clue_prefix=prefix,
            target_stem=instance.get("target_word_stem"),
            related_stems=instance.get("related_word_stem"),
        )

    def forbidden_in(self, clue: str) -> str | None:
        """The first forbidden word used by `clue` (as the clue writes it), or None."""
        forbidden = {self.target_word, *self.related_words}
        forbidden_stems = {self.target_stem, *self.related_stems, *self.extra_stems}
        for word in clue_words(clue):
            if word in STOPWORDS and word not in forbidden:
                continue
            if word in forbidden or _stems_of(word) & forbidden_stems:
                return word
            # "parts of it": a word made from the target (wintertime, wintery).
            if len(self.target_stem) >= 4 and word.startswith(self.target_stem):
                return word
        flat = " ".join(clue_words(clue))
        for phrase in (w for w in forbidden if re.search(r"[\s-]", w)):
            if re.search(rf"\b{re.escape(' '.join(clue_words(phrase)))}\b", flat):
                return phrase
        return None

    def check_clue(self, reply: str) -> str:
        """The clue of a describer reply; raises on a broken format or a forbidden word."""
        clue = parse_clue(reply, self.clue_prefix)
        used = self.forbidden_in(clue)
        if used is not None:
            raise TabooRuleViolation(
                f"the clue uses {used!r} (target {self.target_word!r} or a related word)"
            )
        return clue

    def check_guess(self, reply: str) -> str:
        guess = parse_guess(reply)
        if guess is None:
            raise TabooParseError(f"the guess does not have the form {GUESS_PREFIX} <word> (one line)")
        return guess

    def is_correct(self, guess: str) -> bool:
        return guess == normalise_word(self.target_word)

    def is_repeat(self, guess: str) -> bool:
        return guess in self.guesses

    def record_guess(self, guess: str) -> str:
        """Record a valid guess; returns the outcome so far: success, failure or running."""
        self.guesses.append(guess)
        if self.is_correct(guess):
            return "success"
        if len(self.guesses) >= self.max_turns:
            return "failure"
        return "running"


def strip_punctuation(text: str) -> str:
    """A clue as the records log it: lower-cased, punctuation removed."""
    return text.translate(str.maketrans("", "", string.punctuation)).strip().lower()


def related_text(template: str, related: list[str]) -> str:
    """$REL_WORD$ as the template expects it: clembench's list of `- word` lines where the
    placeholder has a line of its own, else the words joined by commas (the demo's)."""
    if re.search(r"(^|\n)\$REL_WORD\$", template):
        return "\n".join(f"- {w}" for w in related)
    return ", ".join(related)


def render_prompts(experiment: dict, instance: dict) -> tuple[str, str]:
    """The describer's and the guesser's initial prompts of one instance."""
    n = str(experiment.get("max_turns", 3))
    describer = experiment["describer_initial_prompt"]
    describer = describer.replace("$TARGET_WORD$", str(instance["target_word"]))
    describer = describer.replace("$REL_WORD$", related_text(describer, list(instance["related_word"])))
    guesser = experiment["guesser_initial_prompt"]
    return describer.replace("$N$", n), guesser.replace("$N$", n)
