"""Stage 5, words: generating new taboo instances, their hardness, and playing them through clemcore."""
