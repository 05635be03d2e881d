"""The elastic U-Net: one set of weights that runs any (depth, width) sub-net by slicing.

Structural dropout (training a random sub-net per mini-batch) follows the originating study of elastic
U-Nets for medical segmentation; elastic width and the sandwich rule follow slimmable networks
(Yu et al., 2019, "Universally Slimmable Networks") and Once-for-All (Cai et al., 2020).

The sub-net is always passed explicitly: ``model(x, SubNet(depth=3, width=0.5))``. Nothing global is read
inside ``forward``, so two models (or two threads) never interfere.

A depth-d sub-net uses encoder levels 0..d-1 with level d-1 as its bottleneck, which feeds the decoder at
level d-2. Decoder blocks are therefore shared by every depth that reaches them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from elasticnet.errors import UserError
from elasticnet.models.config import BN_MODES, ElasticUNetConfig  # noqa: F401  (re-exported)
from elasticnet.models.elastic_layers import ElasticConv2d, ElasticDoubleConv
from elasticnet.models.subnet import SubNet, level_channels
from elasticnet.models.unet import check_input_size, upsample2x


class _DecoderLevel:
    """One decoder level as a function of (skip, lower-level output): up-sample, concatenate, double conv.

    Checkpointed as one piece, so neither the up-sampled tensor nor the concatenation is kept for backward.
    """

    def __init__(self, block: nn.Module, deterministic: bool = False):
        self.block, self.deterministic = block, deterministic

    def __call__(
        self, inputs: tuple[torch.Tensor, torch.Tensor], active_in: tuple[int, ...], active_out: int, bn_index: int
    ) -> torch.Tensor:
        skip, x = inputs
        up = upsample2x(x, self.deterministic)
        return self.block(torch.cat([skip, up], dim=1), active_in, active_out, bn_index)


class ElasticUNet(nn.Module):
    """A U-Net whose forward runs any configured sub-net by slicing the largest one's weights.

    With :attr:`grad_checkpoint` set (a training option, not architecture) each level is recomputed in
    backward: an encoder level keeps only its block's input, a decoder level (up-sampling, concatenation and
    block) only the skip and the lower level's output, for one extra forward of the blocks. (BatchNorm running
    statistics are then updated twice per step, in the forward and the recomputation; they are
    re-estimated per sub-net after training anyway.)
    """

    grad_checkpoint: bool = False
    deterministic: bool = False  # a training option: up-sampling whose CUDA backward is deterministic

    def __init__(self, config: ElasticUNetConfig):
        super().__init__()
        if not config.channel_multiple:
            raise UserError(
                "channel_multiple 0 (the device's fast multiple) must be resolved before the model is "
                "built: elasticnet.config.resolve_for_device, or give a number"
            )
        self.config = config
        ch = level_channels(config.base_width, config.max_depth)
        num_bn = config.bn_count()
        self.encoder = nn.ModuleList(
            ElasticDoubleConv([config.in_channels if level == 0 else ch[level - 1]], ch[level], num_bn)
            for level in range(len(ch))
        )
        self.decoder = nn.ModuleList(
            ElasticDoubleConv([ch[level], ch[level + 1]], ch[level], num_bn) for level in range(len(ch) - 1)
        )
        # junction "private": every depth but the largest gets its own first decoder block (the one that takes
        # its bottleneck), so the shared blocks below it see the same kind of input from every depth
        self.junctions = nn.ModuleDict(
            {
                str(d): ElasticDoubleConv([ch[d - 2], ch[d - 1]], ch[d - 2], num_bn)
                for d in config.depths
                if config.junction == "private" and d < config.max_depth
            }
        )
        # bottleneck "private": every depth but the largest gets its own last encoder block, so a shallow
        # sub-net's bottleneck need not double as the deeper sub-nets' inner encoder level
        self.bottlenecks = nn.ModuleDict(
            {
                str(d): ElasticDoubleConv([ch[d - 2]], ch[d - 1], num_bn)
                for d in config.depths
                if config.bottleneck == "private" and d < config.max_depth
            }
        )
        self.head = ElasticConv2d([ch[0]], config.num_classes, 1, bias=True)

    def check_subnet(self, subnet: SubNet) -> SubNet:
        """Return ``subnet`` if this model was configured for it, else raise a clear error."""
        if subnet.depth not in self.config.depths:
            raise UserError(
                f"this model has no depth {subnet.depth}; it was trained with depths {self.config.depths}. "
                "Pick one of those, or retrain with --depths including it"
            )
        if subnet.width not in self.config.widths:
            raise UserError(
                f"this model was not trained at width {subnet.width:g}; trained widths: "
                f"{', '.join(f'{w:g}' for w in self.config.widths)}. Pick one of those, or retrain with --widths"
            )
        return subnet

    def bn_index(self, subnet: SubNet) -> int:
        return self.config.bn_index(subnet)

    def blocks(self, subnet: SubNet) -> Iterator[tuple[str, nn.Module, tuple[int, ...], int]]:
        """The layers a sub-net runs, in forward order: ``(name, module, active_in, active_out)``.

        The single description of a sub-net's shape, shared by ``forward``, :func:`extract` and
        :meth:`active_masks`.
        """
        ch = self.config.channels(subnet)
        for level in range(subnet.depth):
            active_in = (self.config.in_channels,) if level == 0 else (ch[level - 1],)
            name = self.encoder_name(subnet.depth, level)
            yield name, self.get_submodule(name), active_in, ch[level]
        for level in range(subnet.depth - 2, -1, -1):
            name = self.decoder_name(subnet.depth, level)
            yield name, self.get_submodule(name), (ch[level], ch[level + 1]), ch[level]
        yield "head", self.head, (ch[0],), self.config.num_classes

    def encoder_name(self, depth: int, level: int) -> str:
        """The module a depth-``depth`` sub-net runs at encoder ``level``: its private bottleneck at its last
        level (bottleneck "private"), else the shared ``encoder.{level}``."""
        if level == depth - 1 and str(depth) in self.bottlenecks:
            return f"bottlenecks.{depth}"
        return f"encoder.{level}"

    def decoder_name(self, depth: int, level: int) -> str:
        """The module a depth-``depth`` sub-net runs at decoder ``level``: its private junction at the level
        that takes its bottleneck (junction "private"), else the shared ``decoder.{level}``."""
        if level == depth - 2 and str(depth) in self.junctions:
            return f"junctions.{depth}"
        return f"decoder.{level}"

    def forward(self, x: torch.Tensor, subnet: SubNet | None = None) -> torch.Tensor:
        subnet = self.config.largest if subnet is None else self.check_subnet(subnet)
        if not torch.jit.is_tracing():
            check_input_size(x, subnet.depth, self.config.in_channels)
        bn_index = self.bn_index(subnet)
        plan = list(self.blocks(subnet))
        encoder, decoder, head = plan[: subnet.depth], plan[subnet.depth : -1], plan[-1]
        skips: list[torch.Tensor] = []
        for level, (_, block, active_in, active_out) in enumerate(encoder):
            if level > 0:
                x = F.max_pool2d(x, 2)
            x = self._run_block(block, x, active_in, active_out, bn_index)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        for _, block, active_in, active_out in decoder:  # levels depth-2 .. 0
            x = self._run_block(
                _DecoderLevel(block, self.deterministic), (skips.pop(), x), active_in, active_out, bn_index
            )
        _, head_conv, active_in, active_out = head
        return head_conv(x, active_in, active_out)

    def _run_block(self, block, x, active_in: tuple[int, ...], active_out: int, bn_index: int) -> torch.Tensor:
        if self.grad_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, active_in, active_out, bn_index, use_reentrant=False)
        return block(x, active_in, active_out, bn_index)

    def active_masks(self, subnets: Sequence[SubNet]) -> dict[str, torch.Tensor]:
        """For each parameter, a boolean mask of the entries that at least one of ``subnets`` uses.

        Parameters that none of them touches are absent from the result.
        """
        masks: dict[str, torch.Tensor] = {}
        for subnet in subnets:
            bn_index = self.bn_index(subnet)
            for name, block, active_in, active_out in self.blocks(subnet):
                if isinstance(block, ElasticConv2d):
                    part = block.active_mask(active_in, active_out)
                else:
                    part = block.active_mask(active_in, active_out, bn_index)
                for pname, mask in part.items():
                    key = f"{name}.{pname}"
                    masks[key] = masks[key] | mask if key in masks else mask
        return masks
