"""Streamlit helpers shared by the pages: the workspace, the sandbox, errors in words, progress."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from amp_sync import sandbox
from amp_sync.catalog import ConnectionCheck
from amp_sync.credentials import KeyCheck
from amp_sync.demo import DEFAULT_DEMO_PATH, demo_url, ensure_demo_warehouse
from amp_sync.errors import AmpSyncError, ConfigError
from amp_sync.health import Check
from amp_sync.home import adopt_legacy, home_dir
from amp_sync.runner import Progress, Report
from amp_sync.views import ProgressText
from amp_sync.workspace import Workspace

T = TypeVar("T")


# Page files, for st.page_link and st.switch_page (paths relative to app.py).
HOME = "app_pages/home.py"
DESTINATIONS = "app_pages/destinations.py"
WAREHOUSES = "app_pages/warehouses.py"
MODELS = "app_pages/models.py"
SYNCS = "app_pages/syncs.py"
PREVIEW = "app_pages/preview.py"
HISTORY = "app_pages/history.py"


# Session-state keys shared by two pages: the Syncs page asks, the Preview page previews.
PROMOTION = "promotion"  # (sync name, destination name): preview the sync at that destination
PROMOTION_ASKED = "promotion_asked"  # set until the Preview page has computed that preview


def ask_promotion(sync: str, destination: str) -> None:
    """Open the Preview page on `sync` sent to `destination`; nothing is saved until it runs."""
    st.session_state[PROMOTION] = (sync, destination)
    st.session_state[PROMOTION_ASKED] = True
    st.session_state["selected_sync"] = sync
    st.session_state.pop("preview_sync", None)  # the Preview page's picker follows selected_sync
    st.switch_page(PREVIEW)


def promotion(sync: str) -> str | None:
    """The destination `sync` is being promoted to, or None."""
    asked = st.session_state.get(PROMOTION)
    return asked[1] if asked and asked[0] == sync else None


PREVIEW_ASKED = "preview_asked"  # the sync whose preview the Preview page computes on arrival


def open_preview(name: str) -> None:
    """Go to the Preview page with `name` chosen and its preview already computed."""
    st.session_state["selected_sync"] = name
    st.session_state[PREVIEW_ASKED] = name
    st.session_state.pop("preview_sync", None)  # the Preview page's picker follows selected_sync
    st.switch_page(PREVIEW)


def end_promotion() -> None:
    """Forget the promotion (started, or cancelled)."""
    st.session_state.pop(PROMOTION, None)
    st.session_state.pop(PROMOTION_ASKED, None)


def home() -> Path:
    """AMP_SYNC_HOME (read on every call, like the other settings, so tests can move it)."""
    return home_dir()


def sandbox_url() -> str:
    """Where the local Amplitude sandbox listens (AMP_SYNC_SANDBOX_URL)."""
    return os.environ.get("AMP_SYNC_SANDBOX_URL", f"http://127.0.0.1:{sandbox.DEFAULT_PORT}")


def demo_path() -> Path:
    """The demo DuckDB warehouse file (AMP_SYNC_DEMO_PATH)."""
    return Path(os.environ.get("AMP_SYNC_DEMO_PATH", str(DEFAULT_DEMO_PATH)))


@st.cache_resource(show_spinner=False)
def _adopt(home_path: str, cwd: str) -> str | None:
    """Move an old ./.amp_sync into the home, once per home and folder the app runs in."""
    return adopt_legacy(Path(cwd))


def moved_state_note() -> str | None:
    """What became of an old ./.amp_sync when the app started, for the Home page; None if nothing."""
    return _adopt(str(home().absolute()), str(Path.cwd()))


@st.cache_resource(show_spinner="Preparing the demo warehouse…")
def _defaults(home_path: str, sandbox_url: str, demo_path: str) -> bool:
    ensure_demo_warehouse(Path(demo_path))
    Workspace(Path(home_path)).ensure_defaults(sandbox_url, demo_url(Path(demo_path)))
    return True


def secret_env() -> Mapping[str, str]:
    """Where `${VAR}` in saved keys and URLs is read: the environment, under st.secrets' text entries.

    A deployed app (Streamlit Community Cloud and the like) is given its keys in st.secrets.
    """
    env = dict(os.environ)
    # With no secrets.toml (or one that does not parse), st.secrets raises instead of being empty.
    with contextlib.suppress(FileNotFoundError):
        env.update({k: v for k, v in st.secrets.items() if isinstance(v, str)})
    return env


def workspace() -> Workspace:
    """The saved destinations, warehouses, models and syncs; first start adds the demo ones."""
    path = home()
    moved_state_note()  # before the defaults: a home that holds a workspace takes no old one
    _defaults(str(path.resolve()), sandbox_url(), str(demo_path().resolve()))
    return Workspace(path, env=secret_env())


def show_error(exc: AmpSyncError) -> None:
    """An amp_sync error in words, every problem on its own line; never a traceback."""
    if isinstance(exc, ConfigError) and len(exc.problems) > 1:
        st.error("Please fix these:\n" + "\n".join(f"- {p}" for p in exc.problems))
    else:
        st.error(str(exc))


def attempt(action: Callable[[], T]) -> T | None:
    """Run `action`; show an amp_sync error in words and return None instead of raising."""
    try:
        return action()
    except AmpSyncError as exc:
        show_error(exc)
        return None


def literal(text: str) -> str:
    """`text` for an element that renders Markdown: a `$` stays a dollar sign, not LaTeX."""
    return text.replace("$", "\\$")


def is_sandbox(endpoint: str | None) -> bool:
    """True when a destination points at the local sandbox."""
    return bool(endpoint) and endpoint.rstrip("/") == sandbox_url().rstrip("/")


def run_with_progress(work: Callable[[Callable[[Any], None]], T], render: Callable[[Any], None]) -> T:
    """Run `work(progress)` in a thread while this script redraws `render(latest)` every 0.2 s.

    Streamlit elements can be drawn only from the script's own thread, while amp_sync reports
    progress from its sender threads: the latest report is handed over through a variable.
    """
    latest: list[Any] = [None]
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work(lambda p: latest.__setitem__(0, p))
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the script's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="amp-sync-work", daemon=True)
    thread.start()
    while thread.is_alive():
        if latest[0] is not None:
            render(latest[0])
        time.sleep(0.2)
    if "error" in outcome:
        raise outcome["error"]
    if latest[0] is not None:
        render(latest[0])
    return outcome["value"]  # type: ignore[no-any-return]


def send_with_progress(send: Callable[[Callable[[Any], None]], Report]) -> Report | AmpSyncError:
    """Run or revert under a progress bar; a stop with a message comes back as the error."""
    bar = st.progress(0.0, text="Starting…")
    words = ProgressText()

    def render(p: Progress) -> None:
        fraction, text = words.update(p)
        bar.progress(fraction, text=text)

    try:
        return run_with_progress(send, render)
    except AmpSyncError as exc:
        return exc


def ask_delete(prefix: str, name: str | None) -> None:
    """Ask (or stop asking, with None) to confirm deleting the saved object `name`."""
    st.session_state[f"{prefix}_confirm_delete"] = name


def _delete(ws: Workspace, kind: type, name: str, prefix: str, on_deleted: Callable[[str], None]) -> None:
    st.session_state[f"{prefix}_confirm_delete"] = None
    try:
        ws.delete(kind, name)
    except AmpSyncError as exc:
        st.session_state[f"{prefix}_delete_error"] = (name, exc)
        return
    st.session_state[f"{prefix}_deleted"] = name
    on_deleted(name)


def confirm_delete(
    ws: Workspace, kind: type, name: str, label: str, prefix: str, on_deleted: Callable[[str], None]
) -> None:
    """Under a saved object: why its last delete was refused, or the Delete it / Keep it question.

    Widget and state keys start with `prefix`, so each page owns its own.
    """
    failed = st.session_state.get(f"{prefix}_delete_error")
    if failed and failed[0] == name:
        show_error(st.session_state.pop(f"{prefix}_delete_error")[1])
    if st.session_state.get(f"{prefix}_confirm_delete") != name:
        return
    st.warning(f"Delete the {label} “{name}”? This cannot be undone.")
    yes, no = st.columns(2)
    yes.button(
        "Delete it", key=f"{prefix}_delete_confirm", type="primary",
        on_click=_delete, args=(ws, kind, name, prefix, on_deleted),
    )  # fmt: skip
    no.button("Keep it", key=f"{prefix}_delete_cancel", on_click=ask_delete, args=(prefix, None))


def number_columns(names: Iterable[str]) -> dict[str, Any]:
    """Column settings that show whole numbers as the metrics do: 11,999, not 11999."""
    return {name: st.column_config.NumberColumn(format="localized") for name in names}


# Buttons that delete or revert: red, so they do not pass for everyday ones ("Keep it" stays plain).
DESTRUCTIVE_CSS = """
<style>
div[class*="st-key-"][class*="_delete"]:not([class*="_delete_cancel"]) button,
div[class*="st-key-history_revert_confirm"] button {
  color: #c62828; border-color: #c62828;
}
div[class*="st-key-"][class*="_delete_confirm"] button,
div[class*="st-key-history_revert_confirm"] button {
  background-color: #c62828; color: #ffffff;
}
</style>
"""


def style() -> None:
    """The app's few style rules, once per page run."""
    st.html(DESTRUCTIVE_CSS)


Verdict = TypeVar("Verdict", KeyCheck, ConnectionCheck)


def check_saved(
    ws: Workspace, kind: type, name: str, check: Callable[[Any], Verdict], verdict: type[Verdict], busy: str
) -> Verdict:
    """Check the saved `kind` named `name` and keep the verdict as its last check.

    An object whose secrets cannot be read now gets that reason as its (failed) verdict.
    """
    try:
        item = ws.get(kind, name)
    except AmpSyncError as exc:
        result = verdict(False, str(exc))
    else:
        with st.spinner(busy):
            result = check(item)
    ws.record_check(kind, name, Check(result.ok, result.message, time.time()))
    return result
