"""Quality beyond eyeballing: diffs, divergence from the reference, task packs with checks, and their statistics.

May import everything below it (`core` … `runs`). Nothing here draws a page; one module renders: diff_html turns
diffs into escaped HTML fragments (and their CSS) that the app and the offline reports both show.
"""
