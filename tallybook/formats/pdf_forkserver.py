"""Imported only by the fork server of batch rendering (`pdf_documents.render_many`), before
it forks any worker: the caller's main module is imported and the renderer set up and warmed
here once, so every worker forked from the server starts ready to render instead of importing
the caller's script, loading fonts and templates and compiling stylesheets itself.

The server is single-threaded and forks its workers: what it loads is shared by them (and
WeasyPrint's font files are removed once, when the server exits). Nothing here may stop the
server: what fails is left to each worker, as it would be without this module.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from multiprocessing import process, spawn

from tallybook.formats import pdf_documents

_log = logging.getLogger(__name__)


def _import_main(setting: str) -> None:
    # What a worker does before its first job (multiprocessing.spawn.prepare), once here: a
    # worker whose __main__ already comes from this file does not import it again.
    data = json.loads(setting)
    sys.argv, sys.path = data["sys_argv"], data["sys_path"]
    process.current_process()._inheriting = True  # type: ignore[attr-defined]
    try:
        spawn.import_main_path(data["init_main_from_path"])
    finally:
        del process.current_process()._inheriting  # type: ignore[attr-defined]


try:
    if setting := os.environ.get(pdf_documents.FORK_SERVER_MAIN):
        _import_main(setting)
except Exception:  # the workers import it themselves, and say what fails
    _log.debug("the fork server could not import the main module", exc_info=True)

try:
    pdf_documents.warm_up()
except Exception:  # each worker sets up its renderer on its first document
    _log.warning("the fork server could not warm up the PDF renderer", exc_info=True)

# Everything loaded so far lives as long as the workers: out of the garbage collector's sight,
# their collections no longer go through it again and again (full collections took a few per
# cent of the time a document took), and its memory pages stay shared with the server.
gc.freeze()
