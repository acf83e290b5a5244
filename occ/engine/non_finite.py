"""Stop (or skip the step) when a loss term becomes NaN or Inf, before backward."""
from __future__ import annotations

import functools

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from occ.registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term is NaN/Inf and the hook's action is 'raise'."""


def non_finite_terms(losses: dict) -> dict:
    """``{name: value}`` of the entries of a loss dict that are not finite.

    Values may be tensors or lists of tensors (mmengine sums lists).
    """
    bad = {}
    for name, value in losses.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            x = v.detach().float() if torch.is_tensor(v) else torch.tensor(float(v))
            if not torch.isfinite(x).all():
                bad[name] = float(x.sum())
                break
    return bad


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Inspect the model's loss dict each iteration, before backward.

    Args:
        action: ``'raise'`` stops training with :class:`NonFiniteLossError`
            naming the iteration and the offending ``loss_*`` terms;
            ``'skip'`` logs a warning and skips that optimiser step (weights,
            optimiser moments and grad scaler untouched), up to
            ``max_skips`` in a row, after which it raises.
        max_skips: consecutive skipped steps tolerated in ``'skip'`` mode.

    mmengine's ``train_step`` only hands the *summed* loss to the optimiser
    wrapper, so the hook wraps the model's ``parse_losses`` (where the per-term
    dict is still visible) and the wrapper's ``update_params`` (to skip) on
    the instances of this run. Under DDP the decision is all-reduced, so every
    rank raises or skips together and no rank blocks in a gradient all-reduce.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'raise', max_skips: int = 10):
        if action not in ('raise', 'skip'):
            raise ValueError(f"NonFiniteLossHook: action must be 'raise' or 'skip', got {action!r}")
        self.action = action
        self.max_skips = int(max_skips)
        self._skip_next = False
        self._skipped_in_a_row = 0

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        optim_wrapper = runner.optim_wrapper
        parse_losses = model.parse_losses
        update_params = optim_wrapper.update_params

        @functools.wraps(parse_losses)
        def guarded_parse_losses(losses):
            self._check(runner, losses)
            return parse_losses(losses)

        @functools.wraps(update_params)
        def guarded_update_params(loss, *args, **kwargs):
            if self._skip_next:
                self._skip_next = False
                optim_wrapper.zero_grad()
                return None
            return update_params(loss, *args, **kwargs)

        model.parse_losses = guarded_parse_losses
        optim_wrapper.update_params = guarded_update_params

    def _check(self, runner, losses: dict) -> None:
        bad = non_finite_terms({k: v for k, v in losses.items() if 'loss' in k})
        flag = torch.tensor(float(bool(bad)))
        if get_world_size() > 1:
            flag = flag.to(next(iter(runner.model.parameters())).device)
            all_reduce(flag)    # sum over ranks: non-zero if any rank saw a bad term
        if float(flag) == 0:
            self._skipped_in_a_row = 0
            return
        it = runner.iter + 1    # 1-based, as the logger prints it
        where = ', '.join(f'{k}={v}' for k, v in bad.items()) or 'on another rank'
        msg = f'Non-finite loss at iteration {it}: {where}'
        if self.action == 'skip' and self._skipped_in_a_row < self.max_skips:
            self._skipped_in_a_row += 1
            self._skip_next = True
            runner.logger.warning(f'{msg}; skipping this optimiser step '
                                  f'({self._skipped_in_a_row}/{self.max_skips} in a row)')
            return
        if self.action == 'skip':
            msg += f' ({self.max_skips} steps in a row already skipped)'
        raise NonFiniteLossError(msg + '. Lower the learning rate, check the inputs of that '
                                 'term, or set NonFiniteLossHook(action="skip").')


