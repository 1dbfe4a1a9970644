"""Batch-parallel adaptive solving: every sample along dim 0 of the state keeps its own time, step
size, accept/reject decision, output times and statistics (``solve(..., per_sample=True)``).

The march is the one of :class:`~contdepth.solvers.controllers.Adaptive` applied per sample, with
times and step sizes as float64 tensors of shape (batch,) instead of Python floats:

- the first step is Hairer's rule per sample (or ``first_step``);
- a proposal is clamped to [min_step, max_step] and cut to end on the sample's t1;
- the error ratio r_b is, per sample b, the max over the state's tensors of the RMS over that
  sample's elements of e / (atol + rtol max(|y0|, |y1|)); the step is accepted when r_b <= 1;
- the next size is h clamp(safety r^(-1/p + 3 beta/4) r_prev^beta, 1, ifactor) after an
  accepted step, h clamp(safety r^(-1/p), dfactor, 1) after a rejected one;
- outputs inside a step come from the tableau's dense output, as in the shared march.

So each sample takes the steps it takes when solved alone (up to the rounding of a reduction).
A sample that has reached its t1 stops: it is masked (its state no longer changes, its counters
stop) or, with ``compact=True``, dropped from the batch the field sees.

Gradients: ``backprop`` through the steps (the step sizes and accept/reject decisions are data, as
in the shared march), or ``checkpoint``: each step keeps only its inputs (y, f0) and its stages are
recomputed by ``torch.utils.checkpoint`` during the backward pass; both give the same numbers.

Host syncs: one per step (the "all done?" check, which also reads the largest number of outputs
the step passed and whether a sample failed); a compaction reuses it. Everything else (the done
mask, the step sizes, the output pointers, the counts) stays on the device. With
``sync_every=k`` the check runs once every k steps: in between, every step writes all T output
slots it could pass (masked), the finished samples keep taking zero-length steps (up to k - 1
idle steps of the whole batch after the last one finishes), and a failure is raised at the next
check. k at least the slowest sample's step count leaves one sync per solve.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.utils.checkpoint

from ..errors import SolverError
from ..solution import Solution, SolverStats
from ..terms import check_returned
from ..timetol import TIME_RTOL, close_tensors
from ..tree import State, leaves, rebuild
from .controllers import Adaptive
from .tableau import ButcherTableau

Field = Callable[[torch.Tensor, State], State]


def _per_row(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (n,) tensor shaped (n, 1, ..., 1) to broadcast against ``like``."""
    return x.reshape(-1, *([1] * (like.dim() - 1)))


def _col(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """:func:`_per_row` in ``like``'s dtype."""
    return _per_row(x.to(like.dtype), like)


def _where(mask: torch.Tensor, a: State, b: State) -> State:
    """Per sample: a where ``mask``, else b (every tensor of the state)."""
    return rebuild(a, [torch.where(_per_row(mask, x), x, z) for x, z in zip(leaves(a), leaves(b))])


def _axpy(y: State, s: torch.Tensor, k: State) -> State:
    """y + s k with s of shape (n,), per sample."""
    return rebuild(y, [a + _col(s, a) * b for a, b in zip(leaves(y), leaves(k))])


def _weighted_cols(cols: list[torch.Tensor], coeffs, ks: list[State], y: State | None = None) -> State:
    """[y +] h sum_j c_j k_j per sample over the nonzero c_j, with ``cols`` h already shaped per
    tensor of the state (``_col``): one operation per term and one for h (y itself when every c_j is 0)."""
    terms = [(c, leaves(k)) for c, k in zip(coeffs, ks) if c]
    if not terms:
        return y
    out = []
    for i, h in enumerate(cols):
        c0, k0 = terms[0]
        acc = k0[i] * c0
        for c, k in terms[1:]:
            acc = torch.add(acc, k[i], alpha=c)
        out.append(acc * h if y is None else torch.addcmul(leaves(y)[i], h, acc))
    return rebuild(ks[0] if y is None else y, out)


def _rms(v: State) -> torch.Tensor:
    """Per sample, the max over the state's tensors of the RMS over the sample's elements: (n,).
    (||x_b|| / sqrt(m) by a norm reduction: torch.sqrt of an (n,) tensor can take a threaded
    vector-math path that costs milliseconds on a busy machine.)"""
    per = [torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1).to(torch.float64) / math.sqrt(x[0].numel())
           for x in leaves(v)]
    return torch.stack(per).amax(0)


class _Rows:
    """The per-sample arrays of one march, all of length n (the batch the field sees)."""

    NAMES = ("t", "t1", "d", "span", "h", "prev", "attempts", "rejects", "ptr", "outs", "gidx", "active", "weight",
             "failed", "ratio")

    def __init__(self, **arrays: torch.Tensor) -> None:
        self.__dict__.update(arrays)

    def select(self, keep: torch.Tensor) -> None:
        for name in self.NAMES:
            setattr(self, name, getattr(self, name).index_select(0, keep))


class PerSampleMarch:
    """One per-sample adaptive march of an explicit embedded Runge-Kutta ``tableau`` under the
    error control ``spec``. ``f(t, y)``: t of shape (n,) in y's dtype, y the n samples still
    stepping; it must treat the rows of the batch independently (with ``compact``, it must not
    depend on a row's position either: finished rows are dropped from the batch it sees)."""

    def __init__(self, f: Field, tableau: ButcherTableau, spec: Adaptive, *, compact: bool = False,
                 sync_every: int = 1, checkpoint: bool = False) -> None:
        if not tableau.adaptive:
            raise ValueError(f"per_sample needs an adaptive method (an embedded pair), got {tableau.name!r}")
        spec.check_order(tableau.order)
        self.f, self.tab, self.spec, self.compact, self.sync_every = f, tableau, spec, compact, sync_every
        self.checkpoint = checkpoint
        self._checked = False
        self._replay_nfe: torch.Tensor | None = None  # set once the forward march is over

    def _step(self, t: torch.Tensor, h: torch.Tensor, y: State, f0: State, rows: _Rows,
              nfe: torch.Tensor) -> tuple[list[State], State]:
        """The stages and y1 of one step; with ``checkpoint``, only the step's inputs are kept for
        the backward pass, which recomputes the stages (counted in ``_replay_nfe``)."""
        if not (self.checkpoint and torch.is_grad_enabled()):
            return self._stages(t, h, y, f0, rows, nfe)
        seen = _Rows(gidx=rows.gidx, active=rows.active, weight=rows.weight)
        ny, nf = len(leaves(y)), len(leaves(f0))

        def stages(*flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
            counter = nfe if self._replay_nfe is None else self._replay_nfe
            ks, y1 = self._stages(t, h, rebuild(y, list(flat[:ny])), rebuild(f0, list(flat[ny:])), seen, counter)
            return tuple(x for k in ks for x in leaves(k)) + tuple(leaves(y1))

        flat = torch.utils.checkpoint.checkpoint(stages, *leaves(y), *leaves(f0), use_reentrant=False)
        ks = [rebuild(f0, list(flat[i * nf:(i + 1) * nf])) for i in range(self.tab.stages)]
        return ks, rebuild(y, list(flat[self.tab.stages * nf:]))

    def _eval(self, t: torch.Tensor, y: State, rows: _Rows, nfe: torch.Tensor) -> State:
        """f at per-sample times t (float64, (n,)), counted for the active samples."""
        first = leaves(y)[0]
        out = self.f(t.to(first.dtype), y)
        if not self._checked:
            check_returned(out, y, "func")
            self._checked = True
        nfe.index_add_(0, rows.gidx, rows.weight)
        return out

    def _first_step(self, y0: State, f0: State, rows: _Rows, nfe: torch.Tensor) -> torch.Tensor:
        """Hairer, Norsett & Wanner II.4 per sample (the rule of the shared controller), never past t1."""
        sp, d = self.spec, rows.d
        span = (rows.t1 - rows.t).abs()
        if sp.first_step is not None:
            return d * torch.clamp(span, max=abs(sp.first_step))
        scaled = lambda v: rebuild(y0, [x / (sp.atol + sp.rtol * y.abs()) for x, y in zip(leaves(v), leaves(y0))])
        d0, d1 = _rms(scaled(y0)), _rms(scaled(f0))
        tiny = (d0 < 1e-5) | (d1 < 1e-5)
        h0 = torch.minimum(torch.where(tiny, torch.full_like(d0, 1e-6), 0.01 * d0 / d1), span)
        f1 = self._eval(rows.t + d * h0, _axpy(y0, d * h0, f0), rows, nfe)
        d2 = _rms(scaled(rebuild(y0, [a - b for a, b in zip(leaves(f1), leaves(f0))]))) / h0
        big = torch.maximum(d1, d2)
        h1 = torch.where(big <= 1e-15, torch.clamp(h0 * 1e-3, min=1e-6), (0.01 / big) ** (1.0 / self.tab.order))
        return d * torch.minimum(torch.minimum(100 * h0, h1), span)

    def _stages(self, t: torch.Tensor, h: torch.Tensor, y: State, f0: State, rows: _Rows,
                nfe: torch.Tensor) -> tuple[list[State], State]:
        """The stage derivatives (k_0 = f0, FSAL or not) and y1 of one step per sample."""
        tab, ks = self.tab, [f0]
        cols = [_col(h, x) for x in leaves(y)]
        for i in range(1, tab.stages):
            yi = _weighted_cols(cols, tab.a[i], ks, y)
            if tab.fsal and i == tab.stages - 1:
                y1 = yi
            ks.append(self._eval(t + h if tab.c[i] == 1 else t + tab.c[i] * h, yi, rows, nfe))
        if not tab.fsal:
            y1 = _weighted_cols(cols, tab.b, ks, y)
        return ks, y1

    def _error(self, h: torch.Tensor, ks: list[State]) -> State:
        """The embedded error estimate h sum_j e_j k_j per sample."""
        return _weighted_cols([_col(h, x) for x in leaves(ks[0])], self.tab.b_error, ks)

    def _interpolate(self, y0: State, y1: State, ks: list[State], h: torch.Tensor, s: torch.Tensor) -> State:
        """The tableau's dense output at t + s h per sample (s, h: (n,) float64)."""
        tab = self.tab
        if tab.dense is not None:
            weights = [sum(w * s ** (p + 1) for p, w in enumerate(row)) for row in tab.dense]
            out = y0
            for w, k in zip(weights, ks):
                out = _axpy(out, h * w, k)
            return out
        ym = y0
        for c, k in zip(tab.mid, ks):
            if c:
                ym = _axpy(ym, h * c, k)
        out = []
        for a0, a1, am, g0, g1 in zip(*(leaves(v) for v in (y0, y1, ym, ks[0], ks[-1]))):
            hh, ss = _col(h, a0), _col(s, a0)
            # the quartic of RungeKutta.interpolate: p(s) = e + d s + c s^2 + b s^3 + a s^4
            qa = 2 * hh * (g1 - g0) - 8 * (a1 + a0) + 16 * am
            qb = hh * (5 * g0 - 3 * g1) + 18 * a0 + 14 * a1 - 32 * am
            qc = hh * (g1 - 4 * g0) - 11 * a0 - 5 * a1 + 16 * am
            out.append(a0 + ss * (hh * g0 + ss * (qc + ss * (qb + ss * qa))))
        return rebuild(y0, out)

    def run(self, y0: State, t0: torch.Tensor, t1: torch.Tensor, out_times: torch.Tensor,
            stats: SolverStats) -> list[torch.Tensor]:
        """March every sample b from (t0[b], y0[b]) to t1[b]; return, per tensor of the state, the
        stacked outputs of shape (T, batch, ...) at ``out_times`` (batch, T) (monotone per sample,
        within [t0, t1]). Fills ``stats.forward`` with per-sample counts (tensors of shape
        (batch,)); with ``checkpoint``, ``stats.backward.nfe`` counts the recomputed evaluations
        as the backward pass runs."""
        sp, tab, every = self.spec, self.tab, self.sync_every
        B, T = out_times.shape
        dev = t0.device
        d = torch.sign(t1 - t0)
        long0 = torch.zeros(B, dtype=torch.long, device=dev)
        false = torch.zeros(B, dtype=torch.bool, device=dev)
        nfe, acc_n, rej_n = long0.clone(), long0.clone(), long0.clone()
        gidx = torch.arange(B, device=dev)
        near = close_tensors(out_times, t0[:, None])
        rows = _Rows(t=t0, t1=t1, d=d, span=(t1 - t0).abs(), h=torch.zeros_like(t0), prev=torch.full_like(t0, 1e-4),
                     attempts=long0, rejects=long0, ptr=near.sum(1), outs=out_times, gidx=gidx, active=~false,
                     weight=torch.ones_like(long0), failed=false, ratio=torch.zeros_like(t0))
        # slot k B + b holds output k of sample b; slot T B takes the writes of rows with nothing to write
        bufs = [x.new_zeros((T * B + 1, *x.shape[1:])) for x in leaves(y0)]
        y = y0
        for j in range(int(rows.ptr.max())):  # outputs at t0: y0 itself (the one sync before the loop)
            self._write(bufs, leaves(y0), torch.where(j < rows.ptr, j * B + gidx, T * B))
        f0 = self._eval(rows.t, y, rows, nfe)
        with torch.no_grad():
            rows.h = self._first_step(y, f0, rows, nfe)
        shrink = max(sp.safety, sp.dfactor)
        alpha = 1.0 / tab.order - 0.75 * sp.beta
        step = 0
        while True:
            # propose (Adaptive's rule per sample); finished samples take a step of length 0
            with torch.no_grad():
                active, t, d = rows.active, rows.t, rows.d
                rows.attempts = rows.attempts + rows.weight
                h = rows.h
                if sp.min_step > 0:
                    h = torch.where(torch.isfinite(h), h, d * sp.min_step)
                if sp.min_step > 0 or sp.max_step < math.inf:
                    h = torch.where(torch.isfinite(h), torch.copysign(h.abs().clamp(sp.min_step, sp.max_step), h), h)
                end = t + h
                on_t1 = (d * (end - rows.t1) >= 0) | close_tensors(end, rows.t1)
                h_used = torch.where(active, torch.where(on_t1, rows.t1 - t, h), torch.zeros_like(h))
                t_next = torch.where(active, torch.where(on_t1, rows.t1, end), t)
                fail = active & ((t + h == t) | ~torch.isfinite(h) | (rows.attempts > sp.max_num_steps))
            ks, y1 = self._step(t, h_used, y, f0, rows, nfe)
            # judge
            with torch.no_grad():
                error = self._error(h_used, ks)
                scale = rebuild(y, [e / (sp.atol + sp.rtol * torch.maximum(a.abs(), b.abs()))
                                    for e, a, b in zip(leaves(error), leaves(y), leaves(y1))])
                ratio = _rms(scale)
                accept = active & ((ratio <= 1) | (h_used.abs() <= sp.min_step))
                reject = active & ~accept
                # r = 0 gives an infinite factor (alpha > 0: Adaptive.check_order), clamped to ifactor;
                # a non-finite r gives dfactor
                factor = sp.safety * ratio ** -alpha
                if sp.beta:
                    factor = factor * rows.prev ** sp.beta
                    rows.prev = torch.where(accept & (ratio <= 1), ratio.clamp(min=1e-4), rows.prev)
                h_good = torch.where(ratio > 1, h_used, h_used * factor.clamp(1.0, sp.ifactor))
                shrunk = sp.safety * torch.nan_to_num(ratio ** (-1.0 / tab.order), nan=0.0)
                h_bad = h_used * shrunk.clamp(sp.dfactor, 1.0)
                rows.h = torch.where(accept, h_good, torch.where(reject, h_bad, rows.h))
                rows.rejects = torch.where(reject, rows.rejects + 1, torch.where(accept, 0, rows.rejects))
                rows.ratio = torch.where(active, ratio, rows.ratio)
                floor = 10 * (torch.nextafter(t, t + d) - t).abs()
                # rejects > 1 + log(span / floor) / log(1 / shrink), without a per-step log
                stuck = torch.pow(1 / shrink, (rows.rejects - 1).to(torch.float64)) > rows.span / floor
                fail = fail | (reject & ((rows.h.abs() < floor) | stuck))
                rows.failed = rows.failed | fail
                acc_n.index_add_(0, rows.gidx, accept.long())
                rej_n.index_add_(0, rows.gidx, reject.long())
                slack = (TIME_RTOL * t_next.abs().clamp(min=1))[:, None]
                gap = rows.d[:, None] * (rows.outs - t_next[:, None])  # > 0: an output still ahead
                passed = (gap <= slack).sum(1)
                new_ptr = torch.where(accept, passed, rows.ptr)
                still = active & ~(accept & (t_next == rows.t1)) & ~fail
                step += 1
                check = step % every == 0
                if check:  # the one host sync of the step (of every sync_every-th step)
                    # outputs strictly inside the step (the others, on its end, are y1 itself)
                    inner = torch.where(accept, (gap < -slack).sum(1), rows.ptr) - rows.ptr
                    n_active, n_out, n_inner, failed = torch.stack([
                        still.sum(), (new_ptr - rows.ptr).max(), inner.max(), rows.failed.any().long()]).tolist()
                else:  # unknown without a sync: write every output slot a step can pass
                    n_active, n_out, n_inner, failed = -1, T, T, 0
            if failed:
                raise self._failure(rows)
            for j in range(n_out):
                k = rows.ptr + j
                valid = k < new_ptr
                kc = k.clamp(max=T - 1)
                value = y1
                if n_inner > 0:
                    tau = rows.outs.gather(1, kc[:, None])[:, 0]
                    at_end = close_tensors(tau, t_next)
                    safe_h = torch.where(valid, h_used, torch.ones_like(h_used))
                    s = torch.where(valid & ~at_end, (tau - t) / safe_h, torch.zeros_like(tau))
                    value = _where(at_end, y1, self._interpolate(y, y1, ks, safe_h, s))
                self._write(bufs, leaves(value), torch.where(valid, kc * B + rows.gidx, T * B))
            y = _where(accept, y1, y)
            f0 = _where(accept, ks[-1], f0) if tab.fsal else None
            rows.t, rows.ptr, rows.active, rows.weight = torch.where(accept, t_next, t), new_ptr, still, still.long()
            if n_active == 0:
                break
            if not tab.fsal:
                f0 = self._eval(rows.t, y, rows, nfe)
            if self.compact and check and n_active <= rows.t.shape[0] // 2:
                # the rows still stepping, in order: n_active is known, so no further sync
                keep = torch.argsort((~still).to(torch.uint8), stable=True)[:n_active]
                rows.select(keep)
                y = rebuild(y, [x.index_select(0, keep) for x in leaves(y)])
                f0 = rebuild(f0, [x.index_select(0, keep) for x in leaves(f0)])
        stats.forward.nfe, stats.forward.accepted_steps, stats.forward.rejected_steps = nfe, acc_n, rej_n
        if self.checkpoint:
            self._replay_nfe = stats.backward.nfe = torch.zeros_like(nfe)
        return [buf[:T * B].reshape(T, B, *x.shape[1:]) for buf, x in zip(bufs, leaves(y0))]

    @staticmethod
    def _write(bufs: list[torch.Tensor], values: list[torch.Tensor], index: torch.Tensor) -> None:
        """Row i of every value into slot index[i] of its buffer (differentiably)."""
        for buf, v in zip(bufs, values):
            buf.index_copy_(0, index, v.to(buf.dtype))

    def _failure(self, rows: _Rows) -> SolverError:
        b = int(rows.failed.nonzero()[0, 0])
        t, h, g = float(rows.t[b]), float(rows.h[b]), int(rows.gidx[b])
        sp = self.spec
        if int(rows.attempts[b]) > sp.max_num_steps:
            return SolverError(f"per_sample: sample {g} exceeded max_num_steps={sp.max_num_steps} at t={t} (h={h}); "
                               "raise options['max_num_steps'], loosen rtol/atol, or check the field for stiffness")
        finite = math.isfinite(float(rows.ratio[b]))
        return SolverError(f"per_sample: step size underflow for sample {g} at t={t} (h={h}, rtol={sp.rtol}, "
                           f"atol={sp.atol}): the error estimate stayed {'too large' if finite else 'non-finite'} "
                           "(a state or field that blows up, tolerances too tight for the dtype, or a stiff "
                           "field: use an implicit method without per_sample)")


OPTIONS = ("first_step", "max_num_steps", "safety", "ifactor", "dfactor", "beta", "min_step", "max_step", "compact",
           "sync_every")


def _batch(y0: State) -> int:
    """The batch size: dim 0 of every tensor of ``y0``, checked to agree."""
    sizes = {x.shape[0] if x.dim() else None for x in leaves(y0)}
    if None in sizes or len(sizes) != 1:
        raise ValueError(f"per_sample needs every tensor of y0 to have the same batch size along dim 0, got shapes "
                         f"{[tuple(x.shape) for x in leaves(y0)]}")
    return sizes.pop()


def _span_end(name: str, value: object, B: int, like: torch.Tensor) -> torch.Tensor:
    """t0 or t1 as float64 (B,) on y0's device: a float, a 0-dim tensor, or one time per sample."""
    if value is None:
        raise ValueError(f"per_sample needs {name} (a float or a tensor of shape ({B},))")
    if isinstance(value, torch.Tensor) and value.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError(f"per_sample: gradients with respect to {name} are not computed; pass "
                                  f"{name}.detach()")
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a float or a tensor of shape ({B},), got {type(value).__name__}")
    t = torch.as_tensor(value, dtype=torch.float64).detach().to(like.device)
    if t.dim() == 0:
        t = t.expand(B)
    if tuple(t.shape) != (B,):
        raise ValueError(f"per_sample: {name} must be a float or have shape (batch,) = ({B},), got "
                         f"{tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must hold finite times, got {t.tolist()}")
    return t.contiguous()


def _out_times(t_eval: object, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
    """The output times as float64 (B, T): t_eval of shape (T,) (shared) or (B, T), or t1 alone;
    strictly monotone toward each sample's t1 and within its [t0, t1]."""
    B = t0.shape[0]
    if t_eval is None:
        return t1[:, None]
    if isinstance(t_eval, torch.Tensor) and t_eval.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError("per_sample: gradients with respect to t_eval are not computed; pass "
                                  "t_eval.detach()")
    t = torch.as_tensor(t_eval, dtype=torch.float64).detach().to(t0.device)
    if t.dim() == 1:
        t = t.expand(B, -1)
    if t.dim() != 2 or t.shape[0] != B or t.shape[1] == 0:
        raise ValueError(f"per_sample: t_eval must have shape (T,) or (batch, T) = ({B}, T) with T >= 1, got "
                         f"{tuple(torch.as_tensor(t_eval).shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("t_eval must hold finite times")
    d = torch.sign(t1 - t0)[:, None]
    if not bool((d * t.diff(dim=1) > 0).all()):
        raise ValueError("per_sample: each row of t_eval must be strictly monotone from its sample's t0 toward t1")
    slack = TIME_RTOL * torch.maximum(t0.abs(), t1.abs()).clamp(min=1)[:, None]
    if not bool(((d * (t - t0[:, None]) >= -slack) & (d * (t1[:, None] - t) >= -slack)).all()):
        raise ValueError("per_sample: t_eval must lie within each sample's [t0, t1]")
    return t.contiguous()


def solve_per_sample(func: Field, y0: State, *, method: object, t0: object, t1: object, t_eval: object = None,
                     gradient: str = "backprop", rtol: float | None = None, atol: float | None = None,
                     options: dict | None = None, **unsupported: object) -> Solution:
    """``solve(..., per_sample=True)``: each sample along dim 0 of ``y0`` solved with its own steps.

    func(t, y): t of shape (n,) in y's dtype (each row's own time), y the n rows still stepping.
    t0, t1: floats or tensors of shape (batch,); t_eval: (T,) or (batch, T). Returns a
    :class:`Solution` whose ``ys[k]`` holds every sample at its own k-th output time (``ts[k]``,
    ``ts`` of shape (T, batch)) and whose ``stats.forward`` counts are tensors of shape (batch,).
    options: the adaptive controller's keys (``first_step``, ``max_num_steps``, ``safety``,
    ``ifactor``, ``dfactor``, ``beta``, ``min_step``, ``max_step``), ``compact`` (drop finished
    rows from the batch func sees once at most half are still stepping) and ``sync_every`` (host
    syncs once every k steps instead of every step).
    ``unsupported``: solve's other keywords; any that is set is an error naming it.
    """
    from . import get_stepper
    from .rk import RungeKutta
    if gradient not in ("backprop", "checkpoint"):
        raise NotImplementedError(f"per_sample=True computes gradients by backprop or checkpoint only; "
                                  f"gradient={gradient!r} is not implemented for per-sample solves")
    for name, value in unsupported.items():
        if value is not None:
            raise ValueError(f"per_sample=True does not support {name} (got {name}={value!r})")
    if hasattr(func, "make_term"):
        raise ValueError(f"per_sample=True needs a plain func(t, y) taking one time per sample; a "
                         f"{type(func).__name__} reads theta at one time per evaluation")
    if not callable(func):
        raise TypeError(f"func must be callable as func(t, y), got {type(func).__name__}")
    stepper = get_stepper(method)
    if not isinstance(stepper, RungeKutta) or not stepper.adaptive:
        raise ValueError(f"per_sample=True needs an adaptive explicit Runge-Kutta method (e.g. 'dopri5', 'tsit5', "
                         f"'bosh3'), got method={getattr(stepper, 'name', method)!r}")
    from .controllers import StepCallbacks
    if StepCallbacks.of(func) is not None:
        raise ValueError("per_sample=True does not call func.callback_step and its kin; remove them")
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown options key(s) {unknown} for per_sample=True; allowed: {sorted(OPTIONS)}")
    compact = options.pop("compact", False)
    if not isinstance(compact, bool):
        raise TypeError(f"options['compact'] must be True or False, got {compact!r}")
    sync_every = options.pop("sync_every", 1)
    if isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1:
        raise ValueError(f"options['sync_every'] must be a positive int, got {sync_every!r}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 < value < math.inf):
            raise ValueError(f"{name} must be a positive finite float, got {value!r}")
    spec = Adaptive(1e-6 if rtol is None else float(rtol), 1e-8 if atol is None else float(atol), **options)
    first = leaves(y0)[0]
    B = _batch(y0)
    start, end = _span_end("t0", t0, B, first), _span_end("t1", t1, B, first)
    if bool((start == end).any()):
        raise ValueError(f"per_sample: t0 and t1 must differ for every sample (equal for sample "
                         f"{int((start == end).nonzero()[0, 0])})")
    outs = _out_times(t_eval, start, end)
    stats = SolverStats(method=stepper.name, gradient=gradient)
    march = PerSampleMarch(func, stepper.tableau, spec, compact=compact, sync_every=sync_every,
                           checkpoint=gradient == "checkpoint")
    ys = march.run(y0, start, end, outs, stats)
    if not all(bool(torch.isfinite(x).all()) for x in ys):
        raise SolverError("per_sample: the solve's result is non-finite")
    return Solution(outs.T.contiguous(), rebuild(y0, ys), stats)


def odeint_per_sample(func: Field, y0: State, t: torch.Tensor, *, rtol: float, atol: float, method: object,
                      options: dict | None, gradient: str, **unsupported: object) -> State:
    """``odeint(func, y0, t)`` with t of shape (batch, T): row b of t holds sample b's times (its
    t0 first, its t1 last); returns the states stacked as (T, batch, ...)."""
    if t.shape[1] < 2:
        raise ValueError(f"per-sample t of shape (batch, T) needs T >= 2 (each row's t0 and t1), got "
                         f"{tuple(t.shape)}")
    return solve_per_sample(func, y0, method="dopri5" if method is None else method, t0=t[:, 0], t1=t[:, -1],
                            t_eval=t, gradient=gradient, rtol=rtol, atol=atol, options=options,
                            **unsupported).ys
