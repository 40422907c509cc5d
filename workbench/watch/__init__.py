"""Provider watch: is an API provider still serving what the user pays for? Watched endpoints, their scheduled
checks (fingerprint against a local ladder + a quality probe), the verdict in words, and a webhook on a change.

Sits between `decide` and `cli`: may import everything below it (`core` … `decide`); only `cli`, `ui` and the
pages import it. It owns providers.py (what is watched), checks.py (one check), change.py (has it changed?),
notify.py (the webhook) and schedule.py (what is due).
"""
