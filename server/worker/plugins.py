"""Dask worker plug-ins made on first use.

``Client.register_plugin`` needs a ``distributed.WorkerPlugin``; subclassing it where a
module is defined would import distributed with the module (its import sets up its own
loggers), so a module that only describes a plug-in keeps its behaviour in a plain class
and gets the plug-in class from :func:`plugin_class` when one is first needed. The class
is put in the module's namespace under its name, and the module's ``__getattr__``
(:func:`module_getattr`) finds it there, as pickle looks it up on a worker.
"""

from __future__ import annotations

import functools
import sys

__all__ = ["plugin_class", "module_getattr"]


@functools.cache
def plugin_class(module: str, name: str, behaviour: type) -> type:
    """``name``: ``behaviour`` as a ``distributed.WorkerPlugin``, in ``module``."""
    from distributed import WorkerPlugin

    cls = type(name, (behaviour, WorkerPlugin),
               {"__module__": module, "__doc__": behaviour.__doc__})
    setattr(sys.modules[module], name, cls)
    return cls


def module_getattr(module: str, plugins: dict[str, type]):
    """A module ``__getattr__`` that makes the plug-in classes ``plugins`` (name ->
    behaviour) on first use."""
    def __getattr__(name: str):
        if name in plugins:
            return plugin_class(module, name, plugins[name])
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__
