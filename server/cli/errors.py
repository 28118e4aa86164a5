"""Which errors the command line prints as one line (no traceback), and the exit status it gives them."""

from __future__ import annotations

import sys

EXIT_USAGE = 2


class CliError(Exception):
    """An error to print as one line (no traceback) before exiting with status 2."""


# Errors whose message is meant for the user: printed as one line. Looked up by module so that
# the CLI imports none of the heavy modules a command did not use.
USER_ERRORS = (
    ("sdxl_breeder.model.genome", "GenomeError"),
    ("sdxl_breeder.model.loading", "ModelLoadError"),
    ("sdxl_breeder.model.renderer", "RenderError"),
    ("sdxl_breeder.model.scene", "SceneError"),
    ("sdxl_breeder.walks.paths", "WalkError"),
    ("sdxl_breeder.web.serve", "ServeError"),
)


def is_user_error(e: BaseException) -> bool:
    if isinstance(e, CliError):
        return True
    for module, name in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(e, cls):
            return True
    return False
