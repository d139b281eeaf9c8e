from __future__ import annotations

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


def test_builtin_dir_is_the_shipped_prompts_package_wherever_the_working_directory_is(tmp_path, monkeypatch):
    from importlib import resources

    (tmp_path / "prompts").mkdir()  # a stray prompts/ folder in the working directory is not the shipped one
    (tmp_path / "prompts" / "listwise_kg.jinja").write_text("not a template")
    monkeypatch.chdir(tmp_path)
    folder = builtin_template_dir()
    assert {p.name for p in folder.glob("*.jinja")} >= {f"{n}.jinja" for n in SHIPPED}
    assert folder == resources.files("llmrec._shipped.prompts") and not folder.is_relative_to(tmp_path)
    assert not folder.is_symlink() and not any(p.is_symlink() for p in folder.iterdir())
    assert load_template("listwise_kg").path == folder / "listwise_kg.jinja"


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


POINTWISE_OK = "---\nmode: pointwise\nrequired: [history, candidate]\n---\n{{ history }} {{ candidate }}\n"
GENERATIVE_OK = (
    "---\nmode: generative\nrequired: [history, candidates]\nmax_candidates: 5\noutput_format: 'A > B'\n---\n"
    "{{ history }}{{ candidates }}\n"
)


def _header(source: str, fields: str) -> str:
    """`source` with `fields` (YAML lines) added at the end of its header."""
    return source.replace("---\n", f"---\n{fields}\n", 1)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # the header's fields, its mode, the variables it declares
        (_header(LISTWISE_OK, "colour: blue"), "unknown header field(s) colour; allowed: answer_cue, answer_words, "
         "description, knowledge, labels, max_candidates, mode, optional, output_format, output_separator, "
         "required, system"),
        (LISTWISE_OK.replace("mode: listwise", "mode: 3"),
         "header field 'mode' must be one of listwise, pointwise, generative, got 3"),
        (LISTWISE_OK.replace("[history, candidates]", "[history, 3]"),
         "header field 'required' must be a list of variable names, got ['history', 3]"),
        (_header(LISTWISE_OK, "optional: [candidates]"), "variable(s) candidates declared both required and optional"),
        # the body's variables
        (LISTWISE_OK.replace("[history, candidates]", "[candidates]"),
         "uses variable(s) history not declared in its header (required/optional)"),
        (POINTWISE_OK.replace("[history, candidate]", "[history]").replace(" {{ candidate }}", ""),
         "a pointwise template must use candidate"),
        # the mode's settings
        (LISTWISE_OK.replace("max_candidates: 5", "max_candidates: true"),
         "a listwise template needs 'max_candidates' (a positive integer), got True"),
        (_header(LISTWISE_OK, "labels: roman"), "header field 'labels' must be one of ('letters', 'numbers'), got 'roman'"),
        (_header(POINTWISE_OK, "max_candidates: 3"), "'max_candidates' only applies to listwise and generative templates"),
        (_header(POINTWISE_OK, "answer_words: [Oui, Oui]"),
         "'answer_words' must be two different words without spaces (positive, negative), got ['Oui', 'Oui']"),
        (_header(GENERATIVE_OK, "answer_words: [Oui, Non]"), "'answer_words' only applies to pointwise templates"),
        (_header(GENERATIVE_OK, "output_separator: ' '"), "'output_separator' must be a non-blank string, got ' '"),
        (_header(POINTWISE_OK, "output_separator: ','"),
         "'output_format' / 'output_separator' only apply to generative templates"),
        (_header(POINTWISE_OK, "system: [a]"), "header field 'system' must be a string, got ['a']"),
        (_header(POINTWISE_OK, "knowledge: 'yes'"), "header field 'knowledge' must be true or false, got 'yes'"),
        # checks run in that order: the first failed one is named
        (_header(POINTWISE_OK, "knowledge: 'yes'\nmax_candidates: 3\nsystem: [a]"),
         "'max_candidates' only applies to listwise and generative templates"),
        (_header(LISTWISE_OK.replace("mode: listwise", "mode: x"), "colour: blue").replace("{{ c.name }}", "{{ z }}"),
         "unknown header field(s) colour"),
    ],
)
def test_each_check_names_the_template_and_the_problem(source, message):
    assert _bad(source).startswith(f"prompt template 'mytpl': {message}")


def test_every_mode_has_a_valid_minimal_template():
    pointwise, generative = (PromptTemplate.from_string("t", s) for s in (POINTWISE_OK, GENERATIVE_OK))
    assert (pointwise.max_candidates, pointwise.label_style, pointwise.answer_words) == (None, "letters", ("Yes", "No"))
    assert (generative.output_format, generative.output_separator, generative.knowledge) == ("A > B", ">", False)


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
