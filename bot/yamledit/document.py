"""One YAML file being edited: nodes located by path, edits spliced into the original text in the
file's own layout, and one re-read at the end that must give exactly the data the edits meant.

The file is never dumped: the text outside the edits is the user's, byte for byte. What is written
copies the file (indentation of mappings, where a list's dash goes and how far its entries sit
from it, blank lines between entries, line endings, a missing final line break, flow or block
collections). The expected data is the original data with each edit applied to it; a re-read that
differs (in any value or in key order) raises `YamlEditError` naming the file, never a wrong file.
"""
from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from bot.yamledit.nodes import (
    MappingNode, Node, ScalarNode, SequenceNode, YamlEditError, build, compose, key_of, same, scalar_value,
)
from bot.yamledit.render import QUOTES, block_scalar, double_quoted, inline, key_text, plain_ok

Step = Union[str, int, Mapping]   # a key, an index, or {"name": "x"}: the item whose `name` is x
Path = Sequence[Step]

# What YAML counts as a line break (a lone `\r` and NEL too), so lines agree with the marks.
_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")
_LINE_ENDS = "\n\r\x85\u2028\u2029"


@dataclass(frozen=True)
class Commented:
    """A value written with comment lines right above its key (or dash), e.g. a marker comment."""

    value: Any
    comments: tuple[str, ...]


class Spaced(list):
    """A list written with a blank line between its items (as dbt files often separate models)."""


class Flow(list):
    """A list written in flow style, `[a, b]`, where a block list would be the default."""


def _bare(value: Any) -> Any:
    """A value to be written as data, its `Commented` wrappers removed."""
    if isinstance(value, Commented):
        return _bare(value.value)
    if isinstance(value, Mapping):
        return {k: _bare(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_bare(v) for v in value]
    return value


@dataclass
class _Slot:
    """Where a value lives: entry `index` of `parent` (a mapping's pair or a sequence's item)."""

    parent: Node
    index: int
    key: ScalarNode | None
    value: Node


@dataclass(frozen=True)
class _Layout:
    step: int     # a nested mapping's keys, relative to its key
    offset: int   # a sequence's dash, relative to its key
    gap: int      # an item's content, relative to its dash


class Document:
    """Edits of one YAML text, planned against its original nodes; `result()` applies and verifies."""

    def __init__(self, text: str, path: str | None = None):
        self.original, self.path = text, path
        self.bom = "\ufeff" if text.startswith("\ufeff") else ""
        body = text[len(self.bom):]
        found = _BREAK.search(body)
        self.nl = found.group() if found else "\n"
        self.final_break = not body or body.endswith(tuple(_LINE_ENDS))
        self.text = body if self.final_break else body + self.nl
        self.root = compose(body, path)
        if self.root is None:
            self.expected, self._twins = None, {}
        else:
            self.expected, self._twins = build(self.root, path)
        self._data: Any = None
        self._edits: list[tuple[int, int, str, int, int]] = []   # start, end, text, rank, order
        self._list_ops: dict[int, tuple[list, list[tuple[int, int, str, Any]]]] = {}
        self._lines: list[str] | None = None
        self._starts: list[int] = []
        self._votes: tuple[Counter, Counter] | None = None
        self._renamed: dict[int, Any] = {}

    # ---- reading

    @property
    def data(self) -> Any:
        """The original data (plain Python), unchanged by the edits planned so far."""
        if self._data is None and self.root is not None:
            self._data = build(self.root, self.path)[0]
        return self._data

    def node(self, path: Path) -> Node | None:
        found = self._walk(path)
        return found[-1] if found else None

    def get(self, path: Path, default: Any = None) -> Any:
        node = self.node(path)
        if node is None:
            return default
        if node is self.root:
            return self.data
        return build(node, self.path)[0]

    def line(self, path: Path) -> int | None:
        """1-based line of the entry at `path` (its key, or its dash)."""
        slot = self._slot(path)
        return None if slot is None else self._entry_line(slot) + 1

    def source(self, path: Path) -> str:
        """The text of the scalar at `path` as written (quotes and block header included)."""
        node = self._need(path)
        return self.text[node.start_mark.index:self._content_end(node)]

    def separated(self, path: Path) -> bool | None:
        """Whether the entries of the collection at `path` have blank lines between them: most gaps
        decide, a tie goes to the last gap; None when it has fewer than two entries."""
        node = self.node(path)
        return None if node is None else self._separated(node)

    def comment_lines(self, path: Path) -> list[int]:
        """0-based indices of the comment lines right above the entry at `path` (no blank between)."""
        slot = self._need_slot(path)
        index = self._entry_line(slot) - 1
        found = []
        while index >= 0 and self.is_comment(index):
            found.append(index)
            index -= 1
        return found

    def line_text(self, index: int) -> str:
        return self.lines[index].rstrip(_LINE_ENDS)

    def is_blank(self, index: int) -> bool:
        return 0 <= index < len(self.lines) and not self.line_text(index).strip()

    def is_comment(self, index: int) -> bool:
        return 0 <= index < len(self.lines) and self.line_text(index).lstrip().startswith("#")

    def indent(self, index: int) -> int:
        text = self.line_text(index)
        return len(text) - len(text.lstrip(" "))

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines, pos = [], 0
            for found in _BREAK.finditer(self.text):
                self._lines.append(self.text[pos:found.end()])
                pos = found.end()
            if pos < len(self.text):
                self._lines.append(self.text[pos:])
            self._starts = [0]
            for line in self._lines:
                self._starts.append(self._starts[-1] + len(line))
        return self._lines

    # ---- edits

    def set(self, path: Path, value: Any, *, after: str | None = None, before: str | None = None,
            open_empty: bool = True, keep_style: bool = True) -> None:
        """Set the value at `path`: a key that is missing is added to its mapping (after key `after`,
        before key `before`, else last); an empty flow collection (`{}`) opens into block style
        unless `open_empty` is false; `keep_style` keeps a replaced scalar's quoting or block style."""
        parents, last = self._walk(path[:-1]), path[-1]
        if self.root is None and len(path) == 1:
            self._insert_lines(len(self.lines), self._pair_lines(0, last, value, self._layout([])))
            self.expected = {**(self.expected or {}), last: _bare(value)}
            return
        if not parents:
            raise YamlEditError(f"no `{_show(path[:-1])}` to set `{last}` in", self.path)
        parent = parents[-1]
        if _is_null(parent) and isinstance(last, str):
            self.set(path[:-1], {last: value}, open_empty=open_empty)
            return
        slot = self._child_slot(parent, last)
        if slot is not None:
            self._replace(slot, value, keep_style, [*parents, slot.value])
            self._expect_at(slot, _bare(value))
            return
        if not isinstance(parent, MappingNode) or not isinstance(last, str):
            raise YamlEditError(f"no `{_show(path)}` to set", self.path, parent.start_mark.line + 1)
        keys = [key_of(k) for k, _v in parent.value]
        position = len(keys)
        if after is not None and after in keys:
            position = keys.index(after) + 1
        elif before is not None and before in keys:
            position = keys.index(before)
        while position == len(keys) and position and not parent.flow_style \
                and self._open_block(parent.value[position - 1][1]):
            position -= 1      # after it, the block's value would gain a line break: go before it
        self._add_entry(parents, position, last, value, open_empty)
        twin = self._twins[id(parent)]
        items = list(twin.items())
        names = [k for k, _v in items]
        following = self._renamed.get(id(parent.value[position][0]), keys[position]) if position < len(keys) else None
        at = names.index(following) if following in names else len(items)
        items.insert(at, (last, _bare(value)))
        twin.clear()
        twin.update(items)

    def insert(self, path: Path, index: int | None, value: Any, *, separate: bool | None = None,
               open_empty: bool = True) -> None:
        """Insert `value` into the sequence at `path` before item `index` (None: append). A missing or
        null sequence is created (`set(path, [value])`)."""
        found = self._walk(path)
        if not found or _is_null(found[-1]):
            self.set(path, [value], open_empty=open_empty)
            return
        seq = found[-1]
        if not isinstance(seq, SequenceNode):
            raise YamlEditError(f"`{_show(path)}` must be a list", self.path, seq.start_mark.line + 1)
        position = len(seq.value) if index is None else index
        self._add_entry(found, position, None, value, open_empty, separate)
        self._list_op(seq, position, "insert", _bare(value))

    def append(self, path: Path, value: Any, *, separate: bool | None = None) -> None:
        self.insert(path, None, value, separate=separate)

    def update(self, path: Path, value: Any) -> None:
        """Make the value at `path` equal `value` with the fewest edits: keys missing from it removed,
        new keys added after the key they follow in `value`, a list that `value` extends appended
        to, every other difference replaced."""
        self._update(tuple(path), self.get(path), value)

    def _update(self, path: tuple, old: Any, new: Any) -> None:
        if isinstance(old, dict) and isinstance(new, Mapping) and old:
            for key in old:
                if key not in new:
                    self.remove((*path, key))
            kept = [k for k in new if k in old]
            for key, value in new.items():
                if key in old:
                    self._update((*path, key), old[key], value)
                    continue
                before = [k for k in kept if list(new).index(k) < list(new).index(key)]
                if before:
                    self.set((*path, key), value, after=before[-1])
                else:
                    self.set((*path, key), value, before=kept[0] if kept else None)
        elif isinstance(old, list) and isinstance(new, list) and len(new) >= len(old) > 0:
            for index, item in enumerate(old):
                self._update((*path, index), item, new[index])
            for item in new[len(old):]:
                self.append(path, item)
        elif not same(old, _bare(new)):
            self.set(path, new)

    def remove(self, path: Path, *, empty: str | None = "{}") -> None:
        """Remove the entry at `path` with the comment lines right above it. Removing a collection's
        last entry leaves its key with `{}` / `[]` (`empty="{}"`), or with no value (`empty=None`)."""
        slot = self._need_slot(path)
        parent = slot.parent
        if parent.flow_style:
            spans = self._flow_spans(parent)
            i = slot.index
            if i > 0:
                self._splice(spans[i - 1][1], spans[i][1], "")
            elif len(spans) > 1:
                self._splice(spans[0][0], spans[1][0], "")
            else:
                self._splice(spans[0][0], spans[0][1], "")
        else:
            holder = None
            if len(parent.value) == 1 and parent is not self.root:
                outer = self._walk(path[:-1])
                holder = self._slot_of(outer[-2], self._index_in(outer[-2], parent))
            fill = "" if empty is None else " " + ("[]" if isinstance(parent, SequenceNode) else "{}")
            if holder is not None and self._line_at(self._head(holder)) == self._entry_line(slot):
                self._splice(self._head(holder), self._content_end(parent), fill)   # `- a: 1` -> `- {}`
            else:
                start, end = self._leading_start(slot), self._own_end(slot)
                prev_blank, next_blank = self.is_blank(start - 1), self.is_blank(end)
                opener = start > 0 and self.line_text(start - 1).split("#")[0].rstrip().endswith((":", "-"))
                if holder is not None:
                    pass           # the collection goes: blank lines around it are its parent's
                elif next_blank and (prev_blank or opener):
                    end += 1
                elif prev_blank and slot.index == len(parent.value) - 1:
                    start -= 1
                self._delete_lines(start, end)
                if holder is not None and fill:
                    self._splice(self._head(holder), self._head(holder), fill)
            if holder is not None and empty is None:
                self._expect_at(holder, None)
                return
        if isinstance(parent, MappingNode):
            self._twins[id(parent)].pop(self._key_now(slot), None)
        else:
            self._list_op(parent, slot.index, "remove", None)

    def rename(self, path: Path, new: str) -> None:
        """Rename the key at `path` in place; its quotes stay when they were a choice, not a need."""
        slot = self._need_slot(path)
        if slot.key is None:
            raise YamlEditError(f"`{_show(path)}` is no mapping key", self.path)
        old = key_of(slot.key)
        style = slot.key.style if slot.key.style in QUOTES and plain_ok(str(old), key=True) else None
        self._splice(slot.key.start_mark.index, slot.key.end_mark.index,
                     key_text(new, style, bool(slot.parent.flow_style)))
        twin = self._twins[id(slot.parent)]
        self._renamed[id(slot.key)] = new
        items = [(new if k == old else k, v) for k, v in twin.items()]
        twin.clear()
        twin.update(items)

    def set_source(self, path: Path, source: str, value: Any) -> None:
        """Replace the scalar's text (see `source`) with `source`, which must read as `value`."""
        slot = self._need_slot(path)
        self._splice(slot.value.start_mark.index, self._content_end(slot.value), source)
        self._expect_at(slot, value)

    def add_comment(self, path: Path, comment: str) -> None:
        """A comment line right above the entry at `path`, at its indentation."""
        slot = self._need_slot(path)
        line = self._entry_line(slot)
        column = self._entry_column(slot)
        if self.line_text(line)[:column].strip():
            raise YamlEditError(f"`{_show(path)}` does not start its line; cannot put a comment above it",
                                self.path, line + 1)
        self._insert_lines(line, [" " * column + comment])

    def remove_line(self, index: int) -> None:
        """Delete one comment line (0-based, from `comment_lines`)."""
        if not self.is_comment(index):
            raise YamlEditError("only comment lines can be removed as lines", self.path, index + 1)
        self._delete_lines(index, index + 1)

    def result(self, what: str = "editing") -> str:
        """The edited text, once its re-read equals the expected data; the original (the very same
        string) when nothing changed."""
        if not self._edits:
            return self.original
        text, limit = self.text, len(self.text) + 1
        for start, end, replacement, _r, _n in sorted(self._edits, key=lambda e: e[:2] + e[3:], reverse=True):
            if end > limit:
                raise YamlEditError(f"{what}: two edits overlap", self.path)
            text = text[:start] + replacement + text[end:]
            limit = start
        # A file without a final line break gets none, unless the edit ends it in a block scalar whose
        # last line break is part of its value.
        texts = [text[:-len(self.nl)], text] if not self.final_break and text.endswith(self.nl) else [text]
        if self.bom + texts[0] == self.original:
            return self.original
        self._apply_list_ops()
        for candidate in texts:
            try:
                root = compose(candidate, self.path)
                got = None if root is None else build(root, self.path)[0]
            except YamlEditError as exc:
                raise YamlEditError(f"{what}: the edited file would not read back ({exc.message})", self.path,
                                    exc.line) from None
            if same(got, self.expected):
                return self.bom + candidate
        raise YamlEditError(f"{what}: could not make this edit without changing something else", self.path)

    # ---- paths

    def _walk(self, path: Path) -> list[Node]:
        """The nodes from the root down to `path` (empty when some step is missing)."""
        if self.root is None:
            return []
        chain = [self.root]
        for step in path:
            slot = self._child_slot(chain[-1], step)
            if slot is None:
                return []
            chain.append(slot.value)
        return chain

    def _child_slot(self, node: Node, step: Step) -> _Slot | None:
        if isinstance(node, MappingNode) and isinstance(step, (str, int, float, bool)):
            for i, (key, _value) in enumerate(node.value):
                if isinstance(key, ScalarNode) and (scalar_value(key) == step or key_of(key) == step):
                    return self._slot_of(node, i)
        elif isinstance(node, SequenceNode) and isinstance(step, int) and not isinstance(step, bool):
            if -len(node.value) <= step < len(node.value):
                return self._slot_of(node, step % len(node.value))
        elif isinstance(node, SequenceNode) and isinstance(step, Mapping):
            for i, item in enumerate(node.value):
                if isinstance(item, MappingNode) and all(
                        (s := self._child_slot(item, k)) is not None and isinstance(s.value, ScalarNode)
                        and scalar_value(s.value) == v for k, v in step.items()):
                    return self._slot_of(node, i)
        return None

    def _slot(self, path: Path) -> _Slot | None:
        chain = self._walk(path[:-1])
        return self._child_slot(chain[-1], path[-1]) if chain and path else None

    def _need_slot(self, path: Path) -> _Slot:
        slot = self._slot(path)
        if slot is None:
            raise YamlEditError(f"no `{_show(path)}`", self.path)
        return slot

    def _need(self, path: Path) -> Node:
        node = self.node(path)
        if node is None:
            raise YamlEditError(f"no `{_show(path)}`", self.path)
        return node

    @staticmethod
    def _slot_of(parent: Node, index: int) -> _Slot:
        if isinstance(parent, MappingNode):
            key, value = parent.value[index]
            return _Slot(parent, index, key, value)
        return _Slot(parent, index, None, parent.value[index])

    @staticmethod
    def _index_in(parent: Node, child: Node) -> int:
        values = [v for _k, v in parent.value] if isinstance(parent, MappingNode) else parent.value
        return next(i for i, v in enumerate(values) if v is child)

    # ---- expected data

    def _expect_at(self, slot: _Slot, value: Any) -> None:
        if slot.key is not None:
            self._twins[id(slot.parent)][self._key_now(slot)] = value
        else:
            self._list_op(slot.parent, slot.index, "set", value)
        if isinstance(value, (dict, list)):
            self._twins.pop(id(slot.value), None)

    def _key_now(self, slot: _Slot) -> Any:
        """The slot's key in the expected data (a key renamed in this batch goes by its new name)."""
        return self._renamed.get(id(slot.key), key_of(slot.key))

    def _list_op(self, seq: SequenceNode, index: int, kind: str, value: Any) -> None:
        twin = self._twins[id(seq)]
        ops = self._list_ops.setdefault(id(seq), (twin, []))[1]
        ops.append((index, len(ops), kind, value))

    def _apply_list_ops(self) -> None:
        for twin, ops in self._list_ops.values():
            for index, _n, kind, value in sorted(ops, key=lambda op: (op[0], op[2] != "insert", op[1]),
                                                 reverse=True):
                if kind == "insert":
                    twin.insert(index, value)
                elif kind == "remove":
                    del twin[index]
                else:
                    twin[index] = value
        self._list_ops.clear()

    # ---- geometry

    def _line_at(self, offset: int) -> int:
        self.lines
        return bisect.bisect_right(self._starts, offset) - 1

    def _line_start(self, index: int) -> int:
        self.lines
        return self._starts[min(index, len(self._starts) - 1)]

    def _dash(self, slot: _Slot) -> int:
        return self.text.rfind("-", 0, slot.value.start_mark.index)

    def _entry_line(self, slot: _Slot) -> int:
        if slot.key is not None:
            return slot.key.start_mark.line
        return self._line_at(self._dash(slot)) if not slot.parent.flow_style else slot.value.start_mark.line

    def _entry_column(self, slot: _Slot) -> int:
        if slot.key is not None:
            return slot.key.start_mark.column
        dash = self._dash(slot)
        return dash - self._line_start(self._line_at(dash))

    def _head(self, slot: _Slot) -> int:
        """Offset just past the entry's indicator (the `:` after its key, or its `-`)."""
        if slot.key is None:
            return self._dash(slot) + 1
        pos = slot.key.end_mark.index
        while self.text[pos:pos + 1] in (" ", "\t"):
            pos += 1
        return pos + 1 if self.text[pos:pos + 1] == ":" else slot.value.start_mark.index

    def _content_end(self, node: Node) -> int:
        """Offset just past the node's own last character (not its trailing comments or blank lines)."""
        while isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
            last = node.value[-1]
            node = (last[0] if _is_empty(last[1]) else last[1]) if isinstance(last, tuple) else last
        if isinstance(node, ScalarNode) and node.style in ("|", ">"):
            header = self.text[node.start_mark.index:self._line_start(node.start_mark.line + 1)]
            if "+" in header.split("#")[0]:
                return node.end_mark.index
            return len(self.text[:node.end_mark.index].rstrip(" \t" + _LINE_ENDS))
        return node.end_mark.index

    def _last_line(self, slot: _Slot) -> int:
        end = self._content_end(slot.value) if not _is_empty(slot.value) else (
            slot.key.end_mark.index if slot.key is not None else self._dash(slot) + 1)
        return self._line_at(max(end - 1, 0))

    def _own_end(self, slot: _Slot) -> int:
        """Line after the entry: its content and the deeper comment lines right below it."""
        index, column = self._last_line(slot) + 1, self._entry_column(slot)
        while self.is_comment(index) and self.indent(index) > column:
            index += 1
        return index

    def _after(self, slot: _Slot) -> int:
        """Line where what follows the entry goes: past comments indented deeper (they annotate it,
        blank lines between or not), before blank lines and shallower comments (they introduce what
        follows)."""
        position = index = self._last_line(slot) + 1
        column = self._entry_column(slot)
        while self.is_blank(index) or self.is_comment(index):
            if self.is_comment(index) and self.indent(index) > column:
                position = index + 1
            index += 1
        return position

    def _leading_start(self, slot: _Slot) -> int:
        """First of the comment lines right above the entry, no deeper than it."""
        index, column = self._entry_line(slot), self._entry_column(slot)
        while self.is_comment(index - 1) and self.indent(index - 1) <= column:
            index -= 1
        return index

    def _blank_above(self, line: int) -> bool:
        index = line - 1
        while self.is_comment(index):
            index -= 1
        return self.is_blank(index)

    def _flow_spans(self, node: Node) -> list[tuple[int, int]]:
        if isinstance(node, MappingNode):
            return [(k.start_mark.index, (k if _is_empty(v) else v).end_mark.index) for k, v in node.value]
        return [(item.start_mark.index, item.end_mark.index) for item in node.value]

    # ---- the file's layout

    def _layout(self, chain: list[Node]) -> _Layout:
        """The file's mapping step; the dash layout of the nearest enclosing block list (the one
        written into, when it is one), else the file's most common."""
        steps, seqs = self._conventions()
        step = steps.most_common(1)[0][0] if steps else 2
        for node in reversed(chain):
            local = self._seq_layout(node, chain)
            if local is not None:
                return _Layout(step, *local)
        if seqs:
            return _Layout(step, *seqs.most_common(1)[0][0])
        return _Layout(step, step, 2)

    def _seq_layout(self, node: Node, chain: list[Node]) -> tuple[int, int] | None:
        if not isinstance(node, SequenceNode) or node.flow_style or not node.value:
            return None
        index = chain.index(node)
        parent = chain[index - 1] if index else None
        if not isinstance(parent, MappingNode):
            return None
        slot = self._slot_of(parent, self._index_in(parent, node))
        return self._dash_layout(slot.key, node)

    def _dash_layout(self, key: ScalarNode, seq: SequenceNode) -> tuple[int, int] | None:
        item = self._slot_of(seq, len(seq.value) - 1)
        dash = self._dash(item)
        if self._line_at(dash) != item.value.start_mark.line or _is_empty(item.value):
            return None
        column = self._entry_column(item)
        return column - key.start_mark.column, item.value.start_mark.column - column

    def _conventions(self) -> tuple[Counter, Counter]:
        if self._votes is None:
            steps: Counter = Counter()
            seqs: Counter = Counter()
            stack = [self.root] if self.root is not None else []
            while stack:
                node = stack.pop()
                if isinstance(node, MappingNode):
                    for key, value in node.value:
                        if isinstance(value, MappingNode) and not value.flow_style and value.value:
                            steps[value.value[0][0].start_mark.column - key.start_mark.column] += 1
                        elif isinstance(value, SequenceNode) and not value.flow_style and value.value:
                            layout = self._dash_layout(key, value)
                            if layout is not None:
                                seqs[layout] += 1
                        stack.append(value)
                elif isinstance(node, SequenceNode):
                    stack.extend(node.value)
            steps.pop(0, None)
            self._votes = (steps, seqs)
        return self._votes

    # ---- rendering in the file's layout

    def _pair_lines(self, column: int, key: Any, value: Any, lay: _Layout) -> list[str]:
        comments = value.comments if isinstance(value, Commented) else ()
        head = " " * column + key_text(key) + ":"
        return [" " * column + c for c in comments] + self._value_lines(head, column, column + lay.step, _bare_top(value), lay)

    def _item_lines(self, dash: int, value: Any, lay: _Layout) -> list[str]:
        comments = [" " * dash + c for c in (value.comments if isinstance(value, Commented) else ())]
        value = _bare_top(value)
        content = dash + lay.gap
        if isinstance(value, Mapping) and value:
            lines = [line for k, v in value.items() for line in self._pair_lines(content, k, v, lay)]
        elif isinstance(value, list) and value:
            lines = [line for item in value for line in self._item_lines(content, item, lay)]
        else:
            return comments + self._value_lines(" " * dash + "-" + " " * max(0, lay.gap - 2), dash, content, value, lay)
        first = next(i for i, line in enumerate(lines) if not line.lstrip().startswith("#"))
        lines[first] = " " * dash + "-" + " " * (lay.gap - 1) + lines[first][content:]
        return comments + lines

    def _value_lines(self, head: str, column: int, child: int, value: Any, lay: _Layout) -> list[str]:
        """`head` (ending in `:` or `-`) and the value after it; nested entries at `child`."""
        if isinstance(value, Mapping) and value:
            return [head] + [line for k, v in value.items() for line in self._pair_lines(child, k, v, lay)]
        if isinstance(value, Flow):
            return [head + " " + str(inline(list(value), flow=True))]
        if isinstance(value, list) and value:
            lines = [head]
            for n, item in enumerate(value):
                lines += ([""] if n and isinstance(value, Spaced) else []) + self._item_lines(column + lay.offset, item, lay)
            return lines
        if isinstance(value, Mapping):
            return [head + " {}"]
        if isinstance(value, list):
            return [head + " []"]
        if value is None:
            return [head]       # `key:` — nothing written is null
        text = inline(value)
        if text is not None:
            return [head + " " + text]
        block = block_scalar(str(value), child, child - column)
        if block is None:
            return [head + " " + double_quoted(str(value))]
        return [head + " " + block[0]] + block[1:]

    # ---- splicing

    def _splice(self, start: int, end: int, text: str, rank: int = 0) -> None:
        """Insertions at one offset land in `rank` order, then in the order they were made."""
        self._edits.append((start, end, text, rank, len(self._edits)))

    def _insert_lines(self, at_line: int, lines: list[str], rank: int = 0) -> None:
        offset = self._line_start(at_line) if at_line < len(self.lines) else len(self.text)
        if offset == len(self.text) and not self.final_break:
            self._keep_last_block_value()
        self._splice(offset, offset, "".join(line + self.nl for line in lines), rank)

    def _delete_lines(self, first: int, end: int) -> None:
        self._splice(self._line_start(first), self._line_start(end) if end < len(self.lines) else len(self.text), "")

    def _open_block(self, node: Node) -> bool:
        """A `|` / `>` scalar (clip chomping) that ends a file with no final line break."""
        if self.final_break or not isinstance(node, ScalarNode) or node.style not in ("|", ">"):
            return False
        header = self.text[node.start_mark.index:self._line_start(node.start_mark.line + 1)].split("#")[0]
        return node.end_mark.index >= len(self.text) - len(self.nl) and not any(c in header for c in "+-")

    def _keep_last_block_value(self) -> None:
        """A `|` / `>` scalar ending a file that has no final line break has no final line break in
        its value; lines written after it would give it one, so its header says `-` (strip)."""
        node = self.root
        while isinstance(node, (MappingNode, SequenceNode)) and node.value and not node.flow_style:
            last = node.value[-1]
            node = last[1] if isinstance(last, tuple) else last
        if self._open_block(node):
            at = node.start_mark.index + 1
            while self.text[at:at + 1].isdigit():
                at += 1
            self._splice(at, at, "-")

    def _replace(self, slot: _Slot, value: Any, keep_style: bool, chain: list[Node], block: bool = False) -> None:
        """Write `value` where the slot's value is (`chain`: the nodes from the root to it); `block`:
        a collection value is written in block style even where a flow one was."""
        old, raw = slot.value, value
        value = _bare(value)
        quote = old.style if keep_style and isinstance(old, ScalarNode) and old.style in QUOTES else None
        if slot.parent.flow_style:
            self._splice(old.start_mark.index, old.end_mark.index,
                         inline(value, True, quote) or double_quoted(str(value)))
            return
        flow = isinstance(old, (MappingNode, SequenceNode)) and bool(old.flow_style) and not block
        one_line = isinstance(old, (MappingNode, SequenceNode)) and bool(old.flow_style) or \
            isinstance(old, ScalarNode) and old.style not in ("|", ">") and (
                _is_empty(old) or self._line_at(max(old.end_mark.index - 1, 0)) == old.start_mark.line)
        nested = isinstance(value, (Mapping, list)) and bool(value)
        text = inline(value, flow and nested, quote) if one_line and (flow or not nested) else None
        if text is not None:
            start = old.start_mark.index
            self._splice(start, old.end_mark.index, (" " if _is_empty(old) and self.text[start - 1:start] == ":"
                                                     else "") + text)
            return
        column = self._entry_column(slot)
        lay = self._layout(chain)
        child = column + lay.step if slot.key is not None else old.start_mark.column
        lines = None
        if keep_style and isinstance(old, ScalarNode) and old.style in ("|", ">") and isinstance(value, str):
            block_lines = block_scalar(value, child, child - column, old.style)
            lines = None if block_lines is None else [" " + block_lines[0]] + block_lines[1:]
        lines = lines or self._value_lines("", column, child, raw, lay)
        if one_line:   # the header (or nothing) where the value was; what follows it on its line stays
            self._splice(self._head(slot), old.end_mark.index, lines[0])
            self._insert_lines(self._line_at(max(old.end_mark.index - 1, self._head(slot))) + 1, lines[1:])
        else:
            self._splice(self._head(slot), self._content_end(old), self.nl.join(lines))

    def _add_entry(self, chain: list[Node], position: int, key: Any, value: Any, open_empty: bool,
                   separate: bool | None = None) -> None:
        """A new pair (`key` not None) or item at `position` of the collection `chain[-1]`."""
        node = chain[-1]
        entries = len(node.value)
        if node.flow_style:
            if not entries and open_empty and node is not self.root and len(chain) > 1:
                holder = self._slot_of(chain[-2], self._index_in(chain[-2], node))
                self._replace(holder, {key: value} if key is not None else [value], False, chain, block=True)
                return
            if isinstance(value, Commented):
                raise YamlEditError(f"cannot write a comment line above `{key}` inside a flow collection",
                                    self.path, node.start_mark.line + 1)
            item = inline(_bare(value), True) or double_quoted(str(value))
            if key is not None:
                item = f"{key_text(key, flow=True)}: {item}"
            spans = self._flow_spans(node)
            if not spans:
                self._splice(node.start_mark.index + 1, node.start_mark.index + 1, item)
                return
            separator = self.text[spans[0][1]:spans[1][0]] if len(spans) > 1 else ", "
            if any(c in separator for c in _LINE_ENDS):
                separator = ", "
            if position == 0:
                self._splice(spans[0][0], spans[0][0], item + separator)
            else:
                at = spans[position - 1][1]
                self._splice(at, at, separator + item)
            return
        lay = self._layout(chain)
        first = self._slot_of(node, 0)
        column = self._entry_column(first)
        if key is not None:
            lines = self._pair_lines(column, key, value, lay)
        else:
            lines = self._item_lines(column, value, lay)
        if separate is None:
            separate = bool(self._separated(node))
        if position >= entries:
            last = self._slot_of(node, entries - 1)
            at = self._after(last)
            lines = ([""] if separate else []) + lines
        else:
            at = self._leading_start(self._slot_of(node, position))
            lines = lines + ([""] if separate else [])
        self._insert_lines(at, lines, -column)   # an entry of an inner collection before one of an outer

    def _separated(self, node: Node) -> bool | None:
        if not isinstance(node, (MappingNode, SequenceNode)) or node.flow_style or len(node.value) < 2:
            return None
        gaps = [self._blank_above(self._entry_line(self._slot_of(node, i))) for i in range(1, len(node.value))]
        blank = sum(gaps)
        return blank * 2 > len(gaps) or (blank * 2 == len(gaps) and gaps[-1])


def _bare_top(value: Any) -> Any:
    return value.value if isinstance(value, Commented) else value


def _is_empty(node: Node) -> bool:
    """A value written as nothing at all (`key:`)."""
    return isinstance(node, ScalarNode) and node.tag.endswith(":null") and node.value == "" and not node.style


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag.endswith(":null") and node.style in (None, "")


def _show(path: Path) -> str:
    return ".".join(f"[{s}]" if isinstance(s, int) else "[" + ",".join(f"{k}={v}" for k, v in s.items()) + "]"
                    if isinstance(s, Mapping) else str(s) for s in path) or "(the document)"
