"""The project's own prompts: the demo data's games, and the templates of the taboo
instances that generate.py writes when the config names none. One home, so that the
demo data and the generated instances cannot drift apart."""

DESCRIBER_PROMPT = (
    "Let's play a word game. You give hints; your partner guesses.\n\n"
    "Your secret word is: {word}\n\n"
    "You must not say these words (or any form of them): {related}.\n"
    "Never say the secret word itself.\n"
    "Answer only in the form HINT: <your hint>. Your partner answers with GUESS: <word>.\n"
    "You both win if your partner finds the word within three guesses. Keep hints short."
)
GUESSER_PROMPT = (
    "Word game: your partner hints at a secret word. Three tries. Reply GUESS: <word>.\n\nHINT: {clue}"
)
WORDLE_PROMPT = (
    "Guess the hidden five-letter English word in at most three tries.\n"
    "After each guess you get feedback per letter: G = right place, Y = in the word, "
    "X = not in the word.\nAnswer in the form GUESS: <word>."
)
