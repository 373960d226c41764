"""Read prompt template files, check their variables, hash and render them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.errors import PromptFileError, PromptVariableError
from llmops.lineage import content_hash
from llmops.prompts.config import PromptFile
from llmops.yamlfile import load_yaml_model

__all__ = [
    "PromptTemplate",
    "find_variables",
    "read_prompt_dir",
    "read_prompt_file",
    "template_text",
]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def find_variables(template: str | list[dict[str, str]]) -> set[str]:
    """The ``{{variables}}`` used anywhere in a text or chat template."""
    texts = [template] if isinstance(template, str) else [m["content"] for m in template]
    return {name for text in texts for name in _PLACEHOLDER.findall(text)}


def template_text(template: str | list[dict[str, str]]) -> str:
    """A readable text form of a template, one block per chat message (used by diff)."""
    if isinstance(template, str):
        return template if template.endswith("\n") else template + "\n"
    blocks = [f"[{m['role']}]\n{m['content'].rstrip()}\n" for m in template]
    return "".join(blocks)


@dataclass(frozen=True)
class PromptTemplate:
    """A validated prompt template, from a file or drafted in code."""

    name: str
    template: str | list[dict[str, str]]
    variables: tuple[str, ...]
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    model_parameters: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    @property
    def content_hash(self) -> str:
        """Hash of what a version holds: template and default model parameters."""
        return content_hash({"template": self.template, "model_parameters": self.model_parameters})

    def format(self, **values: Any) -> str | list[dict[str, str]]:
        """Fill the placeholders; every declared variable is required, no others are allowed."""
        missing = set(self.variables) - set(values)
        extra = set(values) - set(self.variables)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(sorted(missing))}")
            if extra:
                parts.append(f"unknown {', '.join(sorted(extra))}")
            raise PromptVariableError(
                f"prompt '{self.name}' takes variables {', '.join(self.variables) or '(none)'}: "
                + "; ".join(parts)
            )

        def fill(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)

        if isinstance(self.template, str):
            return fill(self.template)
        return [{"role": m["role"], "content": fill(m["content"])} for m in self.template]

    @classmethod
    def draft(
        cls,
        template: str | list[dict[str, str]],
        name: str = "draft",
        model_parameters: dict[str, Any] | None = None,
    ) -> PromptTemplate:
        """A template written in code (a notebook draft); variables are taken from it."""
        return cls(
            name=name,
            template=template,
            variables=tuple(sorted(find_variables(template))),
            model_parameters=dict(model_parameters or {}),
        )


def read_prompt_file(path: Path) -> PromptTemplate:
    """Read and validate one template file; errors name the file and the field."""
    spec = load_yaml_model(path, PromptFile, what="prompt template", error=PromptFileError)
    template: str | list[dict[str, str]] = (
        spec.template
        if isinstance(spec.template, str)
        else [m.model_dump() for m in spec.template]
    )
    used = find_variables(template)
    unknown = used - set(spec.variables)
    if unknown:
        raise PromptVariableError(
            f"{path}: the template uses {', '.join('{{' + v + '}}' for v in sorted(unknown))} "
            "but 'variables' does not declare it: add it to 'variables' or fix the placeholder"
        )
    unused = set(spec.variables) - used
    if unused:
        raise PromptVariableError(
            f"{path}: 'variables' declares {', '.join(sorted(unused))} but the template never "
            "uses it: remove it or add the placeholder"
        )
    try:
        content_hash(spec.model_parameters)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PromptFileError(
            f"{path}: field 'model_parameters' must hold JSON values (text, numbers, lists, "
            f"mappings): {exc}") from exc
    return PromptTemplate(
        name=spec.name or path.stem,
        template=template,
        variables=tuple(spec.variables),
        description=spec.description,
        tags=dict(spec.tags),
        model_parameters=dict(spec.model_parameters),
        source=str(path),
    )


def read_prompt_dir(folder: Path) -> list[PromptTemplate]:
    """Read every ``*.yaml``/``*.yml`` template in ``folder``; all must be valid."""
    if not folder.is_dir():
        raise PromptFileError(f"prompt folder {folder} does not exist: create it or pass another")
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    templates = [read_prompt_file(p) for p in files]
    seen: dict[str, str | None] = {}
    for t in templates:
        if t.name in seen:
            raise PromptFileError(
                f"{t.source}: prompt name '{t.name}' is also used by {seen[t.name]}: rename one"
            )
        seen[t.name] = t.source
    return templates
