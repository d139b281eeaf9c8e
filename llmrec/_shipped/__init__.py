"""What llmrec ships besides code, as data packages the build maps onto the repository's top-level folders
(``pyproject.toml``, ``[tool.setuptools.package-dir]``):

==============================  ==========================================================================
``llmrec._shipped.prompts``     ``prompts/``: the prompt templates (``*.jinja``)
``llmrec._shipped.adapters``    ``adapters/``: the shipped adapters (``<name>/``), every adapter's recipe
                                (``<name>.yaml``) and the cards of retired adapters (``retired/<name>/``)
==============================  ==========================================================================

A wheel copies both folders into the package; an editable install (``pip install -e .``) maps the two packages
onto the checkout's folders. Either way `shipped_folder` finds them through the import system, never through the
working directory or a guess at where a checkout is.
"""

from __future__ import annotations

from importlib import import_module, resources
from pathlib import Path

from llmrec.errors import ConfigError

#: The shipped folders, by the name of their data package (and of their top-level folder in a checkout).
KINDS = ("prompts", "adapters")


def shipped_folder(kind: str) -> Path:
    """The installed folder of the shipped `kind` (``"prompts"`` or ``"adapters"``).

    Raises:
        ConfigError: an unknown kind, or the data package is not installed (an install made before these folders
            moved to the top level: reinstall), or it is not a plain folder (e.g. a zipped install).
    """
    if kind not in KINDS:
        raise ConfigError(f"shipped folder kind must be one of {', '.join(KINDS)}, got {kind!r}")
    package = f"{__name__}.{kind}"
    try:
        import_module(package)
    except ModuleNotFoundError:
        raise ConfigError(
            f"llmrec's shipped {kind} (package {package}, the folder {kind}/ of the source tree) are not installed: "
            "a broken install, or an editable install made before they moved out of llmrec/; reinstall llmrec "
            "(from a checkout: pip install -e .)"
        ) from None
    folder = resources.files(package)
    if not isinstance(folder, Path) or not folder.is_dir():
        raise ConfigError(f"llmrec's shipped {kind} are installed as {folder!r}, not a folder: install llmrec unzipped")
    return folder
