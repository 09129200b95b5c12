"""``snnconvert export``: write the latest SNN artifact as ONNX or NIR (``register(app)`` adds it)."""

from __future__ import annotations

from pathlib import Path

import typer

from snnconvert.errors import SnnConvertError

FORMATS = ("onnx", "nir")


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""

    @app.command("export")
    def export_cmd(
        input_path: Path | None = typer.Option(None, "--input", help="SNN artifact, or a run directory to take the "
                                               "latest from (default: the latest SNN artifact)."),
        fmt: str = typer.Option("onnx", "--format", help="onnx or nir."),
        mode: str = typer.Option("unrolled", "--mode", help="ONNX: unrolled (one graph over all time steps) or "
                                                            "step (one time step, state in and state out; rate/IF "
                                                            "and M-LIF)."),
        spikes: bool = typer.Option(False, "--spikes", help="ONNX: add every neuron layer's spike frames as outputs."),
        out: Path | None = typer.Option(None, "--out", help="Output file (default: next to the artifact, "
                                                            "<artifact>.onnx / .nir)."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
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
            import torch

            if fmt not in FORMATS:
                raise SnnConvertError(f"--format {fmt!r} is not possible: use {' or '.join(FORMATS)}")
            check_new_output_file(out, "--out", writable=False)
            path, q, snn = _load_input(input_path, ("snn",), None)
            if snn is None:
                raise SnnConvertError(f"{path.name} is a quantized artifact; convert it first (snnconvert to-snn)")
            target = out or path.with_suffix(f".{fmt}")
            check_new_output_file(target, "--out", path, writable=False)
            spec = q.info.input_spec
            if fmt == "onnx":
                from snnconvert.export.onnx import export_onnx

                result = export_onnx(snn, target, mode=mode, example=torch.zeros(spec.example_shape(1)),
                                     spikes=spikes)
                info = {"path": str(result.path), "format": "onnx", "mode": result.mode, "coding": result.coding,
                        "steps": result.steps, "inputs": result.inputs, "outputs": result.outputs,
                        "nodes": result.nodes}
                if result.mode == "step":  # what a runtime needs to start the state
                    info["initial_state"] = {name: {"shape": shape, "value": value}
                                             for name, (shape, value) in result.initial_state.items()}
            else:
                from snnconvert.export.nir import export_nir

                nir_result = export_nir(snn, target, spec.example_shape(1)[1:])
                info = {"path": str(nir_result.path), "format": "nir", "coding": nir_result.coding,
                        "nodes": nir_result.nodes, "edges": [list(e) for e in nir_result.edges]}
            if as_json:
                _emit_json(info)
                return
            what = f"{info['nodes']} nodes" if fmt == "onnx" else f"{len(info['nodes'])} NIR nodes"
            console.print(f"wrote {safe_text(info['path'])} ({fmt}, {safe_text(snn.coding)}, {what})", highlight=False)

        _guard(body)
