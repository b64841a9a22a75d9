"""amp_sync in the browser: warehouse SQL to Amplitude user properties, only what changed."""

from __future__ import annotations

import streamlit as st

import ui

st.set_page_config(page_title="amp_sync", page_icon="🔁", layout="wide")

pages = {
    "": [st.Page(ui.HOME, title="Home", icon="🏠", default=True)],
    "Connect": [
        st.Page(ui.DESTINATIONS, title="Destinations", icon="🎯"),
        st.Page(ui.WAREHOUSES, title="Warehouses", icon="🗄️"),
    ],
    "Build": [
        st.Page(ui.MODELS, title="Models", icon="📝"),
        st.Page(ui.SYNCS, title="Syncs", icon="🔀"),
    ],
    "Send": [
        st.Page(ui.PREVIEW, title="Preview", icon="🔍"),
        st.Page(ui.HISTORY, title="History", icon="📈"),
    ],
}
st.navigation(pages).run()
