"""Stage 1, data: read and check playpen rows, filter a game x role, split, and tokenize (the one source of token ids and loss mask); the demo data generator."""
