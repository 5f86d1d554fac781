"""Training-data attribution on playpen game-play chats."""
