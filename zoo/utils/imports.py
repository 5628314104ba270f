"""Import every module of a package so that its components register themselves."""
import importlib
import pkgutil


def import_submodules(package_name, package_path):
    for info in sorted(pkgutil.iter_modules(package_path), key=lambda m: m.name):
        if info.name.startswith('_'):
            continue
        mod = importlib.import_module(f'{package_name}.{info.name}')
        if info.ispkg:
            import_submodules(mod.__name__, mod.__path__)
