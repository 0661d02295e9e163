"""The worker's runtime, free of Faust: what ``stream.app`` wires into its agents.

``processor`` turns micro-batches into lists and dead letters, ``progress`` owns the
per-partition offsets, ``durability`` snapshots before commits, ``handoff`` moves a
partition's users between workers, ``replica`` learns the other partitions,
``encoder_handover`` hot-swaps encoder versions and ``metrics`` exports all of it.
"""
