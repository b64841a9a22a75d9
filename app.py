"""amp_sync in the browser: the demo warehouse's models and what the sandbox holds."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from amp_sync import sandbox
from amp_sync.demo import DEFAULT_DEMO_PATH, demo_url, ensure_demo_warehouse
from amp_sync.errors import AmpSyncError
from amp_sync.templates import STARTER_MODELS
from amp_sync.warehouse import sample

SANDBOX_URL = os.environ.get("AMP_SYNC_SANDBOX_URL", f"http://127.0.0.1:{sandbox.DEFAULT_PORT}")

st.set_page_config(page_title="amp_sync", page_icon="🔁", layout="wide")
st.title("amp_sync")
st.caption("Warehouse SQL → Amplitude user properties, sending only what changed.")

if sandbox.is_running(SANDBOX_URL):
    st.info(f"Destination: the local Amplitude **sandbox** at {SANDBOX_URL} — nothing leaves this machine.")
else:
    st.warning(f"The Amplitude sandbox is not running at {SANDBOX_URL}. Start it with `amp-sync sandbox`.")


@st.cache_resource
def _demo_warehouse() -> str:
    return demo_url(ensure_demo_warehouse(DEFAULT_DEMO_PATH))


st.subheader("Demo warehouse")
titles = {m.title: m for m in STARTER_MODELS}
model = titles[st.selectbox("Starter model", list(titles), key="starter_model")]
st.write(model.description)
st.code(model.sql, language="sql")
try:
    result = sample(_demo_warehouse(), model.sql, limit=200)
except AmpSyncError as exc:
    st.error(str(exc))
else:
    st.caption(f"{result.row_count:,} rows in {result.seconds:.2f} s — first {len(result.rows)} shown")
    st.dataframe(pd.DataFrame(result.rows, columns=result.columns), hide_index=True)

st.subheader("Sandbox profiles")
try:
    profiles = sandbox.fetch(SANDBOX_URL, "profiles")
except OSError:
    st.caption("No sandbox to read from.")
else:
    st.caption(f"{len(profiles):,} profiles. Sync the demo into it with `amp-sync run examples/demo.toml`.")
    if profiles:
        frame = pd.json_normalize(profiles[:1000])
        st.dataframe(frame, hide_index=True)
