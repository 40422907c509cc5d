"""Remote endpoints on the Compare page: add an OpenAI-compatible or llama.cpp server as a contestant.

The API key lives only in this browser session's memory (st.session_state): it is never written
to the database, logs or reports. Keys can also come from an environment variable by name.
"""

from __future__ import annotations

import streamlit as st

from workbench.core.escaping import md_escape
from workbench.runs.contestants import API_LLAMACPP, API_OPENAI, RemoteEndpoint
from workbench.runs.remote import contestant_for

# the APIs a RemoteEndpoint speaks, as the picker names them
API_NAMES = {API_OPENAI: "OpenAI chat completions", API_LLAMACPP: "llama.cpp /completion"}


def endpoints() -> list[RemoteEndpoint]:
    return st.session_state.setdefault("endpoints", [])


def endpoint_editor() -> None:
    """An expander to add and remove endpoints; they join the comparison beside the local files."""
    eps = endpoints()
    with st.expander(f"Remote endpoints ({len(eps)})" if eps else "Remote endpoints (optional)"):
        st.caption("Compare a served model (llama.cpp's llama-server, vLLM, Ollama, any OpenAI-compatible API) with "
                   "the local files. Its speed is measured on this side of the network and labelled so.")
        c1, c2, c3 = st.columns([3, 2, 2])
        url = c1.text_input("Base URL", placeholder="http://127.0.0.1:8080/v1")
        model = c2.text_input("Model name", placeholder="as the server names it")
        label = c3.text_input("Label", placeholder="e.g. provider X")
        c4, c5, c6 = st.columns([2, 2, 2])
        api = c4.selectbox("API", list(API_NAMES), format_func=API_NAMES.__getitem__)
        key = c5.text_input("API key (kept in this session only)", type="password")
        key_env = c6.text_input("…or read the key from env variable", placeholder="e.g. PROVIDER_API_KEY")
        if st.button("Add endpoint", disabled=not url.strip()):
            try:
                ep = RemoteEndpoint(base_url=url.strip(), model=model.strip(), label=label.strip(), api=api,
                                    api_key_env=key_env.strip() or None, api_key=key or None)
                if any(e.label == ep.label for e in eps):
                    raise ValueError(f"an endpoint labelled {ep.label!r} is already in the list")
                eps.append(ep)
                st.rerun()
            except ValueError as exc:
                st.error(md_escape(exc))
        for i, ep in enumerate(list(eps)):
            d1, d2 = st.columns([6, 1])
            d1.caption(f"**{md_escape(ep.label)}** · {md_escape(ep.display_url)} · model {md_escape(ep.model or '(server default)')} · {md_escape(ep.api)}"
                       f"{' · key set' if ep.resolved_key() else ''}")
            if d2.button("Remove", key=f"remove-endpoint-{i}"):
                eps.pop(i)
                st.rerun()


def endpoint_contestants() -> list:
    return [contestant_for(ep) for ep in endpoints()]
