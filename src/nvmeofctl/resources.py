"""One resolver for the files nvmeofctl ships beside its code: playbooks, templates, inventory,
and the JSON Schemas of its output.

In a source checkout playbooks, templates and inventory are the repository's top-level folders; in
an installed wheel they live under ``nvmeofctl/_data/``. The output schemas live inside the
package (``report/schemas/``), in a checkout and a wheel alike.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    """Return the folder ``name`` (``playbooks``, ``templates`` or ``inventory``)."""
    for candidate in (_PKG / "_data" / name, _PKG.parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"packaged folder {name!r} not found next to {_PKG}")


def playbooks_dir() -> Path:
    return data_dir("playbooks")


def templates_dir() -> Path:
    return data_dir("templates")


def output_schemas_dir() -> Path:
    """The JSON Schemas of the ``--output json`` documents (``report/schemas/*.schema.json``)."""
    return _PKG / "report" / "schemas"


def collections_dir() -> Path:
    return playbooks_dir() / "collections"


def module_utils_dir() -> Path:
    return collections_dir() / "ansible_collections" / "nvmeofctl" / "fabric" / "plugins" / "module_utils"


def plugin_utils_dir() -> Path:
    return module_utils_dir().parent / "plugin_utils"


MODULE_UTILS_PACKAGE = "nvmeofctl._module_utils"


def _module_utils_package():
    """The collection's module_utils folder as the package ``nvmeofctl._module_utils``.

    A plain package with ``submodule_search_locations`` (no Ansible, no collection loader), so
    the module_utils' relative imports (``from .fileio import ...``) resolve among themselves,
    from a source checkout and from a wheel (``nvmeofctl/_data/playbooks/...``) alike.
    """
    import importlib.machinery
    import importlib.util
    import sys

    pkg = sys.modules.get(MODULE_UTILS_PACKAGE)
    if pkg is not None:
        return pkg
    where = str(module_utils_dir())
    spec = importlib.machinery.ModuleSpec(MODULE_UTILS_PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [where]
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_UTILS_PACKAGE] = pkg
    return pkg


@cache
def load_module_utils(name: str):
    """The collection's ``module_utils/<name>.py``, imported from the module_utils package.

    The planner and health share the modules' own parsers and diff logic this way,
    so plan and apply cannot disagree.
    """
    import importlib

    _module_utils_package()
    return importlib.import_module(f"{MODULE_UTILS_PACKAGE}.{name}")


@cache
def load_plugin_utils(name: str):
    """The collection's controller-side ``plugin_utils/<name>.py`` (self-contained: it imports
    nothing from the collection), for instance ``host_files``: the renderer of the boot files'
    templates that the modules' action plugins use."""
    import importlib.util
    import sys

    qualified = f"nvmeofctl._plugin_utils_{name}"
    spec = importlib.util.spec_from_file_location(qualified, plugin_utils_dir() / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = mod
    spec.loader.exec_module(mod)
    return mod
