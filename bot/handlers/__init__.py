"""Reactions to GitHub events, one module per reaction, composed by `bot.service`."""
