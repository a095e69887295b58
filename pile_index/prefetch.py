"""``prefetch(arr, i)``: a hint to the CPU to fetch the cache line of ``arr[i]`` (LLVM's prefetch), for the
numba kernels that read from many random places (the training order's row copy, SA-IS's induce scans and
naming, the merge's batch decode, the n-gram batch count).

It never faults and returns nothing. Kernels cached on disk by numba hold its code inlined; numba keys a cached
kernel on the kernel's own file only, so a change here needs those caches cleared (``__pycache__/*.nbi``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint the CPU to fetch the cache line holding ``arr[idx]`` (LLVM's prefetch; never faults, no value)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = builder.gep(ary.data, [i])
        if not getattr(ptr.type, "is_opaque", False):
            ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        name = "llvm.prefetch.p0" if getattr(ptr.type, "is_opaque", False) else "llvm.prefetch.p0i8"
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all cache levels, data
        return context.get_dummy_value()

    return types.void(arr, idx), codegen
