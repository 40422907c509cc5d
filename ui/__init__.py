"""Streamlit helpers the page scripts share: resources, sidebar, live views, drawing stored runs.

The only package besides pages/ that imports Streamlit; it holds no decisions (those live in
`workbench`). pages/ holds only the page scripts app.py registers.
"""
