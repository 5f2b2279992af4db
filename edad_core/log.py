"""Logging for the workflow's entry points: libraries log with `logging.getLogger(__name__)`; each
workflow_scripts/*.py calls `setup_logging()` once, so every rule's log file shows time, level and module.

    from edad_core.log import setup_logging
    setup_logging()
"""

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT, force=True)
    logging.captureWarnings(True)  # library warnings (transformers, torch) land in the same log
