"""What a training step reads back from the device: on a GPU every read is a synchronisation that stalls the
queue of kernels, so a step may read only what it must (issue 15). Counted here on the CPU by intercepting
the operations that read a tensor's values into Python or have data-dependent shapes."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from elasticnet.models import ElasticUNet, SubNet
from elasticnet.models.config import ElasticUNetConfig
from elasticnet.training.inactive import InactiveWeightFreezer
from elasticnet.training.precision import Precision
from elasticnet.training.recipe import StepOptions
from elasticnet.training.step import train_step

READS = {
    torch.Tensor.item,
    torch.Tensor.__bool__,
    torch.Tensor.__float__,
    torch.Tensor.__int__,
    torch.Tensor.tolist,
    torch.Tensor.nonzero,
    torch.nonzero,
    torch.masked_select,
    torch.Tensor.masked_select,
    torch.Tensor.cpu,
    torch.Tensor.numpy,
}


class HostReads(TorchFunctionMode):
    """Records every value read and every boolean-mask index (a data-dependent shape) while active."""

    def __init__(self, host_only: tuple[torch.Tensor, ...] = ()):
        super().__init__()
        self.reads: list[str] = []
        self.host_only = {id(t) for t in host_only}  # tensors that stay on the host on a GPU too

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in READS and id(args[0]) not in self.host_only:
            self.reads.append(func.__name__)
        elif func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
                self.reads.append("boolean index")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("freezer", [True, False], ids=["freezer", "no-freezer"])
@pytest.mark.parametrize("clip", [0.0, 1.0], ids=["no-clip", "clip"])
def test_a_training_step_reads_only_the_cpu_finite_checks(freezer, clip):
    config = ElasticUNetConfig(base_width=8, depths=[2, 3], widths=[0.5, 1.0])
    model = ElasticUNet(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    keeper = InactiveWeightFreezer(model, optimizer) if freezer else None
    images, masks = torch.randn(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.7).float()
    subnets = [SubNet(2, 1.0), SubNet(2, 0.5), SubNet(3, 0.5)]  # not the largest: the freezer has weights to keep
    options = StepOptions(grad_clip=clip)
    precision = Precision("none", "cpu")
    train_step(model, optimizer, precision, keeper, images, masks, subnets, options)  # the optimiser's state exists
    # AdamW's step counters live on the host whatever the device (reading them is no synchronisation)
    counters = tuple(state["step"] for state in optimizer.state.values())
    with HostReads(counters) as counter:
        loss = train_step(model, optimizer, precision, keeper, images, masks, subnets, options)
    # one finite check per sub-net, made on the CPU only (a GPU step skips it; the loop reads the step's mean
    # loss once instead): nothing else, neither in the freezer, the clipping nor the optimiser
    assert counter.reads == ["__bool__"] * len(subnets)
    assert loss.dim() == 0
