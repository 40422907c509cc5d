"""What people make of the runs: ratings and votes, the leaderboard, history (find, delete, export, import) and reports.

May import everything below it (`core` … `quality`).
"""
