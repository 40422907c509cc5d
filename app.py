"""Quant Workbench: the Streamlit entry point. Wires the pages and the shared sidebar; no logic here."""

import streamlit as st

from pages.shared import sidebar

st.set_page_config(page_title="Quant Workbench", page_icon="⚖️", layout="wide")

PAGES = [
    st.Page("pages/compare.py", title="Compare", icon="⚖️", default=True),
]

navigation = st.navigation(PAGES)
sidebar()
navigation.run()
