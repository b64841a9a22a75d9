"""amp_sync in the browser: warehouse SQL to Amplitude user properties, only what changed."""

from __future__ import annotations

import streamlit as st

import ui

st.set_page_config(page_title="amp_sync", page_icon=":material/sync:", layout="wide")

pages = {
    "": [st.Page(ui.HOME, title="Home", icon=":material/home:", default=True)],
    "Connect": [
        st.Page(ui.DESTINATIONS, title="Destinations", icon=":material/target:"),
        st.Page(ui.WAREHOUSES, title="Warehouses", icon=":material/database:"),
    ],
    "Build": [
        st.Page(ui.MODELS, title="Models", icon=":material/code:"),
        st.Page(ui.SYNCS, title="Syncs", icon=":material/sync_alt:"),
    ],
    "Send": [
        st.Page(ui.PREVIEW, title="Preview", icon=":material/preview:"),
        st.Page(ui.HISTORY, title="History", icon=":material/history:"),
    ],
}
ui.style()
st.navigation(pages).run()
