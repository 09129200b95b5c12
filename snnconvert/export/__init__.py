"""Export of converted networks: ONNX (:func:`~snnconvert.export.onnx.export_onnx`) and NIR
(:func:`~snnconvert.export.nir.export_nir`)."""
