"""Graph passes: functions ``GraphModule -> GraphModule`` that copy their input by default."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, fx, nn

from snnconvert.graph.modules import BoundedReLU, ChannelAffine, PadWithValues
from snnconvert.graph.ops import Kind, activation_of, kind_of, module_of


def _maybe_copy(gm: fx.GraphModule, inplace: bool) -> fx.GraphModule:
    return gm if inplace else copy.deepcopy(gm)


def recompile_graph(gm: fx.GraphModule) -> fx.GraphModule:
    """Drop dead nodes and unused submodules, check the graph and regenerate its code (in place)."""
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm


def unique_name(gm: fx.GraphModule, base: str) -> str:
    base = base.replace(".", "_")
    name, i = base, 1
    while hasattr(gm, name):
        name, i = f"{base}_{i}", i + 1
    return name


def add_module_after(
    gm: fx.GraphModule, node: fx.Node, module: nn.Module, name: str, *, replace_uses: bool = True
) -> fx.Node:
    """Insert ``module`` applied to ``node``'s output; its users are redirected to the new node."""
    name = unique_name(gm, name)
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node,))
    if replace_uses:
        node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
    return new


# --------------------------------------------------------------------------- no-ops at inference

_ASSERTS = {torch._assert, getattr(torch, "_assert_async", torch._assert)}
_DROPOUTS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"}


def _arg(node: fx.Node, index: int, name: str, default: object) -> object:
    return node.kwargs.get(name, node.args[index] if len(node.args) > index else default)


def is_inference_identity(node: fx.Node) -> bool:
    """Stochastic depth or functional dropout that returns its input at inference (traced with
    ``training=False``, or drop probability 0)."""
    if node.op != "call_function" or not node.args or not isinstance(node.args[0], fx.Node):
        return False
    name = getattr(node.target, "__name__", "")
    if name == "stochastic_depth" and "torchvision" in getattr(node.target, "__module__", ""):
        return _arg(node, 3, "training", True) is False or _arg(node, 1, "p", 1.0) == 0
    if name in _DROPOUTS and getattr(node.target, "__module__", "") == "torch.nn.functional":
        return _arg(node, 2, "training", True) is False or _arg(node, 1, "p", 0.5) == 0
    return False


def remove_noops(gm: fx.GraphModule, *, inplace: bool = False) -> fx.GraphModule:
    """Remove what does nothing at inference, so it is not flagged as unsupported: stochastic
    depth and dropout in eval mode (identities), and ``torch._assert`` shape checks together with
    the shape arithmetic only they used."""
    gm = _maybe_copy(gm, inplace)
    changed = False
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in _ASSERTS:
            gm.graph.erase_node(node)
            changed = True
        elif is_inference_identity(node):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            changed = True
    return recompile_graph(gm) if changed else gm


# --------------------------------------------------------------------------- canonical form


def canonicalize(gm: fx.GraphModule, *, inplace: bool = False) -> fx.GraphModule:
    """Put the graph in the form every later pass expects.

    * identity nodes are removed (dropout modules stay: identities at inference that SNN
      training uses, see :mod:`snnconvert.simulate.dropout`);
    * every ReLU-type activation (functional or module, plain or clipped) becomes an
      ``nn.ReLU`` or :class:`BoundedReLU` module that is not in-place;
    * ``maxpool(x) -> relu`` is swapped into ``relu -> maxpool`` (exact: both are monotone),
      so quantized activations always precede max-pooling.
    """
    gm = _maybe_copy(gm, inplace)
    module_uses: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module_uses[node.target] = module_uses.get(node.target, 0) + 1
    for node in list(gm.graph.nodes):
        kind = kind_of(gm, node)
        if kind is Kind.REMOVABLE:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
        elif kind is Kind.ACTIVATION:
            act = activation_of(gm, node)
            module: nn.Module = nn.ReLU() if act.upper is None else BoundedReLU(act.upper)
            mod = module_of(gm, node)
            reusable = mod is not None and module_uses[node.target] == 1
            if reusable and type(mod) is type(module) and not getattr(mod, "inplace", False):
                continue
            new = add_module_after(gm, node, module, f"{node.name}_act", replace_uses=False)
            new.args = (node.args[0],)
            node.replace_all_uses_with(new)
            new.meta = dict(node.meta)
            gm.graph.erase_node(node)
    _swap_maxpool_relu(gm)
    return recompile_graph(gm)


def _swap_maxpool_relu(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if kind_of(gm, node) is not Kind.ACTIVATION or not isinstance(node.args[0], fx.Node):
            continue
        pool = node.args[0]
        if kind_of(gm, pool) is not Kind.MAXPOOL or len(pool.users) != 1:
            continue
        source = pool.args[0]
        # relu(pool(source)) -> pool(relu(source))
        node.args = (source,) + tuple(node.args[1:])
        pool.args = (node,) + tuple(pool.args[1:])
        node.replace_all_uses_with(pool, delete_user_cb=lambda user, pool=pool: user is not pool)
        pool.prepend(node)
        pool.meta, node.meta = dict(node.meta), dict(pool.meta)


# --------------------------------------------------------------------------- batch-norm fusion


def fuse_conv_bn_weights(
    weight: Tensor, bias: Tensor | None, bn: nn.modules.batchnorm._BatchNorm
) -> tuple[Tensor, Tensor]:
    """Weights of the conv/linear that equals ``bn(layer(x))`` in eval mode."""
    std = torch.sqrt(bn.running_var.double() + bn.eps)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(std)
    factor = gamma / std
    shape = (-1,) + (1,) * (weight.dim() - 1)
    new_weight = weight.double() * factor.view(shape)
    old_bias = bias.double() if bias is not None else torch.zeros_like(std)
    new_bias = (old_bias - bn.running_mean.double()) * factor + beta
    return new_weight.to(weight.dtype), new_bias.to(weight.dtype)


def bn_as_affine(bn: nn.modules.batchnorm._BatchNorm) -> ChannelAffine:
    std = torch.sqrt(bn.running_var.double() + bn.eps)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return ChannelAffine(scale.float(), (beta - bn.running_mean.double() * scale).float())


def fuse_batchnorm(gm: fx.GraphModule, *, inplace: bool = False) -> fx.GraphModule:
    """Fold every batch-norm into the conv/linear that feeds it (eval statistics).

    A batch-norm whose input is not a conv/linear used only by it becomes a
    :class:`ChannelAffine` (still exact, still linear).
    """
    gm = _maybe_copy(gm, inplace)
    for node in list(gm.graph.nodes):
        if kind_of(gm, node) is not Kind.NORM:
            continue
        bn = module_of(gm, node)
        producer = node.args[0]
        layer = module_of(gm, producer) if isinstance(producer, fx.Node) else None
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and len(producer.users) == 1:
            fused = copy.deepcopy(layer)
            weight, bias = fuse_conv_bn_weights(layer.weight.detach(), layer.bias, bn)
            fused.weight = nn.Parameter(weight)
            fused.bias = nn.Parameter(bias)
            set_module(gm, producer.target, fused)
            node.replace_all_uses_with(producer)
            gm.graph.erase_node(node)
        else:
            set_module(gm, node.target, bn_as_affine(bn))
    return recompile_graph(gm)


def set_module(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``target`` of ``gm`` (replacing what is there)."""
    parent_name, _, child = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, child, module)


# --------------------------------------------------------------------------- input normalization


def fold_normalization(
    gm: fx.GraphModule,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    *,
    inplace: bool = False,
) -> fx.GraphModule:
    """Make the model take raw pixels: fold ``(x - mean) / std`` into its input stage.

    When every consumer of the input is a zero-padded, ungrouped conv, the normalization goes
    into their weights and bias and the zero padding becomes an explicit pad with ``mean`` (what
    the normalized zero looks like in raw pixels), so borders stay exact. Otherwise an explicit
    :class:`ChannelAffine` is inserted after the input.
    """
    gm = _maybe_copy(gm, inplace)
    if mean is None or std is None:
        return gm
    mean_t = torch.tensor(mean, dtype=torch.float64)
    std_t = torch.tensor(std, dtype=torch.float64)
    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    users = list(placeholder.users)
    convs = [module_of(gm, u) for u in users]
    foldable = users and all(
        isinstance(c, nn.Conv2d)
        and c.groups == 1
        and c.padding_mode == "zeros"
        and not isinstance(c.padding, str)
        and c.in_channels == len(mean)
        for c in convs
    )
    if not foldable:
        affine = ChannelAffine((1.0 / std_t).float(), (-mean_t / std_t).float())
        add_module_after(gm, placeholder, affine, "input_normalize")
        return recompile_graph(gm)
    for user, conv in zip(users, convs, strict=True):
        folded = copy.deepcopy(conv)
        w = conv.weight.detach().double()
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0]).double()
        new_w = w / std_t.view(1, -1, 1, 1)
        new_b = b - (new_w * mean_t.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
        folded.weight = nn.Parameter(new_w.to(conv.weight.dtype))
        folded.bias = nn.Parameter(new_b.to(conv.weight.dtype))
        ph, pw = conv.padding
        folded.padding = (0, 0)
        set_module(gm, user.target, folded)
        if ph or pw:
            pad = PadWithValues((pw, pw, ph, ph), mean_t.float())
            name = unique_name(gm, f"{user.target}_input_pad")
            gm.add_submodule(name, pad)
            with gm.graph.inserting_before(user):
                pad_node = gm.graph.call_module(name, (placeholder,))
            user.replace_input_with(placeholder, pad_node)
    return recompile_graph(gm)
