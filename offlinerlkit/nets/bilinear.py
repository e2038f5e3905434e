"""The bilinear head of COCOA's anchor + delta encoder, computed in cache-sized row chunks.

The encoder's f and g networks end in `Linear(T -> T*D) -> LayerNorm(T*D)` and their outputs
are multiplied and summed in blocks of `D` (spec 6.1-6.2). With the CQL sizes (`T*D = 8192`)
the matrix multiplies are cheap next to the element-wise work: done op by op, the LayerNorms,
their affines, the product, the block sum and all their backward passes each stream tensors of
`E x rows x 8192` floats (hundreds of MB) through main memory, and they took about 70 % of a
CQL+COCOA update on a 2-core CPU.

`bilinear_layernorm_head` computes exactly the same function, but only the two matrix
multiplies touch whole tensors; everything element-wise runs over chunks of rows that stay in
the CPU cache (forward: fused LayerNorm with its affine, product, block sum; backward: the
same recomputed, then the fused LayerNorm backward). The result equals the op-by-op
computation up to float rounding (the affine gradients are summed chunk by chunk): see
`tests/test_speed_equivalence.py`. On CUDA the whole member is one chunk. Under autocast
(`--bf16`) the matrix multiplies run in bf16 and the LayerNorms and product in float32.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: Floats per chunk on CPU (2 MiB: 64 rows of the CQL width 8192), so a chunk's temporaries
#: stay in cache; narrower heads get more rows per chunk and so fewer small operations.
CPU_CHUNK_ELEMENTS = 1 << 19


def _chunks(num_rows: int, width: int, device: torch.device) -> list[slice]:
    """Row ranges processed together: all rows on accelerators, cache-sized chunks on CPU."""
    step = num_rows if device.type != "cpu" else max(1, CPU_CHUNK_ELEMENTS // width)
    step = max(1, min(step, num_rows))
    return [slice(s, min(s + step, num_rows)) for s in range(0, max(num_rows, 1), step)]


class _BilinearLayerNormHead(torch.autograd.Function):
    """`h = blocksum(LN_f(a Wf + bf) * LN_g(b Wg + bg))`; see `bilinear_layernorm_head`."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, wf: Tensor, bf: Tensor, gamma_f: Tensor,
                beta_f: Tensor, wg: Tensor, bg: Tensor, gamma_g: Tensor, beta_g: Tensor,
                num_features: int, eps: float, matmul_dtype: Optional[torch.dtype]) -> Tensor:
        low = matmul_dtype
        with torch.autocast(a.device.type, enabled=False):
            f_pre = _baddbmm(bf, a, wf, low)  # [E, B, W], in the matmul dtype
            g_pre = _baddbmm(bg, b, wg, low)
            members, rows, width = f_pre.shape
            embed = width // num_features
            out = a.new_empty(members, rows, num_features, dtype=torch.float32)
            stats = out.new_empty(4, members, rows, 1)  # mean_f, rstd_f, mean_g, rstd_g
            chunks = _chunks(rows, width, f_pre.device)
            for e in range(members):
                for rs in chunks:
                    n = rs.stop - rs.start
                    yf, stats[0, e, rs], stats[1, e, rs] = torch.native_layer_norm(
                        f_pre[e, rs].float(), (width,), gamma_f[e, 0], beta_f[e, 0], eps)
                    yg, stats[2, e, rs], stats[3, e, rs] = torch.native_layer_norm(
                        g_pre[e, rs].float(), (width,), gamma_g[e, 0], beta_g[e, 0], eps)
                    torch.sum(yf.mul_(yg).view(n, num_features, embed), -1, out=out[e, rs])
        ctx.save_for_backward(a, b, wf, wg, gamma_f, beta_f, gamma_g, beta_g, f_pre, g_pre, stats)
        ctx.num_features, ctx.eps, ctx.low = num_features, eps, low
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Optional[Tensor], ...]:
        a, b, wf, wg, gamma_f, beta_f, gamma_g, beta_g, f_pre, g_pre, stats = ctx.saved_tensors
        num_features, eps, low = ctx.num_features, ctx.eps, ctx.low
        members, rows, width = f_pre.shape
        embed = width // num_features
        need = ctx.needs_input_grad
        with torch.autocast(a.device.type, enabled=False):
            grad_out = grad_out.float().contiguous()
            d_f = torch.empty_like(f_pre)  # gradients w.r.t. the LayerNorm inputs (matmul dtype)
            d_g = torch.empty_like(g_pre)
            d_affine = stats.new_zeros(4, members, 1, width)  # d gamma_f, d beta_f, d gamma_g, d beta_g
            chunks = _chunks(rows, width, f_pre.device)
            dy = stats.new_empty(chunks[0].stop, width)  # chunk buffer, reused
            layer_norm_backward = torch.ops.aten.native_layer_norm_backward
            for e in range(members):
                for rs in chunks:
                    n = rs.stop - rs.start
                    dyc = dy[:n]
                    dh = grad_out[e, rs].unsqueeze(-1)  # [n, T, 1]
                    fc, gc = f_pre[e, rs].float(), g_pre[e, rs].float()
                    yf = torch.native_layer_norm(fc, (width,), gamma_f[e, 0], beta_f[e, 0], eps)[0]
                    yg = torch.native_layer_norm(gc, (width,), gamma_g[e, 0], beta_g[e, 0], eps)[0]
                    for x_pre, d_x, other, gamma, beta, k in ((fc, d_f, yg, gamma_f, beta_f, 0),
                                                              (gc, d_g, yf, gamma_g, beta_g, 2)):
                        torch.mul(other.view(n, num_features, embed), dh,
                                  out=dyc.view(n, num_features, embed))
                        d_x[e, rs], d_gamma, d_beta = layer_norm_backward(
                            dyc, x_pre, (width,), stats[k, e, rs], stats[k + 1, e, rs],
                            gamma[e, 0], beta[e, 0], [True, True, True])
                        d_affine[k, e, 0] += d_gamma
                        d_affine[k + 1, e, 0] += d_beta
            grads_f = _linear_grads(d_f, a, wf, low, need[0], need[2], need[3])
            grads_g = _linear_grads(d_g, b, wg, low, need[1], need[6], need[7])
        d_gf, d_bf, d_gg, d_bg = (d_affine[k] if need[i] else None for k, i in enumerate((4, 5, 8, 9)))
        return (grads_f[0], grads_g[0], grads_f[1], grads_f[2], d_gf, d_bf,
                grads_g[1], grads_g[2], d_gg, d_bg, None, None, None)


def _baddbmm(bias: Tensor, x: Tensor, weight: Tensor, low: Optional[torch.dtype]) -> Tensor:
    """`x W + bias`, with the operands cast to `low` first when given (autocast's rule)."""
    if low is None:
        return torch.baddbmm(bias, x, weight)
    return torch.baddbmm(bias.to(low), x.to(low), weight.to(low))


def _linear_grads(d_out: Tensor, x: Tensor, weight: Tensor, low: Optional[torch.dtype], need_x: bool,
                  need_w: bool, need_b: bool) -> tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """Gradients of `baddbmm(bias, x, weight)` from the output gradient `d_out` `[E, B, out]`.

    With a low matmul dtype the products run in it and each gradient takes its input's dtype.
    """
    w, xx = (weight, x) if low is None else (weight.to(low), x.to(low))
    d_x = torch.bmm(d_out, w.transpose(1, 2)).to(x.dtype) if need_x else None
    d_w = torch.bmm(xx.transpose(1, 2), d_out).to(weight.dtype) if need_w else None
    d_b = d_out.sum(1, keepdim=True, dtype=weight.dtype) if need_b else None
    return d_x, d_w, d_b


def bilinear_layernorm_head(a: Tensor, b: Tensor, f_linear: Any, f_norm: Any, g_linear: Any,
                            g_norm: Any, num_features: int) -> Tensor:
    """`sum_d LN_f(a Wf + bf)[t, d] * LN_g(b Wg + bg)[t, d]` per row, member and feature `t`.

    Args:
        a, b: `[E, B, H]` inputs of the f and g output layers (their last hidden activations).
        f_linear, g_linear: the output `EnsembleLinear` layers (`weight [E, H, T*D]`, `bias [E, 1, T*D]`).
        f_norm, g_norm: their `EnsembleLayerNorm`s (`weight`/`bias` `[E, 1, T*D]`, `eps`).
        num_features: `T`; the block size is `D = T*D / T`.

    Returns:
        `[E, B, T]` in float32. Under autocast the two matrix multiplies run in the autocast
        dtype (as `baddbmm` would) and everything else in float32.
    """
    device_type = a.device.type
    low = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    return _BilinearLayerNormHead.apply(
        a, b, f_linear.weight, f_linear.bias, f_norm.weight, f_norm.bias,
        g_linear.weight, g_linear.bias, g_norm.weight, g_norm.bias, num_features, f_norm.eps, low)
