"""Hostile view files: YAML alias bombs and oversized files are refused cheaply, with file and line,
and reading, resolving and indexing cost grows with the file (checked by counting work, not by timing)."""
from __future__ import annotations

import tracemalloc

import pytest
from ruamel.yaml.comments import CommentedMap

from bot.errors import SemanticError, TranslationError
from bot.semantic import refs as refs_module
from bot.semantic.dependents import DependencyIndex
from bot.semantic.diff import diff_views
from bot.semantic.reader import MAX_FIELDS_PER_FILE, MAX_VIEW_FILE_BYTES, OmniYamlReader
from bot.semantic.refs import Resolver
from bot.semantic.editor import set_field_sql
from bot.yamledit import plain

PATH = "views/orders.view.yaml"


def billion_laughs(levels: int) -> str:
    """`levels` nested anchors, each aliased nine times by the next: 9**levels strings once expanded."""
    lines = ["table_name: orders", "lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines += ["dimensions:", "  status:", f"    meta: *a{levels - 1}"]
    return "\n".join(lines) + "\n"


def read(text: str):
    return OmniYamlReader().read(text, PATH)


def test_small_alias_bomb_is_refused_at_the_first_alias() -> None:
    with pytest.raises(SemanticError) as caught:
        read(billion_laughs(6))
    assert (caught.value.file, caught.value.line) == (PATH, 3)  # `lol1: &a1 [*a0, ...]`
    assert "alias" in caught.value.message and "*a0" in caught.value.message


def test_billion_laughs_is_refused_without_expanding() -> None:
    text = billion_laughs(9)
    assert len(text.encode()) < 700
    tracemalloc.start()
    try:
        with pytest.raises(SemanticError) as caught:
            read(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.line == 3
    assert peak < 5_000_000, f"reading a {len(text)}-byte file peaked at {peak} bytes"


def test_merge_key_alias_is_refused_with_its_line() -> None:
    text = ("table_name: orders\nbase: &base\n  label: Base\ndimensions:\n  status:\n"
            "    <<: *base\n    sql: ${TABLE}.status\n")
    with pytest.raises(SemanticError) as caught:
        read(text)
    assert (caught.value.file, caught.value.line) == (PATH, 6)


def test_anchor_without_alias_is_harmless() -> None:
    view = read("table_name: orders\ndimensions:\n  status: &s\n    label: Status\n")
    assert view.fields["status"].label == "Status"


def test_plain_refuses_shared_and_cyclic_containers() -> None:
    """The readers convert loaded view data with `seen` given, refusing as a SemanticError."""
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(SemanticError):
        plain(cyclic, {}, PATH, SemanticError)
    shared = [1, 2]
    with pytest.raises(SemanticError):
        plain(CommentedMap(a=shared, b=shared), {}, PATH, SemanticError)
    assert plain(CommentedMap(a=[1, 2], b=[1, 2]), {}) == {"a": [1, 2], "b": [1, 2]}


def test_writer_refuses_aliases() -> None:
    text = "table_name: orders\nx: &x [1]\ndimensions:\n  a:\n    sql: ${TABLE}.a\n    meta: *x\n"
    with pytest.raises(SemanticError) as caught:
        set_field_sql(text, PATH, "a", "${TABLE}.b")
    assert caught.value.line == 6


def test_oversized_file_is_refused_before_parsing() -> None:
    filler = "# padding\n" * (MAX_VIEW_FILE_BYTES // 10)
    text = "table_name: orders\ndimensions:\n  a: {}\n" + filler
    assert len(text.encode()) > MAX_VIEW_FILE_BYTES
    with pytest.raises(SemanticError) as caught:
        read(text)
    assert caught.value.file == PATH
    assert caught.value.line is not None and caught.value.line > 3
    assert "bytes" in caught.value.message


def test_too_many_fields_is_refused_at_the_first_field_past_the_bound() -> None:
    dims = "".join(f"  d{i}: {{}}\n" for i in range(MAX_FIELDS_PER_FILE - 1))
    text = f"table_name: orders\ndimensions:\n{dims}measures:\n  n: {{}}\n  over: {{}}\n"
    with pytest.raises(SemanticError) as caught:
        read(text)
    assert caught.value.file == PATH
    assert caught.value.line == MAX_FIELDS_PER_FILE + 4  # the `over:` line
    assert f"{MAX_FIELDS_PER_FILE:,}" in caught.value.message


def test_fields_at_the_bound_are_read() -> None:
    dims = "".join(f"  d{i}: {{}}\n" for i in range(MAX_FIELDS_PER_FILE))
    assert len(read(f"table_name: orders\ndimensions:\n{dims}").fields) == MAX_FIELDS_PER_FILE


class _CountingFields(dict):
    """A view's field map that counts full scans, the cost a name look-up must not pay each time."""

    scans = 0

    def values(self):  # type: ignore[override]
        _CountingFields.scans += 1
        return super().values()


def _view_reading_raw_columns(n: int):
    dims = "".join(f"  d{i}:\n    sql: ${{raw_{i}}} + ${{TABLE}}.c\n" for i in range(n))
    view = read(f"table_name: orders\ndimensions:\n{dims}")
    counting = _CountingFields(view.fields)
    object.__setattr__(view, "fields", counting)
    return view


def test_undeclared_references_do_not_scan_the_view_once_each() -> None:
    view = _view_reading_raw_columns(200)
    _CountingFields.scans = 0
    DependencyIndex([view])
    for field in list(dict.values(view.fields)):
        Resolver(view, "duckdb").resolve(field)
    assert _CountingFields.scans <= 3, f"{_CountingFields.scans} scans of the view's fields for 200 look-ups"


def test_alias_lookup_still_works_after_indexing() -> None:
    view = read("table_name: orders\ndimensions:\n  amount:\n    aliases: [Total]\n  Mixed: {}\n")
    assert view.field_named("total").name == "amount"
    assert view.field_named("TOTAL").name == "amount"
    assert view.field_named("mixed").name == "Mixed"
    assert view.field_named("nope") is None


def _diamond(depth: int) -> str:
    """d_k = d_(k-1) + d_(k-1): resolving d_depth reaches d_0 by 2**depth paths."""
    dims = ["  d0:\n    sql: ${TABLE}.x\n"]
    dims += [f"  d{k}:\n    sql: ${{d{k - 1}}} + ${{d{k - 1}}}\n" for k in range(1, depth + 1)]
    return "table_name: orders\ndimensions:\n" + "".join(dims)


def test_resolving_shared_references_parses_each_field_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = refs_module.parse_field_sql

    def counting(sql: str, dialect: str):
        calls.append(sql)
        return real(sql, dialect)

    monkeypatch.setattr(refs_module, "parse_field_sql", counting)
    view = read(_diamond(8))
    Resolver(view, "duckdb").resolve(view.fields["d8"])
    assert len(calls) == 9


def test_expansion_past_the_bound_is_refused_with_the_field() -> None:
    view = read(_diamond(40))
    with pytest.raises(TranslationError) as caught:
        Resolver(view, "duckdb").resolve(view.fields["d40"])
    assert caught.value.file == PATH
    assert "expands" in caught.value.message


def test_diff_of_many_fields_parses_each_sql_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.semantic import diff as diff_module
    calls = []
    real = diff_module.parse_field_sql
    monkeypatch.setattr(diff_module, "parse_field_sql", lambda sql, d: calls.append(sql) or real(sql, d))
    n = 300
    old = read("table_name: orders\ndimensions:\n" + "".join(f"  d{i}:\n    sql: ${{TABLE}}.c{i}\n" for i in range(n)))
    new = read("table_name: orders\ndimensions:\n" + "".join(f"  d{i}:\n    sql: ${{TABLE}}.c{i} + 1\n" for i in range(n)))
    assert len(diff_views({"orders": old}, {"orders": new})) == n
    assert len(calls) <= 2 * n


def test_fields_written_as_null_are_not_taken_for_aliases() -> None:
    dims = "".join(f"  d{i}:\n" for i in range(50))
    assert len(read(f"table_name: orders\ndimensions:\n{dims}").fields) == 50


def test_a_file_of_tiny_entries_is_stopped_during_the_parse() -> None:
    from bot.semantic.reader import MAX_YAML_NODES
    values = "".join(f"      - v{i}\n" for i in range(MAX_YAML_NODES))
    text = f"table_name: orders\ndimensions:\n  status:\n    values:\n{values}"
    assert len(text.encode()) < MAX_VIEW_FILE_BYTES
    with pytest.raises(SemanticError) as caught:
        read(text)
    assert caught.value.file == PATH
    assert caught.value.line is not None and caught.value.line < MAX_YAML_NODES + 5
    assert f"{MAX_YAML_NODES:,} YAML values" in caught.value.message


def test_a_resolver_serves_many_fields_and_a_foreign_revision_of_one() -> None:
    view = read("table_name: orders\ndimensions:\n  a:\n    sql: ${TABLE}.x + 1\n  b:\n    sql: ${a} * 2\n")
    previous = read("table_name: orders\ndimensions:\n  a:\n    sql: ${TABLE}.x + 5\n").fields["a"]
    resolver = Resolver(view, "duckdb")
    assert resolver.resolve(view.fields["b"]).sql() == "(x + 1) * 2"
    assert resolver.resolve(previous).sql() == "x + 5"
    assert resolver.resolve(view.fields["a"]).sql() == "x + 1"


def test_a_chain_of_references_is_parsed_once_per_field_when_every_field_is_resolved(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.dbt.project import MemoryStore
    from bot.translate.push import FieldRequest, PushPlanner
    n = 40
    dims = "".join(f"  d{k}:\n    sql: ${{d{k - 1}}} + 1\n" for k in range(1, n))
    view = read(f"table_name: orders\ndimensions:\n  d0:\n    sql: ${{TABLE}}.x + 0\n{dims}")
    calls = []
    real = refs_module.parse_field_sql
    monkeypatch.setattr(refs_module, "parse_field_sql", lambda sql, d: calls.append(sql) or real(sql, d))
    store = MemoryStore({"dbt_project.yml": "name: p\nprofile: p\n", "models/orders.sql": "select x from t\n"})
    plan = PushPlanner(store).plan([FieldRequest(view, f) for f in view.fields.values()])
    assert len(plan.pushed) == n, plan.skipped[:2]
    assert len(calls) == n  # not n * (n + 1) / 2: one resolver serves the whole view


def test_the_dry_run_selection_reports_a_bomb_as_a_skipped_file(tmp_path) -> None:
    import git

    from bot.gitops import RevisionReader
    from bot.selection import select_changed
    repo = git.Repo.init(tmp_path)
    (tmp_path / "views").mkdir()
    (tmp_path / "README").write_text("semantic layer\n")
    repo.git.add("-A")
    repo.git.commit("-qm", "start", "--no-gpg-sign")
    before = repo.head.commit.hexsha
    (tmp_path / PATH).write_text(billion_laughs(9))
    (tmp_path / "views" / "ok.view.yaml").write_text("table_name: ok\ndimensions:\n  a:\n    sql: ${TABLE}.b + 1\n")
    repo.git.add("-A")
    repo.git.commit("-qm", "bomb", "--no-gpg-sign")
    tracemalloc.start()
    try:
        selection = select_changed(RevisionReader(tmp_path), repo.head.commit.hexsha, before, "duckdb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(s.file, s.line, s.code) for s in selection.skipped] == [(PATH, 3, "invalid-file")]
    assert [r.field.id for r in selection.requests] == ["ok.a"]
    assert peak < 20_000_000


def test_deep_nesting_is_refused_with_a_line() -> None:
    text = "table_name: orders\ndimensions:\n  a:\n    meta: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(SemanticError) as caught:
        read(text)
    assert (caught.value.file, caught.value.line) == (PATH, 4)
    assert "levels deep" in caught.value.message


def test_an_alias_bomb_in_layersync_yml_is_refused_without_expanding() -> None:
    from bot.config import parse_config
    from bot.errors import LayersyncError
    items = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    tracemalloc.start()
    try:
        with pytest.raises(LayersyncError) as caught:
            parse_config("branch_prefix: [" + ", ".join(items) + "]\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.file == "layersync.yml"
    assert "aliases expand" in caught.value.message      # refused as it is loaded (bot.yamlbounds)
    assert peak < 5_000_000
