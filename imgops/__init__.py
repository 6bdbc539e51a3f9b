"""The `imgops` command.

Its sub-apps live in imgops.cli and are imported only when the command runs. The local stack starts its moto
server and workers with multiprocessing's spawn method, which runs the console script (`.venv/bin/imgops`) again in
each child as `__mp_main__`: importing every sub-app there cost each child ~0.4 s of CPU for code it never runs.
"""

from __future__ import annotations


def main() -> None:
    from imgops.cli import app
    from localaws import service_models

    service_models.install()  # botocore's models read parsed from the user's cache: every command makes clients
    app()
