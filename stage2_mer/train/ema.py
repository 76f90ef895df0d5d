"""An exponential moving average (EMA) of a model's trained parameters, for evaluation.

    ema = ParameterEMA(model, decay=0.999)
    ...; opt.step(); ema.update()          # after every optimizer step
    with ema.applied():                    # the averaged weights in the model, the trained ones after
        metrics = evaluate(model)

The average starts at the model's weights and follows them with the per-step decay
``min(decay, (1 + n) / (10 + n))`` after n updates, so early steps are not weighed down by the
initial weights. Only parameters that require gradients are averaged (buffers and frozen
parameters are the model's own).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["ParameterEMA"]


class ParameterEMA:
    """Shadow copies of ``module``'s trainable parameters, averaged by :meth:`update`."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """shadow <- d * shadow + (1 - d) * parameter, for every parameter at once."""
        self.updates += 1
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - self.current_decay())

    @contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """The averaged weights in the module inside the block; its trained weights back after it."""
        trained = [p.detach().clone() for p in self.params]
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)
        try:
            yield
        finally:
            for p, t in zip(self.params, trained):
                p.copy_(t)
