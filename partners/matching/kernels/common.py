# mypy: ignore-errors
# (numba kernels: numba infers and checks their types when it compiles them; mypy cannot follow @intrinsic)
"""What every kernel module shares: the intrinsics (popcount, loads and prefetches by address), a hash's
chunk value, and the packed bucket-start format that the build writes and MIH search reads."""

from __future__ import annotations

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic


@intrinsic
def popcnt(typingctx, x):
    """LLVM ``ctpop`` on a uint64: one POPCNT instruction on the host CPU."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def _pext_bmi2(typingctx, x, mask):
    """BMI2 ``PEXT`` on uint64s (compiled only where :data:`FAST_PEXT`: elsewhere LLVM cannot select it)."""
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, i64]), "llvm.x86.bmi.pext.64")
        return builder.call(fn, [args[0], args[1]])

    return sig, codegen


@njit(cache=True, nogil=True)
def soft_pext(x, mask):
    """``PEXT`` without BMI2: one step per run of set bits of ``mask`` (a run of contiguous bits, natural
    order's chunks, is one shift)."""
    out = np.uint64(0)
    k = np.uint64(0)
    m = np.uint64(mask)
    while m != np.uint64(0):
        low = m & (~m + np.uint64(1))  # lowest set bit
        run = ((m + low) & ~m) - low  # the run of set bits starting there
        shift = np.uint64(popcnt(low - np.uint64(1)))
        width = np.uint64(popcnt(run))
        out |= ((x & run) >> shift) << k
        k += width
        m &= ~run
    return out


def _fast_pext() -> bool:
    """Whether the kernels compile for a CPU with a fast PEXT: BMI2 on the host (numba's target unless
    NUMBA_CPU_NAME says otherwise), and not AMD before Zen 3, where PEXT is microcoded (tens to hundreds of
    cycles)."""
    if config.CPU_NAME not in (None, "host"):
        return False
    name = llvm.get_host_cpu_name()
    if name.startswith(("znver1", "znver2", "bdver", "btver")):
        return False
    try:
        return bool(llvm.get_host_cpu_features().get("bmi2", False))
    except RuntimeError:  # features unknown on this platform
        return False


FAST_PEXT = _fast_pext()
# The bits of x where mask is set, packed at the bottom in ascending order. numba's cache keys compiled kernels
# by the CPU they were compiled for, so a kernel compiled with the BMI2 instruction never runs on a CPU
# without it.
pext = _pext_bmi2 if FAST_PEXT else soft_pext


def _load_at(bits, signed=False):
    """An intrinsic ``f(address, i)``: the ``bits``-bit integer at ``address + i * bits / 8``, a plain load
    (no array object, so no reference counting and no bounds check: the caller's arrays are checked)."""
    result = getattr(types, f"{'int' if signed else 'uint'}{bits}")

    @intrinsic
    def load(typingctx, address, index):
        sig = result(types.int64, types.int64)

        def codegen(context, builder, signature, args):
            base = context.cast(builder, args[0], signature.args[0], types.int64)
            i = context.cast(builder, args[1], signature.args[1], types.int64)
            ptr = builder.inttoptr(base, ir.IntType(bits).as_pointer())
            return builder.load(builder.gep(ptr, [i], inbounds=True))

        return sig, codegen

    return load


u8_at = _load_at(8)
u16_at = _load_at(16)
u32_at = _load_at(32)
u64_at = _load_at(64)
i64_at = _load_at(64, signed=True)


def _prefetch_intrinsic(write):
    """An intrinsic ``f(address)``: ``llvm.prefetch`` of the cache line at ``address`` (an int64), for a read
    or, with ``write``, for a store (the line is fetched for ownership, so the store does not wait for it)."""

    @intrinsic
    def prefetch(typingctx, address):
        sig = types.void(types.int64)

        def codegen(context, builder, signature, args):
            base = context.cast(builder, args[0], signature.args[0], types.int64)
            i8p = builder.inttoptr(base, ir.IntType(8).as_pointer())
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            builder.call(fn, [i8p, i32(1 if write else 0), i32(3), i32(1)])  # keep in all cache levels, data
            return context.get_dummy_value()

        return sig, codegen

    return prefetch


prefetch_at = _prefetch_intrinsic(write=False)
prefetchw_at = _prefetch_intrinsic(write=True)


@njit(cache=True, nogil=True)
def chunk_value(w0, w1, w2, w3, start, bits):
    """Bits ``start .. start+bits-1`` of the 256-bit hash (bit p = bit p%64 of word p//64), as int64."""
    word = start >> 6
    off = start & 63
    if word == 0:
        lo = w0
        hi = w1
    elif word == 1:
        lo = w1
        hi = w2
    elif word == 2:
        lo = w2
        hi = w3
    else:
        lo = w3
        hi = np.uint64(0)
    v = lo >> np.uint64(off)
    if off + bits > 64:
        v = v | (hi << np.uint64(64 - off))
    mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    return np.int64(v & mask)


@njit(cache=True, nogil=True)
def mapped_value(w0, w1, w2, w3, m0, m1, m2, m3, s1, s2, s3):
    """A chunk's key under a key map (see ``pdq_index.KeyMap``): the chunk's bits of word w (mask ``m<w>``),
    packed in ascending order, land at key bit ``s<w>`` on (``s0`` = 0), as int64. Scalars only."""
    v = pext(w0, m0) | (pext(w1, m1) << s1) | (pext(w2, m2) << s2) | (pext(w3, m3) << s3)
    return np.int64(v)


# Bucket starts (where each bucket's rows begin in ``rows``) are packed in 64-byte lines: a uint32 base, the
# start of the line's first bucket, then the starts of its buckets and the end of its last one relative to
# the base, as uint8 (59 buckets a line, when no line holds more than 255 rows: a chunk of 2^23 buckets then
# takes 8.7 MiB, where one uint32 per bucket would take 32 MiB; random hashes stay below that up to about
# 20M rows)
# or uint16 (29 buckets a line, up to 65,535 rows). A bucket's start and end are then in one cache line, as
# they were with plain uint32 starts, so a probe still costs one miss. A chunk with a line of more rows than
# that (degenerate data: tens of thousands of hashes sharing one chunk value) keeps plain uint32 starts.
# The width (1, 2 or 4 bytes per start) is the array's item size.
PER_U8 = 59  # buckets per line with uint8 starts: 4 bytes of base + 60 starts
PER_U16 = 29  # with uint16 starts: 4 + 2 x 30
