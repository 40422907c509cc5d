"""Quant Workbench: the Streamlit entry point. Wires the pages and the shared sidebar; no logic here."""

import streamlit as st

from pages.shared import sidebar

st.set_page_config(page_title="Quant Workbench", page_icon="⚖️", layout="wide")

PAGES = [
    st.Page("pages/compare.py", title="Compare", icon="⚖️", default=True),
    st.Page("pages/quality.py", title="Quality", icon="🔬"),
    st.Page("pages/evals.py", title="Evals", icon="🧪"),
    st.Page("pages/models.py", title="Models", icon="📦"),
    st.Page("pages/hardware.py", title="Hardware", icon="🖥️"),
    st.Page("pages/ratings.py", title="Ratings", icon="⭐"),
    st.Page("pages/history.py", title="History", icon="🗂️"),
]

navigation = st.navigation(PAGES)
sidebar()
navigation.run()
