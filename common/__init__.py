"""Small helpers shared by ``online``, ``models`` and ``stream``: standard library only.

``online`` and ``models`` may not import each other (``tests/test_layering.py``); what
both need lives here, and this package imports nothing of ours and nothing outside
the standard library.
"""
