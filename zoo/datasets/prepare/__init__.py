"""Turn official dataset downloads into the layouts the loaders read.

One module per dataset, each with a ``prepare_<dataset>(...)`` function that the thin CLIs in
``tools/data/`` call. Everything here raises :class:`zoo.utils.errors.DataError` with one line
naming the missing folder/file and the expected tree. See docs/data.md.

This package is plain Python (no dataset registration), so importing it has no side effects.
"""
