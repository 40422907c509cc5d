"""Quant Workbench: the Streamlit entry point. Wires the pages and the shared sidebar; no logic here."""

from pathlib import Path

import streamlit as st

from ui.shared import run_navigation, sidebar

# The tab icon is a file in the repo: an emoji or :material/…: icon here makes the browser fetch it from a CDN,
# and this is an offline tool (tests/test_browser_offline.py).
FAVICON = str(Path(__file__).resolve().parent / "ui" / "favicon.png")
st.set_page_config(page_title="Quant Workbench", page_icon=FAVICON, layout="wide")

PAGES = [
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:", default=True),
    st.Page("pages/sets.py", title="Prompt sets", icon=":material/list_alt:"),
    st.Page("pages/quality.py", title="Quality", icon=":material/troubleshoot:"),
    st.Page("pages/evals.py", title="Evals", icon=":material/fact_check:"),
    st.Page("pages/recommend.py", title="Recommend", icon=":material/verified:"),
    st.Page("pages/providers.py", title="Providers", icon=":material/monitoring:"),
    st.Page("pages/models.py", title="Models", icon=":material/deployed_code:"),
    st.Page("pages/hardware.py", title="Hardware", icon=":material/memory:"),
    st.Page("pages/ratings.py", title="Ratings", icon=":material/star:"),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
    st.Page("pages/glossary.py", title="What the numbers mean", icon=":material/help:"),
]

navigation = st.navigation(PAGES)
sidebar()
run_navigation(navigation)
