"""Fused CPU kernels of the scorer: the per-token statistics of one chunk of fp32 logits (nll, rank and
entropy), and the split of the fused query_key_value output into rotated, contiguous q, k and v.

Statistics. One parallel numba loop over positions; each position's logit row (50,304 fp32 = 197 KiB for Pythia, inside
one core's L2) is read twice: once from memory for the max, the label's logit and the rank count, then from
L2 for the sum of exponentials and the entropy's sum. The torch form of the same arithmetic makes about 12
passes over the whole chunk (max, shift, exp, sum, a dot product, a compare, a count), each from memory; this
one makes one. Measured on the 2-core AMD EPYC (Zen 4) box, 4,096 positions x 50,304 logits: 0.4-0.7 s
against about 2.4 s for the torch passes (profiled), under load.

Arithmetic (per position, logits ``z``, label logit ``t``, ``m = max z``):
``s = sum exp(z - m)``, ``q = sum exp(z - m) * (z - m)``, both accumulated in fp64;
``nll = log s - (t - m)``, ``entropy = log s - q / s`` (nats), ``rank = #{z > t}``.
``exp`` is Cephes' ``expf`` (range reduction by ln 2, degree-6 polynomial, within 2 ulp of fp32 exp; written
here so that LLVM vectorises it, as numba has no vector math library without Intel's SVML). Reassociation is
allowed (vector lanes), NaN is not assumed away: a row holding NaN or an infinite max gives NaN nll and
entropy, as the torch form does.

q, k, v. The fused projection's output (B, T, H, 3, hd) becomes q, k, v in one (3, B, H, T, hd) array, the
first ``r`` dims of q and k rotated on the way (NeoX rotate-half: ``x1 cos - x2 sin``, ``x2 cos + x1 sin``,
the same fp32 products and sums as ``x_rot * cos + cat(-x2, x1) * sin``, no contraction into FMA, so the
values are bit for bit those of transformers). One read and one write of the activations, where the torch
form (two concatenations per tensor, then a copy for contiguity) made about 10 strided passes: measured on
the 2-core box at the 410m shape, 2,048 tokens, those passes took 1.0-1.3 s of a 17 s forward.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import float32, int32
from numba.core.extending import intrinsic

_FLAGS = {"reassoc", "contract", "nsz"}  # lanes may reorder sums; NaN and inf keep their meaning


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The fp32 whose bit pattern is the int32 ``bits`` (a register reinterpretation, no memory)."""
    sig = float32(int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@numba.njit(inline="always", fastmath=_FLAGS)
def _exp_nonpos(x):
    """exp(x) for fp32 x <= 0 (Cephes expf); below -87.3 it returns exp(-87.3) ~ 1.2e-38 (a share of at most
    1e-33 of a sum that holds a 1, so no sum moves)."""
    x = max(x, np.float32(-87.33654))
    n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))  # round(x / ln 2)
    r = x - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)  # x - n ln 2, in two parts
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    return p * _f32_from_bits((np.int32(n) + np.int32(127)) << 23)  # times 2**n


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_FLAGS)
def logit_stats(logits, labels, nll, rank, entropy):
    """For each row i of ``logits`` (R, V) fp32 C-contiguous and its label ``labels[i]`` (int64, in range):
    ``nll[i]``, ``rank[i]`` (int32) and ``entropy[i]`` as in the module docstring."""
    R, V = logits.shape
    for i in numba.prange(R):
        row = logits[i]
        t = row[labels[i]]
        m = row[0]
        above = 0
        bad = 0
        for j in range(V):
            z = row[j]
            m = max(m, z)
            above += z > t
            bad += z != z  # NaN
        s = 0.0
        q = 0.0
        for j in range(V):
            z = row[j] - m
            e = _exp_nonpos(z)
            s += np.float64(e)
            q += np.float64(e * z)
        rank[i] = above
        if bad or not np.isfinite(m):
            nll[i] = np.nan
            entropy[i] = np.nan
        else:
            log_s = np.log(s)
            nll[i] = np.float32(log_s - (np.float64(t) - np.float64(m)))
            entropy[i] = np.float32(log_s - q / s)


@numba.njit(cache=True, nogil=True, parallel=True)
def split_qkv_rotary(qkv, cos, sin, out):
    """``qkv`` (B, T, H, 3, hd) fp32 C-contiguous -> ``out`` (3, B, H, T, hd): ``out[j, b, h, t] =
    qkv[b, t, h, j]``, the first r = ``cos.shape[1]`` dims of q (j = 0) and k (j = 1) rotated with the
    tables ``cos``, ``sin`` (T, r) fp32."""
    B, T, H, _, hd = qkv.shape
    r = cos.shape[1]
    half = r // 2
    for bt in numba.prange(B * T):
        b, t = bt // T, bt % T
        for h in range(H):
            for j in range(3):
                src = qkv[b, t, h, j]
                dst = out[j, b, h, t]
                lo = 0
                if j < 2:
                    for i in range(half):
                        x1, x2 = src[i], src[i + half]
                        dst[i] = x1 * cos[t, i] - x2 * sin[t, i]
                        dst[i + half] = x2 * cos[t, i + half] + x1 * sin[t, i + half]
                    lo = r
                for i in range(lo, hd):
                    dst[i] = src[i]


__all__ = ["logit_stats", "split_qkv_rotary"]
