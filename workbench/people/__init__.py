"""What people make of the runs: ratings and votes, the leaderboard, history (find, delete, export, import), reports,
and the blind judging of a whole prompt set with its verdict (set_session, verdict) and its report (set_report).

May import everything below it (`core` … `quality`).
"""
