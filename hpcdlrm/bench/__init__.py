"""Benchmarks: ``python -m hpcdlrm.bench NAME [--json] [options]``.

Each prints human-readable figures, or with ``--json`` one JSON object per line with at least
``metric``, ``value`` and ``unit``. One module per benchmark, each with ``main(argv) -> int``.
"""
