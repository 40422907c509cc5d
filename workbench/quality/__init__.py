"""Quality beyond eyeballing: diffs, divergence from the reference, task packs with checks, and their statistics.

May import everything below it (`core` … `runs`); nothing here draws anything.
"""
