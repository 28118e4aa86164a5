"""Every user-visible surface is documented: a new route or CLI option without docs fails here."""

from __future__ import annotations

import re
from pathlib import Path

from sdxl_breeder.cli import build_parser

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_cli_option_is_documented():
    text = (DOCS / "cli.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = [opt for action in parser._actions for opt in action.option_strings
               if opt.startswith("--") and opt != "--help" and opt not in text]
    for name, command in sub.choices.items():
        if f"sdxl-breeder {name}" not in text:
            missing.append(name)
        for action in command._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and opt != "--help" and opt not in text:
                    missing.append(f"{name} {opt}")
    assert not missing, f"undocumented in docs/cli.md: {missing}"


def test_every_rest_route_is_documented(tiny_model, tmp_path):
    from starlette.routing import Route

    from sdxl_breeder.web.app import create_app
    from sdxl_breeder.engine.loop import RenderLoop
    from sdxl_breeder.protocol import Limits
    from sdxl_breeder.model.renderer import Renderer
    from sdxl_breeder.web.service import Breeder
    from sdxl_breeder.store import Store

    renderer = Renderer(tiny_model)
    store = Store(tmp_path)
    app = create_app(Breeder(renderer, RenderLoop(renderer), store, Limits()))
    text = re.sub(r"\{(\w+)\}", "{id}", (DOCS / "rest.md").read_text())  # docs may name parameters, e.g. {i}
    missing = []
    for route in app.routes:
        if isinstance(route, Route):
            path = re.sub(r"\{(\w+)\}", lambda m: "{id}", route.path)
            if path not in text:
                missing.append(path)
    store.close()
    assert not missing, f"undocumented in docs/rest.md: {missing}"


def test_readme_starts_with_the_two_commands():
    readme = (DOCS.parent / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert "sdxl-breeder serve" in block
    assert "bash .ci/run" in block
    ci = (DOCS.parent / ".ci" / "run").read_text()
    assert "python -m pytest -q" in ci and "python -m pytest -q" in readme
