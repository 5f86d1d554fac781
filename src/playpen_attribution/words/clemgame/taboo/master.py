"""Taboo for clemcore: our own game master (issue 22), after clembench's documented rules.

The rules themselves live in playpen_attribution.words.taboo (tested without clemcore); this
file maps them onto clemcore's DialogueGameMaster: one round is a clue and a guess, the
describer's reply goes verbatim to the guesser and the guesser's to the describer, a reply
that breaks the format or a clue that breaks the rule aborts the episode. Instances are
clembench's taboo format (experiments with max_turns and the two prompt templates; game
instances with target_word and related_word); an experiment may also name its
`clue_prefix` (else the one its describer prompt asks for, else `CLUE:`).
"""

import math

from clemcore.clemgame import (
    DialogueGameMaster,
    GameBenchmark,
    GameScorer,
    ParseError,
    Player,
    RuleViolationError,
)
from clemcore.clemgame.metrics import BENCH_SCORE, METRIC_ABORTED, METRIC_LOSE, METRIC_SUCCESS

from playpen_attribution.words.taboo import (
    TabooParseError,
    TabooRules,
    TabooRuleViolation,
    parse_clue,
    render_prompts,
    strip_punctuation,
)


class WordDescriber(Player):
    """The clue giver. A programmatic one (model `mock`) gives the same clue each turn."""

    def __init__(self, model, clue_prefix="CLUE:"):
        super().__init__(model)
        self.clue_prefix = clue_prefix

    def _custom_response(self, context):
        return f"{self.clue_prefix} something you may know"


class WordGuesser(Player):
    """The guesser. A programmatic one (model `mock`) always guesses `word`."""

    def _custom_response(self, context):
        return "GUESS: word"


class Taboo(DialogueGameMaster):
    def _on_setup(self, **game_instance):
        self.game_instance = game_instance
        self.rules = TabooRules.from_instance(game_instance, self.experiment)
        describer_prompt, guesser_prompt = render_prompts(self.experiment, game_instance)
        self.describer = WordDescriber(self.player_models[0], self.rules.clue_prefix)
        self.guesser = WordGuesser(self.player_models[1])
        self.add_player(self.describer, initial_context=describer_prompt)
        self.add_player(self.guesser, initial_prompt=guesser_prompt)
        self.repeated_guesses = 0

    def _parse_response(self, player, response):
        try:
            if player is self.describer:
                parse_clue(response, self.rules.clue_prefix)
            else:
                self.rules.check_guess(response)
        except TabooParseError as error:
            raise ParseError(str(error), response) from None
        return response

    def _advance_game(self, player, parsed_response):
        if player is self.describer:
            try:
                clue = self.rules.check_clue(parsed_response)
            except TabooRuleViolation as error:
                raise RuleViolationError(str(error), parsed_response) from None
            self.log_to_self("valid clue", strip_punctuation(clue))
            self.set_context_for(self.guesser, parsed_response)
            return
        guess = self.rules.check_guess(parsed_response)
        if self.rules.is_repeat(guess):
            self.repeated_guesses += 1
        outcome = self.rules.record_guess(guess)
        self.log_to_self("valid guess", guess)
        if outcome == "success":
            self.log_to_self("correct guess", "end game")
            self.state.succeed()
        elif outcome == "failure":
            self.log_to_self("max turns reached", str(self.rules.max_turns))
            self.state.failed()
        else:
            self.set_context_for(self.describer, parsed_response)

    def _on_parse_error(self, error):
        self.log_to_self("invalid format", "abort game")
        self.state.abort()

    def _on_game_error(self, error):
        self.log_to_self("invalid clue", error.reason)
        self.state.abort()

    def _on_after_game(self):
        outcome = self.state.outcome.value
        self.log_key(METRIC_ABORTED, int(outcome == "aborted"))
        self.log_key(METRIC_LOSE, int(outcome == "failure"))
        self.log_key(METRIC_SUCCESS, int(outcome == "success"))
        self.log_key("outcome", outcome)
        self.log_key("guesses", list(self.rules.guesses))
        self.log_key("repeated guesses", self.repeated_guesses)


class TabooScorer(GameScorer):
    def compute_round_score(self, round_idx, round_events):
        correct = any(e["action"]["type"] == "correct guess" for e in round_events)
        self.log_round_score(round_idx, "Accuracy", int(correct))

    def compute_episode_scores(self, interactions):
        guesses = [
            e["action"]["content"]
            for round_events in interactions["turns"]
            for e in round_events
            if e["action"]["type"] == "valid guess"
        ]
        self.log_episode_score("Repetition-Guesser", len(guesses) - len(set(guesses)))
        if interactions[METRIC_ABORTED]:
            self.log_episode_score(BENCH_SCORE, math.nan)
        elif interactions[METRIC_SUCCESS]:
            # Speed: 100 for a win at the first guess, 100/n at the n-th.
            self.log_episode_score(BENCH_SCORE, 100 / len(guesses))
        else:
            self.log_episode_score(BENCH_SCORE, 0)


class TabooGameBenchmark(GameBenchmark):
    def create_game_master(self, experiment, player_models):
        return Taboo(self.game_spec, experiment, player_models)

    def create_game_scorer(self, experiment, game_instance):
        return TabooScorer(self.game_name, experiment, game_instance)
