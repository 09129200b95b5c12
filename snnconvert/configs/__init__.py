"""The stages' configs as light, torch-free dataclasses: every command's flags, every recipe key
and the API's keywords come from their fields (help text, type, default in the field metadata).

* :class:`~snnconvert.configs.quantize.QuantizeConfig`: ``quantize``;
* each coding's config: ``to-snn`` (in its method package's ``config`` module);
* :class:`~snnconvert.finetune.config.FinetuneConfig` and each training method's config: ``finetune``;
* :class:`~snnconvert.configs.evaluate.EvaluateConfig`: ``evaluate``.
"""
