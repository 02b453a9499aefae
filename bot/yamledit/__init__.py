"""The one minimal-edit YAML kit: every YAML file the bot writes is edited through it.

One strategy: compose the text into nodes with their positions, locate the nodes an edit is about
by path, splice the edit into the original text in the file's own style, and re-read the result:
it must equal the original data with exactly the edits applied, or `YamlEditError` names the file.

    doc = Document(text, "models/_models.yml")
    doc.set(("models", {"name": "orders"}, "description"), "One row per order")
    doc.append(("models", {"name": "orders"}, "columns"), {"name": "amount", "data_tests": ["not_null"]})
    text = doc.result()

A path is a sequence of steps: a mapping key (`"models"`), a sequence index (`0`, `-1`), or a
mapping `{"name": "orders"}` naming the item of a sequence whose `name` is `orders`.
"""
from bot.yamledit.document import Commented, Document, Flow, Path, Spaced, Step
from bot.yamledit.nodes import YamlEditError, compose, plain, same
from bot.yamledit.render import block_scalar, double_quoted, inline, key_text, plain_ok, printable

__all__ = [
    "Commented", "Document", "Flow", "Path", "Spaced", "Step", "YamlEditError", "block_scalar", "compose", "double_quoted",
    "inline", "key_text", "plain", "plain_ok", "printable", "same",
]
