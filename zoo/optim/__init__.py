# Every module in this package registers its components on import.
from zoo.utils.imports import import_submodules as _import_submodules

_import_submodules(__name__, __path__)
