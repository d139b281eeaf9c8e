"""Prompt templates: Jinja2 files with a YAML front-matter header, validated when loaded.

A template file looks like::

    ---
    mode: listwise              # listwise | pointwise | generative
    description: Rank candidates by the user's history.
    required: [history, candidates]
    optional: [history_omitted]
    max_candidates: 20          # listwise / generative: how many candidates it may show
    labels: letters             # letters (A, B, ...) or numbers (1, 2, ...)
    knowledge: true             # the builder selects KG facts for each candidate
    ---
    The user watched:
    {% for h in history %}- {{ h.name }}
    {% endfor %}...

The shipped templates live in the top-level folder ``prompts/`` of the source tree, which the build packages as
``llmrec._shipped.prompts`` (package data, so they come with every install, editable or not). Users add their own by naming extra folders (``search_dirs``, ``--template-dir``); a file there wins over
a shipped template of the same name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from llmrec._shipped import shipped_folder
from llmrec.errors import ConfigError

log = logging.getLogger(__name__)

MODES = ("listwise", "pointwise", "generative")
LABEL_STYLES = ("letters", "numbers")
# Every label a style can offer, in order. Which of them are single tokens depends on the tokenizer.
LABEL_POOLS: dict[str, tuple[str, ...]] = {
    "letters": tuple(chr(c) for c in range(ord("A"), ord("Z") + 1)),
    "numbers": tuple(str(n) for n in range(1, 10)),
}
SUFFIX = ".jinja"

# Variables the PromptBuilder supplies, per mode. A template may use only these (declared in its header).
COMMON_VARIABLES = frozenset({"history", "history_omitted", "n_history", "show_ratings", "knowledge"})
MODE_VARIABLES: dict[str, frozenset[str]] = {
    "listwise": COMMON_VARIABLES | {"candidates", "labels", "n_candidates", "first_label", "last_label"},
    "pointwise": COMMON_VARIABLES | {"candidate", "yes_word", "no_word", "answer_words"},
    "generative": COMMON_VARIABLES
    | {"candidates", "labels", "n_candidates", "first_label", "last_label", "output_format"},
}
# Each mode's template must show the model its candidates.
MODE_MUST_USE: dict[str, frozenset[str]] = {
    "listwise": frozenset({"candidates", "history"}),
    "pointwise": frozenset({"candidate", "history"}),
    "generative": frozenset({"candidates", "history"}),
}
HEADER_KEYS = frozenset(
    {
        "mode",
        "description",
        "required",
        "optional",
        "max_candidates",
        "labels",
        "answer_words",
        "output_format",
        "output_separator",
        "system",
        "answer_cue",
        "knowledge",
    }
)
_HEADER_RE = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?\n?", re.DOTALL | re.MULTILINE)


class TemplateError(ConfigError):
    """A prompt template is missing, has a bad header, or uses variables it may not. The message names it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"prompt template {name!r}: {message}")
        self.template_name = name


@dataclass(frozen=True)
class PromptTemplate:
    """A validated prompt template.

    Attributes:
        name: file name without ``.jinja``.
        mode: ``listwise``, ``pointwise`` or ``generative``.
        body: the Jinja source after the header.
        path: where it was loaded from (None for templates built from strings).
        required / optional: variables the template declares (all are supplied by the builder for its mode).
        max_candidates: listwise/generative: most candidates one prompt may show.
        label_style: ``letters`` or ``numbers`` (listwise/generative).
        answer_words: pointwise: (positive, negative) answer words, e.g. ("Yes", "No").
        output_format: generative: the output format the model is asked for (shown to it as ``output_format``).
        output_separator: generative: the separator between labels in the expected output.
        system: optional system message (chat models get it as a system turn; base models as a first paragraph).
        answer_cue: text appended on its own line for base models (no chat template), e.g. ``Answer:``.
        knowledge: whether the builder should select KG facts for the candidates.
    """

    name: str
    mode: str
    body: str
    path: Path | None = None
    description: str = ""
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    max_candidates: int | None = None
    label_style: str = "letters"
    answer_words: tuple[str, str] = ("Yes", "No")
    output_format: str = ""
    output_separator: str = ">"
    system: str = ""
    answer_cue: str = "Answer:"
    knowledge: bool = False
    header: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_string(cls, name: str, source: str, path: Path | None = None) -> PromptTemplate:
        """Parse and validate a template from its full source (header + body).

        Raises:
            TemplateError: naming the template and what is wrong.
        """
        source = source.lstrip("\ufeff").replace("\r\n", "\n")  # a BOM or Windows line ends are not content
        header, body, header_lines = _split_header(name, source)
        return _validate(name, header, body, header_lines, path)

    def jinja(self) -> Any:
        """The compiled ``jinja2.Template`` (StrictUndefined, no autoescape)."""
        return _compile(self.name, self.body)

    def render(self, variables: Mapping[str, Any]) -> str:
        """Render the body with `variables`. Values are inserted as data and never re-parsed as template code.

        Raises:
            TemplateError: a variable the template needs is missing or rendering failed.
        """
        import jinja2

        missing = [v for v in self.required if v not in variables]
        if missing:
            raise TemplateError(self.name, f"missing required variable(s): {', '.join(missing)}")
        try:
            return self.jinja().render(**variables)
        except jinja2.UndefinedError as exc:
            raise TemplateError(self.name, f"undefined value while rendering: {exc}") from exc
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
            raise TemplateError(self.name, f"rendering failed: {type(exc).__name__}: {exc}") from exc


def _split_header(name: str, source: str) -> tuple[dict[str, Any], str, int]:
    import yaml  # type: ignore[import-untyped,unused-ignore]

    match = _HEADER_RE.match(source)
    if not match:
        raise TemplateError(name, "no YAML front-matter header (the file must start with a '---' line)")
    try:
        header = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise TemplateError(name, f"header does not parse as YAML: {exc}") from exc
    if not isinstance(header, dict):
        raise TemplateError(name, f"header must be a YAML mapping, got {type(header).__name__}")
    return header, source[match.end() :], match.group(0).count("\n")


def _str_list(name: str, header: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = header.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TemplateError(name, f"header field {key!r} must be a list of variable names, got {value!r}")
    return tuple(value)


def text_environment() -> Any:
    """A ``jinja2.Environment`` as llmrec renders text templates with (prompts, the adapter README): a missing
    value is an error (StrictUndefined), nothing is escaped, a line holding only a block tag leaves no trace
    (``trim_blocks``, ``lstrip_blocks``) and a trailing newline is kept."""
    import jinja2

    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@lru_cache(maxsize=256)
def _compile(name: str, body: str, line_offset: int = 0) -> Any:
    import jinja2

    try:
        return text_environment().from_string(body)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            name, f"Jinja syntax error on line {(exc.lineno or 0) + line_offset}: {exc.message}"
        ) from exc


def _validate(
    name: str, header: Mapping[str, Any], body: str, header_lines: int, path: Path | None
) -> PromptTemplate:
    """Check a parsed template, header first, then its body, then its mode's settings, and build it.

    Raises:
        TemplateError: at the first failed check, naming the template.
    """
    _check_header_fields(name, header)
    mode = _mode(name, header)
    required, optional = _declared_variables(name, header, mode)
    _compile(name, body, header_lines)  # syntax errors name the template and the file line
    _check_body_variables(name, body, mode, required, optional)
    max_candidates, label_style = _candidate_settings(name, header, mode)
    answer = _answer_settings(name, header, mode)
    output = _output_settings(name, header, mode)
    _check_text_fields(name, header)
    knowledge = _knowledge(name, header)
    return PromptTemplate(
        name=name,
        mode=mode,
        body=body,
        path=path,
        description=str(header.get("description", "")).strip(),
        required=required,
        optional=optional,
        max_candidates=max_candidates,
        label_style=label_style,
        system=str(header.get("system", "")).strip(),
        answer_cue=str(header.get("answer_cue", "Answer:")).strip(),
        knowledge=knowledge,
        header=dict(header),
        **answer,
        **output,
    )


def _check_header_fields(name: str, header: Mapping[str, Any]) -> None:
    """The header holds only known fields."""
    unknown_keys = sorted(set(header) - HEADER_KEYS)
    if unknown_keys:
        raise TemplateError(
            name,
            f"unknown header field(s) {', '.join(unknown_keys)}; allowed: {', '.join(sorted(HEADER_KEYS))}",
        )


def _mode(name: str, header: Mapping[str, Any]) -> str:
    """The header's ``mode``, one of `MODES`."""
    mode = header.get("mode")
    if mode not in MODES:
        raise TemplateError(name, f"header field 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    return str(mode)


def _declared_variables(name: str, header: Mapping[str, Any], mode: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``required`` and ``optional`` variables: lists of names the builder supplies in `mode`, none in both."""
    required = _str_list(name, header, "required")
    optional = _str_list(name, header, "optional")
    allowed = MODE_VARIABLES[mode]
    bad = sorted((set(required) | set(optional)) - allowed)
    if bad:
        raise TemplateError(
            name,
            f"declares unknown variable(s) {', '.join(bad)}; a {mode} template can use: {', '.join(sorted(allowed))}",
        )
    both = sorted(set(required) & set(optional))
    if both:
        raise TemplateError(name, f"variable(s) {', '.join(both)} declared both required and optional")
    return required, optional


def _check_body_variables(
    name: str, body: str, mode: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    """The body uses only declared variables, every required one, and what its mode must show (`MODE_MUST_USE`)."""
    import jinja2
    import jinja2.meta

    used = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(body))
    undeclared = sorted(used - set(required) - set(optional))
    if undeclared:
        raise TemplateError(
            name, f"uses variable(s) {', '.join(undeclared)} not declared in its header (required/optional)"
        )
    unused = sorted(set(required) - used)
    if unused:
        raise TemplateError(
            name, f"declares required variable(s) {', '.join(unused)} that the body never uses"
        )
    must = sorted(MODE_MUST_USE[mode] - used)
    if must:
        raise TemplateError(name, f"a {mode} template must use {', '.join(must)}")


def _candidate_settings(name: str, header: Mapping[str, Any], mode: str) -> tuple[int | None, str]:
    """``max_candidates`` and the label style: listwise and generative templates need a positive number of
    candidates that the style has labels for; pointwise ones (one candidate, no labels) take neither."""
    label_style = header.get("labels", "letters")
    max_candidates = header.get("max_candidates")
    if mode == "pointwise":
        if max_candidates is not None:
            raise TemplateError(name, "'max_candidates' only applies to listwise and generative templates")
        return None, "letters"
    if label_style not in LABEL_STYLES:
        raise TemplateError(
            name, f"header field 'labels' must be one of {LABEL_STYLES}, got {label_style!r}"
        )
    if not isinstance(max_candidates, int) or isinstance(max_candidates, bool) or max_candidates < 1:
        raise TemplateError(
            name, f"a {mode} template needs 'max_candidates' (a positive integer), got {max_candidates!r}"
        )
    available = len(LABEL_POOLS[label_style])
    if max_candidates > available:
        raise TemplateError(
            name,
            f"max_candidates {max_candidates} exceeds the {available} labels of style {label_style!r}",
        )
    return max_candidates, str(label_style)


def _answer_settings(name: str, header: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """A pointwise template's ``answer_words`` (two different words, default Yes/No); no other mode takes them."""
    if mode != "pointwise":
        if "answer_words" in header:
            raise TemplateError(name, "'answer_words' only applies to pointwise templates")
        return {}
    words = header.get("answer_words", ["Yes", "No"])
    if (
        not isinstance(words, list)
        or len(words) != 2
        or not all(isinstance(w, str) and w.strip() == w and w for w in words)
        or words[0] == words[1]
    ):
        raise TemplateError(
            name,
            f"'answer_words' must be two different words without spaces (positive, negative), got {words!r}",
        )
    return {"answer_words": (words[0], words[1])}


def _output_settings(name: str, header: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """A generative template's ``output_format`` (required) and ``output_separator`` (default ``>``); no other
    mode takes them."""
    if mode != "generative":
        if "output_format" in header or "output_separator" in header:
            raise TemplateError(name, "'output_format' / 'output_separator' only apply to generative templates")
        return {}
    fmt = header.get("output_format")
    if not isinstance(fmt, str) or not fmt.strip():
        raise TemplateError(
            name, "a generative template needs 'output_format' (a string describing the output)"
        )
    sep = header.get("output_separator", ">")
    if not isinstance(sep, str) or not sep.strip():
        raise TemplateError(name, f"'output_separator' must be a non-blank string, got {sep!r}")
    return {"output_format": fmt.strip(), "output_separator": sep.strip()}


def _check_text_fields(name: str, header: Mapping[str, Any]) -> None:
    """``description``, ``system`` and ``answer_cue`` are strings where given."""
    for key in ("description", "system", "answer_cue"):
        if key in header and not isinstance(header[key], str):
            raise TemplateError(name, f"header field {key!r} must be a string, got {header[key]!r}")


def _knowledge(name: str, header: Mapping[str, Any]) -> bool:
    """The header's ``knowledge`` flag (default false)."""
    knowledge = header.get("knowledge", False)
    if not isinstance(knowledge, bool):
        raise TemplateError(name, f"header field 'knowledge' must be true or false, got {knowledge!r}")
    return knowledge


def builtin_template_dir() -> Path:
    """The folder of the shipped templates: the data package ``llmrec._shipped.prompts`` (``prompts/`` in a
    checkout), found through the import system."""
    folder = shipped_folder("prompts")
    if not any(folder.glob(f"*{SUFFIX}")):
        raise ConfigError(f"the shipped prompt templates are missing from {folder} (a broken install?)")
    return folder


def _search_path(search_dirs: Iterable[str | Path]) -> list[Path]:
    dirs = []
    for d in search_dirs:
        folder = Path(d).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"template search folder {str(folder)!r} does not exist or is not a folder")
        dirs.append(folder)
    return [*dirs, builtin_template_dir()]


def list_templates(search_dirs: Sequence[str | Path] = ()) -> list[str]:
    """Names of every template found in `search_dirs` and the shipped folder, sorted."""
    names: set[str] = set()
    for folder in _search_path(search_dirs):
        names.update(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}") if p.is_file())
    return sorted(names)


def load_template(name: str | Path, search_dirs: Sequence[str | Path] = ()) -> PromptTemplate:
    """Load and validate a template by name (user folders first, then the shipped ones) or by file path.

    Example:
        >>> load_template("listwise_kg").mode
        'listwise'

    Raises:
        TemplateError: no such template (with the close names), or it fails validation.
    """
    as_path = Path(name)
    if as_path.suffix == SUFFIX and as_path.is_file():
        return _load_file(as_path)
    key = str(name)
    if "/" in key or "\\" in key or key.endswith(SUFFIX):
        raise TemplateError(key, f"no template file at {key!r}")
    for folder in _search_path(search_dirs):
        candidate = folder / f"{key}{SUFFIX}"
        if candidate.is_file():
            return _load_file(candidate)
    import difflib

    known = list_templates(search_dirs)
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise TemplateError(key, f"not found{hint} (known: {', '.join(known)})")


def _load_file(path: Path) -> PromptTemplate:
    name = path.name[: -len(SUFFIX)]
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(name, f"cannot read {path}: {exc}") from exc
    return PromptTemplate.from_string(name, source, path=path)
