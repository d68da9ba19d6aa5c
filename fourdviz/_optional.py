"""Import an optional back end, or explain which extra installs it.

``fourdviz`` itself needs only numpy; each back end (matplotlib, plotly + ipywidgets, polyscope,
open3d, scikit-learn) is imported when first used, through :func:`require`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {
    "matplotlib": ("matplotlib", "viz"),
    "plotly": ("plotly", "viz"),
    "ipywidgets": ("ipywidgets", "viz"),
    "anywidget": ("anywidget", "viz"),
    "polyscope": ("polyscope", "viz"),
    "sklearn": ("scikit-learn", "viz"),
    "open3d": ("open3d-cpu", "open3d"),
    "umap": ("umap-learn", None),
}
"""Top-level module name → (pip distribution, ``fourdcontrast`` extra that provides it)."""


class MissingBackendError(ImportError):
    """An optional dependency of a ``fourdviz`` back end is not installed."""


def install_hint(module: str) -> str:
    """The pip command that installs the distribution providing top-level ``module``."""
    dist, extra = EXTRAS.get(module.split(".")[0], (module.split(".")[0], None))
    if extra is None:
        return f"pip install {dist}"
    return f"pip install 'fourdcontrast[{extra}]'  (or: pip install {dist})"


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingBackendError` naming the extra to install.

    Args:
        module: dotted module name, e.g. ``"plotly.graph_objects"``.
        feature: what needs it, for the message, e.g. ``"the interactive explorer"``.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        missing = (exc.name or root).split(".")[0]
        if missing != root and missing not in EXTRAS:
            raise  # the package is there but one of its own dependencies is broken: show that error
        root = missing
        raise MissingBackendError(
            f"{feature} needs the optional package '{root}', which is not installed: {install_hint(root)}"
        ) from exc


def available(module: str) -> bool:
    """True when ``module`` can be imported (without raising)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
