"""Quickstart: train one continuous-depth model, then evaluate it at other depths and integrators.

    python examples/quickstart.py

Two noisy concentric circles (seed 002 sec. 5.1), lifted to R^3 with x3(0) = 0; the field is the
cubic-friction ODE dx/dt = W(t) x + b(t) - gamma x^3 (seed 002 eq. 56) on 8 control knots,
trained with RK4 at 8 steps, then solved with Euler/RK4 at other step counts and with dopri5.
"""
import torch
import torch.nn.functional as F

import contdepth as cd
from contdepth.data import circles

torch.manual_seed(0)
X, y = circles(400, seed=0)
X_test, y_test = circles(400, seed=1)
lift = lambda x: F.pad(x, (0, 1))                                       # (B, 2) -> (B, 3), x3 = 0

field = cd.fields.CubicFriction(3, cd.ControlGrid(t0=0.0, t1=4.0, n=8), gamma=0.1, learn_gamma=False)
opt = torch.optim.Adam(field.parameters(), lr=0.05)
for step in range(300):
    logit = cd.odesolve(field, lift(X), method="rk4", steps=8)[:, 2]    # sigmoid(x3) = P(outer)
    loss = F.binary_cross_entropy_with_logits(logit, y.float()) + 1e-3 * cd.smoothness(field)
    opt.zero_grad()
    loss.backward()
    opt.step()

print(f"{'method':>8} {'steps':>6} {'test acc':>9} {'f-evals':>8}")
with torch.no_grad():
    for method, steps in [("euler", 8), ("euler", 64), ("rk4", 8), ("rk4", 32), ("dopri5", None)]:
        sol = cd.solve(field, lift(X_test), method=method, steps=steps)
        acc = ((sol.y1[:, 2] > 0).long() == y_test).float().mean().item()
        print(f"{method:>8} {str(steps or 'adapt'):>6} {acc:9.3f} {sol.stats.forward.nfe:8d}")
