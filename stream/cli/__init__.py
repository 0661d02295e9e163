"""The ``streamrec`` command and what only commands use: process control, the demo,
offline evaluation, the encoder's train/eval commands, data files and the config reference.

Top layer of ``stream``: it may import everything, nothing imports it (``stream.__main__`` aside).
"""
