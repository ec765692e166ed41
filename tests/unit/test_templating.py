"""``CompiledTemplates``: environments built alike compile a template once between them,
and compile it again once its source changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader

from server.templating import CompiledTemplates


class CountingEnvironment(Environment):
    """Jinja's environment, counting the templates it compiles from source."""

    compiled = 0

    def compile(self, *args: Any, **kwargs: Any) -> Any:
        CountingEnvironment.compiled += 1
        return super().compile(*args, **kwargs)


def test_environments_sharing_the_cache_compile_a_template_once(tmp_path: Path) -> None:
    (tmp_path / "hello.html").write_text("Hello {{ name }}!")
    cache = CompiledTemplates()
    CountingEnvironment.compiled = 0

    first, second = (CountingEnvironment(loader=FileSystemLoader(tmp_path), bytecode_cache=cache) for _ in range(2))

    assert first.get_template("hello.html").render(name="Ada") == "Hello Ada!"
    assert second.get_template("hello.html").render(name="Bob") == "Hello Bob!"
    assert CountingEnvironment.compiled == 1


def test_a_changed_template_is_compiled_anew(tmp_path: Path) -> None:
    template = tmp_path / "hello.html"
    template.write_text("Hello {{ name }}!")
    cache = CompiledTemplates()
    CountingEnvironment.compiled = 0
    CountingEnvironment(loader=FileSystemLoader(tmp_path), bytecode_cache=cache).get_template("hello.html")

    template.write_text("Goodbye {{ name }}.")
    later = CountingEnvironment(loader=FileSystemLoader(tmp_path), bytecode_cache=cache)

    assert later.get_template("hello.html").render(name="Ada") == "Goodbye Ada."
    assert CountingEnvironment.compiled == 2
