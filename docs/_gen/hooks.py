"""MkDocs hooks: pages generated at build time, so they never go stale.

* ``reference/cli.md``: every command of the Typer app (``snnconvert.cli.app:app``) with its
  help text and parameters, read from the click command Typer builds; ``to-snn``'s coding
  options come from the coding table, so a new coding's flags appear here too;
* ``benchmarks/results/<name>.md``: one page per ``bench/results/*.md`` (with the pictures
  whose names start like it), added to the nav under "Benchmarks" / "Raw results".

Nothing is written into ``docs/``: the pages exist only in the build (``mkdocs build``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

CLI_PAGE = "reference/cli.md"
RESULTS = "benchmarks/results"


def _repo(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _results(config: Any) -> Path:
    return _repo(config) / "bench" / "results"


# ---------------------------------------------------------------------------- nav


def on_config(config: Any) -> Any:
    """Add a "Raw results" section, one page per results file, to the nav's "Benchmarks"."""
    pages = [{_title(path): f"{RESULTS}/{path.stem}.md"} for path in sorted(_results(config).glob("*.md"))]
    for section in config["nav"] or []:
        if isinstance(section, dict) and isinstance(section.get("Benchmarks"), list) and pages:
            section["Benchmarks"].append({"Raw results": pages})
    return config


def _title(path: Path) -> str:
    return path.stem.replace("_", " ")


# ---------------------------------------------------------------------------- files


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, CLI_PAGE, content=cli_markdown()))
    folder = _results(config)
    for path in sorted(folder.glob("*.md")):
        files.append(File.generated(config, f"{RESULTS}/{path.stem}.md", content=result_page(path)))
    for path in sorted(folder.glob("*.png")):
        files.append(File.generated(config, f"{RESULTS}/{path.name}", abs_src_path=str(path)))
    return files


def result_page(path: Path) -> str:
    """A results file as a page: its title (or the file name), where it comes from, its text, its pictures."""
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("# "):
        title, _, body = text.partition("\n")
    else:
        title, body = f"# {_title(path)}", text
    siblings = sorted(p.name for p in path.parent.iterdir() if p.stem.startswith(path.stem) and p != path)
    note = f"Generated from `bench/results/{path.name}` when the documentation was built"
    note += f"; beside it: {', '.join(f'`{name}`' for name in siblings)}." if siblings else "."
    pictures = [f"![{name}]({name})" for name in siblings if name.endswith(".png")]
    return "\n\n".join([title, note, body.strip(), *pictures]) + "\n"


# ---------------------------------------------------------------------------- CLI reference


def cli_markdown() -> str:
    """The CLI reference, from the click command that Typer builds for the app."""
    import typer

    from snnconvert.cli.app import app

    root = typer.main.get_command(app)  # a click command (Typer may ship its own copy of click)
    ctx = root.context_class(root, info_name="snnconvert")
    out = ["# CLI reference", "",
           "Generated from the command-line app (`snnconvert.cli.app:app`) when the documentation was built: "
           "every command, argument and option below is what `snnconvert COMMAND --help` shows.", "",
           "## snnconvert", "", _help_markdown(root.help or ""), "", "Global options (before the command):", "",
           *_params_table(root, ctx), ""]
    commands = getattr(root, "commands", {})
    out += ["| command | what it does |", "|---|---|"]
    out += [f"| [`{name}`](#{name}) | {_cell(_first_line(cmd.help or ''))} |" for name, cmd in commands.items()]
    out.append("")
    for name, command in commands.items():
        sub = command.context_class(command, parent=ctx, info_name=name)
        out += [f"## {name}", "", "```text", f"snnconvert {name} {_usage(command)}", "```", "",
                _help_markdown(command.help or ""), "", *_params_table(command, sub), ""]
    return "\n".join(out + _coding_tables() + _method_tables())


def _usage(command: Any) -> str:
    pieces = ["[OPTIONS]"]
    for param in command.params:
        if param.param_type_name == "argument":
            name = (param.metavar or param.name).upper() + ("..." if param.nargs == -1 else "")
            pieces.append(name if param.required else f"[{name}]")
    return " ".join(pieces)


def _help_markdown(text: str) -> str:
    """A command's help as markdown: prose paragraphs, then its examples as one code block."""
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", _clean(text)) if p.strip()]
    prose, examples = [], []
    for paragraph in paragraphs:
        if paragraph.startswith("  ") and examples is not None and prose and prose[-1].startswith("Example"):
            examples.append(" ".join(line.strip() for line in paragraph.splitlines()))
        elif examples:
            prose.append(_escape(paragraph.replace("\n", " ")))
        else:
            prose.append(paragraph if paragraph.startswith("Example") else _escape(paragraph.replace("\n", " ")))
    if examples:
        at = next(i for i, p in enumerate(prose) if p.startswith("Example"))
        prose[at:at + 1] = [prose[at], "```text\n" + "\n".join(examples) + "\n```"]
    return "\n\n".join(prose)


def _coding_tables() -> list[str]:
    """Every coding's options with their types and defaults, from the coding table's configs."""
    import dataclasses

    from snnconvert.codings import codings
    from snnconvert.codings.registry import flag_name

    out = ["## Coding options with their defaults", "",
           "From the config dataclass of each registered coding (`snnconvert codings` prints the same). "
           "On the command line a field is `to-snn --FLAG VALUE` (or `--set KEY=VALUE`); in a recipe it is a key "
           "of `convert:`; in Python a keyword of `snnconvert.to_snn`. Fields marked *recipe/API only* have no flag.",
           ""]
    for name, coding in codings().items():
        out += [f"### {name}", "", _escape(coding.summary), "",
                "| option | type | default | help |", "|---|---|---|---|"]
        cli = {f.name for f in coding.options()}
        for f in dataclasses.fields(coding.config):
            option = f"`--{flag_name(f.name)}`" if f.name in cli else f"`{f.name}` (*recipe/API only*)"
            out.append(f"| {option} | {_cell(_type_name(f.type))} | {_cell(_field_default(f))} | "
                       f"{_cell(_escape(f.metadata.get('help', '')))} |")
        reports = ", ".join(f"`{r.name}`" for r in coding.reports)
        sweeps = ", ".join(f"`{k}`" for k in coding.sweep_keys)
        out += ["", f"Extra reports (`evaluate --report NAME`): {reports or 'none'}. "
                    f"Sweep keys (`evaluate --sweep KEY=...`): {sweeps or 'none'}.", ""]
    return out


def _method_tables() -> list[str]:
    """Every training method's options, from its config dataclass."""
    import dataclasses

    from snnconvert.finetune.methods import methods

    out = ["## Training method options with their defaults", "",
           "From the config dataclass of each registered training method (`snnconvert methods`). On the command "
           "line: `finetune --method NAME --method-option NAME.KEY=VALUE`; in a recipe: `methods:` of the "
           "`finetune:` section; in Python: `FinetuneConfig(methods={NAME: {KEY: VALUE}})`.", ""]
    for name, method in methods().items():
        out += [f"### {name}", "", _escape(method.summary), "", "| key | type | default | help |", "|---|---|---|---|"]
        for f in dataclasses.fields(method.config):
            out.append(f"| `{f.name}` | {_cell(_type_name(f.type))} | {_cell(_field_default(f))} | "
                       f"{_cell(_escape(f.metadata.get('help', '')))} |")
        out.append("")
    return out


def _type_name(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return f"`{text.replace('typing.', '')}`"


def _field_default(f: Any) -> str:
    import dataclasses

    if f.default is not dataclasses.MISSING:
        return f"`{f.default!r}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{f.default_factory()!r}`"
    return "required"


def _params_table(command: Any, ctx: Any) -> list[str]:
    panels: dict[str, list[str]] = {}
    for param in command.params:
        if getattr(param, "hidden", False) or param.name == "help":
            continue
        if param.param_type_name == "argument":
            names = f"`{(param.metavar or param.name).upper()}`"
            panel = "Arguments"
            text = getattr(param, "help", None) or ""
        else:
            names = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
            panel = getattr(param, "rich_help_panel", None) or "Options"
            text = param.help or ""
        kind = _kind(param, ctx)
        default = _default(param)
        panels.setdefault(panel, []).append(f"| {names} | {_cell(kind)} | {_cell(default)} | "
                                            f"{_cell(_escape(_clean(text)))} |")
    lines: list[str] = []
    for panel, rows in panels.items():
        if len(panels) > 1 or panel != "Options":
            lines += [f"**{panel}**", ""]
        lines += ["| name | value | default | help |", "|---|---|---|---|", *rows, ""]
    return lines


def _kind(param: Any, ctx: Any) -> str:
    """What the parameter takes: ``flag``, its metavar, or its type (click's and Typer's own click differ)."""
    if getattr(param, "is_flag", False):
        return "flag"
    if param.metavar:
        return str(param.metavar)
    for name in ("display_type", "make_metavar"):
        method = getattr(param, name, None)
        if callable(method):
            return str(method(ctx)).strip("<>")
    return ""


def _default(param: Any) -> str:
    if getattr(param, "required", False):
        return "required"
    value = param.default
    if value is None or value == () or value == [] or getattr(param, "show_default", True) is False:
        return ""
    if callable(value):
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"`{value}`"


def _first_line(text: str) -> str:
    return _escape(_clean(text).split("\n\n", 1)[0].replace("\n", " "))


def _escape(text: str) -> str:
    """Prose for markdown: ``<name>`` would be read as an HTML tag."""
    return text.replace("<", "&lt;")


def _clean(text: str) -> str:
    """Help text as markdown: rich markup dropped, typer's ``\\b`` no-rewrap marks removed."""
    text = re.sub(r"\[/?(?:bold|red|green|yellow|cyan|dim|italic|magenta|blue)\]", "", text)
    return "\n".join(line for line in text.replace("\b", "").splitlines()).strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()
