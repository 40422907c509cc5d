"""Quant Workbench: compare GGUF quantizations of one model on your own prompts and hardware.

The package is the whole product's logic; the Streamlit pages and the CLI are thin layers over it.
Nothing in here imports Streamlit.
"""

__version__ = "0.1.0"
