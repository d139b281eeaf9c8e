from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.errors import ConfigError
from llmrec.prompts import (
    MODES,
    PromptTemplate,
    TemplateError,
    builtin_template_dir,
    list_templates,
    load_template,
)

SHIPPED = {
    "listwise_kg": "listwise",
    "listwise": "listwise",
    "pointwise_kg": "pointwise",
    "pointwise": "pointwise",
    "generative": "generative",
}

LISTWISE_OK = """---
mode: listwise
required: [history, candidates]
max_candidates: 5
---
{% for h in history %}{{ h.name }}
{% endfor %}{% for c in candidates %}{{ c.label }}. {{ c.name }}
{% endfor %}
"""


def test_shipped_templates_load_with_their_modes():
    names = list_templates()
    for name, mode in SHIPPED.items():
        assert name in names
        tpl = load_template(name)
        assert tpl.mode == mode and tpl.mode in MODES
        assert tpl.path is not None and tpl.path.parent == builtin_template_dir()
    assert load_template("listwise_kg").knowledge and not load_template("listwise").knowledge
    assert load_template("pointwise").answer_words == ("Yes", "No")
    gen = load_template("generative")
    assert gen.output_format and gen.output_separator == ">"
    assert all(load_template(n).max_candidates == 20 for n in ("listwise", "listwise_kg", "generative"))


def test_builtin_dir_is_the_package_templates_folder():
    import llmrec

    folder = builtin_template_dir()
    assert {p.name for p in folder.glob("*.jinja")} >= {f"{n}.jinja" for n in SHIPPED}
    assert folder == Path(llmrec.__file__).resolve().parent / "templates"
    assert not folder.is_symlink()


def _bad(source: str) -> str:
    with pytest.raises(TemplateError) as err:
        PromptTemplate.from_string("mytpl", source)
    message = str(err.value)
    assert "'mytpl'" in message
    assert isinstance(err.value, ConfigError)
    return message


def test_valid_inline_template():
    tpl = PromptTemplate.from_string("ok", LISTWISE_OK)
    assert tpl.mode == "listwise" and tpl.max_candidates == 5 and tpl.required == ("history", "candidates")


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("no header {{ history }}", "front-matter"),
        ("---\nmode: [listwise\n---\nbody", "YAML"),
        ("---\n- a\n- b\n---\nbody", "mapping"),
        (LISTWISE_OK.replace("mode: listwise", "mode: listwise\ncolour: blue"), "colour"),
        (LISTWISE_OK.replace("mode: listwise", "mode: pairwise"), "pairwise"),
        (LISTWISE_OK.replace("{{ c.name }}", "{{ c.name }} {{ secret }}"), "secret"),
        (
            LISTWISE_OK.replace("required: [history, candidates]", "required: [history, candidates, labels]"),
            "never",
        ),
        (
            LISTWISE_OK.replace(
                "required: [history, candidates]", "required: [history, candidates, user_age]"
            ),
            "user_age",
        ),
        (LISTWISE_OK.replace("max_candidates: 5", "max_candidates: 27"), "27"),
        (LISTWISE_OK.replace("max_candidates: 5", "max_candidates: 10\nlabels: numbers"), "numbers"),
        (LISTWISE_OK.replace("max_candidates: 5", "labels: letters"), "max_candidates"),
        (LISTWISE_OK.replace("{% endfor %}\n", "{% endfor %\n", 1), "line"),
        (LISTWISE_OK.replace("max_candidates: 5", "max_candidates: 5\nanswer_words: [Yes, No]"), "pointwise"),
    ],
)
def test_invalid_templates_fail_loudly_with_the_name(source, needle):
    assert needle in _bad(source)


def test_syntax_error_reports_the_file_line():
    source = LISTWISE_OK.replace("{{ c.label }}", "{{ c.label ")
    message = _bad(source)
    line = next(n for n, text in enumerate(source.splitlines(), 1) if "{{ c.label " in text)
    assert f"line {line}" in message


def test_pointwise_and_generative_header_rules():
    pointwise = "---\nmode: pointwise\nrequired: [history, candidate]\nanswer_words: {w}\n---\n{{{{ history }}}} {{{{ candidate }}}}"
    assert PromptTemplate.from_string("p", pointwise.format(w="[Oui, Non]")).answer_words == ("Oui", "Non")
    assert "answer_words" in _bad(pointwise.format(w="[Yes]"))
    assert "answer_words" in _bad(pointwise.format(w="[Yes, Yes]"))
    assert "answer_words" in _bad(pointwise.format(w="['Yes please', No]"))
    generative = "---\nmode: generative\nrequired: [history, candidates]\nmax_candidates: 5\n---\n{{ history }}{{ candidates }}"
    assert "output_format" in _bad(generative)
    # a pointwise template must show its candidate
    assert "candidate" in _bad("---\nmode: pointwise\nrequired: [history]\n---\n{{ history }}")


def test_strict_undefined_at_render():
    tpl = PromptTemplate.from_string("strict", LISTWISE_OK.replace("{{ c.name }}", "{{ c.missing_field }}"))
    with pytest.raises(TemplateError, match="'strict'"):
        tpl.render({"history": [], "candidates": [{"label": "A", "name": "x"}]})
    with pytest.raises(TemplateError, match="missing required"):
        tpl.render({"history": []})


def test_user_search_dirs_add_and_override(tmp_path):
    (tmp_path / "mine.jinja").write_text(LISTWISE_OK)
    (tmp_path / "listwise.jinja").write_text(LISTWISE_OK.replace("max_candidates: 5", "max_candidates: 3"))
    assert "mine" in list_templates([tmp_path])
    assert load_template("mine", [tmp_path]).path == tmp_path / "mine.jinja"
    assert load_template("listwise", [tmp_path]).max_candidates == 3  # the user's file wins
    assert load_template("listwise").max_candidates == 20
    assert load_template(tmp_path / "mine.jinja").name == "mine"  # by path


def test_unknown_name_suggests_close_ones(tmp_path):
    with pytest.raises(TemplateError, match="did you mean listwise"):
        load_template("listwize")
    with pytest.raises(ConfigError, match="does not exist"):
        load_template("listwise", [tmp_path / "nope"])
    bad = tmp_path / "broken.jinja"
    bad.write_text("---\nmode: listwise\n---\n{{ history }}")
    with pytest.raises(TemplateError, match="'broken'"):
        load_template("broken", [tmp_path])


def test_bom_and_windows_line_ends_are_accepted():
    tpl = PromptTemplate.from_string("crlf", "\ufeff" + LISTWISE_OK.replace("\n", "\r\n"))
    assert tpl.mode == "listwise" and "\r" not in tpl.body
