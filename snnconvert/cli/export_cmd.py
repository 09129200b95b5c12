"""``snnconvert export``: write the latest SNN artifact as ONNX or NIR (``register(app)`` adds it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from snnconvert.cli.config_flags import ConfigCommand, config_flags, config_from_flags
from snnconvert.errors import SnnConvertError


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""

    def export_cmd(
        input_path: Path | None = typer.Option(None, "--input", help="SNN artifact, or a run directory to take the "
                                               "latest from (default: the latest SNN artifact)."),
        fmt: str = typer.Option("onnx", "--format", help="onnx or nir."),
        out: Path | None = typer.Option(None, "--out", help="Output file (default: next to the artifact, "
                                                            "<artifact>.onnx / .nir)."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
        given: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Export the spiking network for other runtimes: ONNX (onnxruntime, any ONNX tool) or NIR
        (neuromorphic toolchains; rate/IF and LIF-family networks).

        Examples:

          snnconvert export --format onnx

          snnconvert export --format nir --out lenet.nir
        """
        from snnconvert.cli.app import _emit_json, _guard, _load_input, check_new_output_file, console
        from snnconvert.manifest_check import safe_text

        def body() -> None:
            from snnconvert.export import EXPORT_FORMATS

            formats = EXPORT_FORMATS.items()
            if fmt not in formats:
                raise SnnConvertError(f"--format {fmt!r} is not possible: use {' or '.join(formats)}")
            check_new_output_file(out, "--out", writable=False)
            path, q, snn = _load_input(input_path, ("snn",), None)
            if snn is None:
                raise SnnConvertError(f"{path.name} is a quantized artifact; convert it first (snnconvert to-snn)")
            target = out or path.with_suffix(f".{fmt}")
            check_new_output_file(target, "--out", path, writable=False)
            request = config_from_flags(ExportRequest, config_flags(ExportRequest), (given or {}).get("export", {}),
                                        image_shape=tuple(q.info.input_spec.example_shape(1)[1:]))
            info = formats[fmt].write(snn, target, request)
            if as_json:
                _emit_json(info)
                return
            console.print(f"wrote {safe_text(info['path'])} ({fmt}, {safe_text(snn.coding)}, "
                          f"{formats[fmt].describe(info)})", highlight=False)
            for note in info.get("notes", []):
                console.print(f"  {safe_text(note)}", highlight=False)

        _guard(body)

    from snnconvert.export import ExportRequest

    app.command("export")(ConfigCommand(export_cmd, lambda: {"export": lambda: config_flags(ExportRequest)},
                                        {"export": "Export options"}))
